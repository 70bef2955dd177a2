"""The dissector: python-libtrace attribute names over one buffer, every link type, never a crash."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from core_craft import mk
from pathspider.observer import dissector as d
from pathspider.observer.dissector import Malformed, NotIP, Short, dissect

C4, S4, C6, S6 = mk.C4, mk.S4, mk.C6, mk.S6


def test_ipv4_header_fields():
    pkt = mk.ip4(C4, S4, 6, mk.tcp(1234, 80, mk.SYN, src=C4, dst=S4), tos=0xB9, ttl=33,
                 ident=0x4242, flags=0b110)
    ip = dissect(mk.eth(pkt), seconds=12.5)
    assert isinstance(ip, d.IP4)
    assert (ip.version, ip.proto, ip.traffic_class, ip.dscp, ip.ecn) == (4, 6, 0xB9, 46, 1)
    assert (ip.ttl, ip.hop_limit, ip.ident, ip.hdr_len) == (33, 33, 0x4242, 5)
    assert ip.has_rf and ip.has_df and not ip.has_mf
    assert ip.frag_offset == 0 and not ip.is_fragment
    assert ip.size == ip.pkt_len == 40
    assert ip.seconds == 12.5
    assert str(ip.src_prefix) == C4 and str(ip.dst_prefix) == S4
    assert ip.src_prefix.addr == bytes([198, 18, 0, 1]) and ip.src_prefix.version == 4
    assert ip.dst_address == ip.dst_prefix
    assert ip.data == pkt and ip.payload == pkt[20:]
    assert ip.ip is ip and ip.ip6 is None and ip.icmp6 is None
    assert ip.udp is None and ip.icmp is None
    assert ip.tcp.dst_port == 80


def test_ethernet_padding_is_not_payload():
    pkt = mk.tcp4(C4, S4, 1, 2, mk.ACK)            # 40 bytes: the frame gets 6 bytes padding
    frame = mk.eth(pkt)
    assert len(frame) == 60
    ip = dissect(frame)
    assert ip.data == pkt
    assert ip.tcp.payload is None and ip.tcp.payload_len == 0


def test_ipv4_options_and_total_length_zero():
    pkt = mk.ip4(C4, S4, 17, mk.udp(5, 6, b"abc"), options=b"\x01\x01\x01\x00")
    ip = dissect(pkt, d.DLT_RAW)
    assert ip.hdr_len == 6 and ip.udp.src_port == 5 and ip.udp.payload == b"abc"
    tso = pkt[:2] + b"\0\0" + pkt[4:]
    ip = dissect(tso, d.DLT_RAW)
    assert ip.size == len(pkt) and ip.udp.payload == b"abc"


def test_ipv6_header_fields():
    pkt = mk.ip6(C6, S6, 17, mk.udp(53, 5353, b"hi"), tc=0xB8 | 3, hlim=7, flow=0xABCDE)
    ip = dissect(mk.eth(pkt))
    assert isinstance(ip, d.IP6)
    assert (ip.version, ip.proto, ip.next_hdr, ip.traffic_class, ip.ecn) == (6, 17, 17, 0xBB, 3)
    assert (ip.hop_limit, ip.ttl, ip.flow_label, ip.payload_len, ip.size) == (7, 7, 0xABCDE,
                                                                            10, 50)
    assert ip.pkt_len is None and ip.hdr_len is None and ip.has_rf is False
    assert str(ip.src_prefix) == C6 and str(ip.dst_prefix) == S6
    assert len(ip.src_prefix.addr) == 16 and ip.src_prefix.version == 6
    assert ip.ip is None and ip.ip6 is ip and ip.icmp is None
    assert ip.udp.dst_port == 5353 and ip.udp.len == 10 and ip.udp.payload.data == b"hi"


def test_ipv6_extension_headers_are_skipped():
    seg = mk.tcp(1, 80, mk.SYN, src=C6, dst=S6)
    exts = mk.ext(60) + mk.ext(43, b"\0" * 14) + mk.ext(51) + mk.ah6(6)
    ip = dissect(mk.ip6(C6, S6, 0, seg, exts=exts), d.DLT_IPV6)
    assert ip.next_hdr == 0 and ip.proto == 6
    assert ip.tcp is not None and ip.tcp.dst_port == 80 and ip.tcp.syn_flag
    assert ip.l4_offset == 40 + len(exts)


def test_ipv6_fragments():
    seg = mk.tcp(1, 80, mk.SYN, payload=b"z" * 40)
    first = dissect(mk.ip6(C6, S6, 44, seg[:32], exts=mk.frag6(6, 0, more=True)), d.DLT_IPV6)
    assert first.proto == 6 and first.is_fragment and first.has_mf and first.frag_offset == 0
    assert first.ident == 0x1234 and first.tcp.dst_port == 80
    later = dissect(mk.ip6(C6, S6, 44, seg[32:], exts=mk.frag6(6, 4)), d.DLT_IPV6)
    assert later.proto == 6 and later.is_fragment and later.frag_offset == 4
    assert later.l4_offset == -1 and later.tcp is None


def test_ipv4_fragments():
    seg = mk.udp(7, 8, b"y" * 40)
    first = dissect(mk.ip4(C4, S4, 17, seg[:24], flags=1, ident=9), d.DLT_RAW)
    assert first.has_mf and first.is_fragment and first.udp.src_port == 7
    later = dissect(mk.ip4(C4, S4, 17, seg[24:], frag=3, ident=9), d.DLT_RAW)
    assert later.frag_offset == 3 and later.is_fragment and later.l4_offset == -1
    assert later.udp is None


#: The attributes only one IP version has (the module docstring's "(IPv4)"/"(IPv6)" rows, and
#: IPv6's fragment header offset); every other public name is on both views.
ONE_VERSION_ONLY = {"hdr_checksum", "flow_label", "next_hdr", "payload_len", "frag"}
SAME_ON_BOTH = ("proto", "traffic_class", "dscp", "ecn", "ttl", "hop_limit", "seconds", "ports",
                "payload", "is_fragment", "frag_offset", "has_mf", "has_rf", "has_df", "icmp",
                "icmp6")


@pytest.mark.parametrize("seg,proto", [(mk.tcp(1234, 80, mk.SYN | mk.ECE, payload=b"x"), 6),
                                       (mk.udp(53, 5353, b"hi"), 17)])
def test_ipv4_and_ipv6_views_have_the_same_shared_attributes(seg, proto):
    v4 = dissect(mk.eth(mk.ip4(C4, S4, proto, seg, tos=0xB9, ttl=33)), seconds=2.5)
    v6 = dissect(mk.eth(mk.ip6(C6, S6, proto, seg, tc=0xB9, hlim=33)), seconds=2.5)
    names4 = {n for n in dir(v4) if not n.startswith("_")}
    names6 = {n for n in dir(v6) if not n.startswith("_")}
    assert names4 ^ names6 == ONE_VERSION_ONLY
    for name in names4 & names6:                    # every shared attribute reads on both
        getattr(v4, name), getattr(v6, name)
    # the same packet over IPv4 and IPv6: the same values, of the same types
    for name in SAME_ON_BOTH:
        a, b = getattr(v4, name), getattr(v6, name)
        assert (a, type(a)) == (b, type(b)), name
    assert (v4.size, v6.size) == (20 + len(seg), 40 + len(seg))
    assert (v4.data[20:], v6.data[40:]) == (seg, seg)
    assert (v4.l4_offset, v6.l4_offset) == (14 + 20, 14 + 40)
    assert v4.endpoints == (C4, S4) + v4.ports and v6.endpoints == (C6, S6) + v6.ports
    for v, src, dst in ((v4, C4, S4), (v6, C6, S6)):
        assert (v.src_addr, v.dst_addr) == (src, dst) == (str(v.src_prefix), str(v.dst_prefix))
        assert v.src_address is not v.src_prefix and v.src_address == v.src_prefix
        assert repr(v) == "<IP%d %s -> %s proto %d size %d>" % (v.version, src, dst, proto,
                                                                v.size)
    l4 = "tcp" if proto == 6 else "udp"
    t4, t6 = getattr(v4, l4), getattr(v6, l4)
    assert type(t4) is type(t6) and (v4.tcp is None) == (v6.tcp is None) == (proto == 17)
    for name in ("src_port", "dst_port", "data", "payload", "payload_len", "checksum"):
        assert getattr(t4, name) == getattr(t6, name), name


def test_views_take_no_new_attributes():
    """The views have fixed fields (slots interpreted, C fields compiled): a chain function
    cannot hang data on a view, which the Observer reuses from packet to packet."""
    for pkt, link in ((mk.tcp6(C6, S6, 1, 2, mk.SYN), d.DLT_IPV6),
                      (mk.udp4(C4, S4, 1, 2, b"x"), d.DLT_IPV4)):
        ip = dissect(pkt, link)
        for view in (ip, ip.tcp or ip.udp):
            assert not hasattr(view, "__dict__")
            with pytest.raises(AttributeError):
                view.my_note = 1


def test_tcp_fields_flags_and_options():
    opts = (b"\x02\x04\x05\xb4" + b"\x01" + b"\x03\x03\x07" + b"\x22\x02"
            + b"\xfe\x06\xf9\x89\xaa\xbb" + b"\x02\x04\x01\x00")
    seg = mk.tcp(4321, 443, mk.SYN | mk.ECE | mk.CWR, seq=0xDEADBEEF, ack=7, window=1000,
                 options=opts, payload=b"data!")
    ip = dissect(mk.ip4(C4, S4, 6, seg), d.DLT_RAW)
    t = ip.tcp
    assert (t.src_port, t.dst_port, t.seq_nbr, t.ack_nbr) == (4321, 443, 0xDEADBEEF, 7)
    assert t.flags == 0xC2 and t.syn_flag and t.ece_flag and t.cwr_flag
    assert not (t.ack_flag or t.fin_flag or t.rst_flag or t.psh_flag or t.urg_flag)
    assert t.window == 1000 and t.doff == 5 + (len(opts) + 3) // 4
    assert t.options_raw.startswith(opts) and t.options_data == t.options_raw
    assert t.options == [(2, b"\x05\xb4"), (3, b"\x07"), (34, b""), (254, b"\xf9\x89\xaa\xbb"),
                         (2, b"\x01\x00")]
    assert t.option_numbers == [2, 3, 34, 254, 2]
    assert t.option(2) == b"\x05\xb4" and t.option(34) is True and t.option(8) is False
    assert t.payload == b"data!" and t.payload.data == b"data!" and t.payload_len == 5
    assert t.data == seg


def test_tcp_flags_include_ns_bit_and_no_options():
    seg = bytearray(mk.tcp(1, 2, mk.ACK))
    seg[12] |= 1                                    # NS / AccECN AE bit
    t = dissect(mk.ip4(C4, S4, 6, bytes(seg)), d.DLT_RAW).tcp
    assert t.flags == 0x110 and t.ack_flag
    assert t.options_raw == b"" and t.options_data is False and t.option_numbers is False


@pytest.mark.parametrize("raw", [b"\x02\x00\x05", b"\x08\x01", b"\x02", b"\x02\x09abc",
                                 b"\x00\x02\x04\x05\xb4"])
def test_tcp_option_parser_stops_on_malformed(raw):
    assert d.parse_tcp_options(raw) == []


def test_icmp4_error_quotes_an_ip_view():
    syn = mk.tcp4(C4, S4, 5555, 80, mk.SYN)
    ip = dissect(mk.ip4("198.18.0.254", C4, 1, mk.icmp(3, 3, payload=syn[:28])), d.DLT_RAW)
    icmp = ip.icmp
    assert (icmp.type, icmp.code, icmp.is_error) == (3, 3, True)
    q = icmp.payload
    assert isinstance(q, d.IP4) and q is not None
    assert str(q.src_prefix) == C4 and str(q.dst_prefix) == S4 and q.proto == 6
    assert q.size == 40            # what the quoted header claims
    assert q.tcp is None           # only 8 TCP bytes quoted: no complete header
    assert icmp.quoted.l4_offset == 20 + 8 + 20


def test_icmp4_echo_payload_is_bytes():
    ip = dissect(mk.ip4(C4, S4, 1, mk.icmp(8, 0, b"\0\1\0\2", b"ping")), d.DLT_RAW)
    assert ip.icmp.type == 8 and not ip.icmp.is_error
    assert ip.icmp.payload == b"ping" and ip.icmp.quoted is None and ip.icmp.rest == b"\0\1\0\2"


def test_icmp6_error_quotes_an_ipv6_view():
    u = mk.udp6(C6, S6, 4000, 53, b"q")
    ip = dissect(mk.ip6(S6, C6, 58, mk.icmp(1, 4, payload=u)), d.DLT_IPV6)
    assert ip.icmp is None
    icmp6 = ip.icmp6
    assert isinstance(icmp6, d.ICMP6) and icmp6.type == 1 and icmp6.is_error
    q = icmp6.payload
    assert isinstance(q, d.IP6) and q.proto == 17 and q.udp.src_port == 4000
    too_big = dissect(mk.ip6(S6, C6, 58, mk.icmp(2, 0, struct.pack("!I", 1280), u)), 229)
    assert too_big.icmp6.mtu == 1280


def test_short_icmp_quotation_gives_no_view():
    ip = dissect(mk.ip4(S4, C4, 1, mk.icmp(11, 0, payload=b"\x45" + bytes(10))), d.DLT_RAW)
    assert ip.icmp.is_error and ip.icmp.quoted is None and ip.icmp.payload is None


@pytest.mark.parametrize("linktype", sorted(mk.LINK))
def test_every_link_type(linktype):
    for pkt in (mk.tcp4(C4, S4, 1, 2, mk.SYN), mk.tcp6(C6, S6, 1, 2, mk.SYN)):
        if linktype == 228 and pkt[0] >> 4 == 6 or linktype == 229 and pkt[0] >> 4 == 4:
            continue
        ip = dissect(mk.LINK[linktype](pkt), linktype)
        assert ip.data == pkt and ip.tcp.syn_flag


def test_vlan_tags_and_non_ip():
    pkt = mk.udp4(C4, S4, 1, 2, b"v")
    assert dissect(mk.eth(pkt, vlans=((0x8100, 5),))).udp.payload == b"v"
    assert dissect(mk.eth(pkt, vlans=((0x88A8, 5), (0x8100, 6)))).udp.payload == b"v"
    assert dissect(mk.sll2(mk.eth(pkt, vlans=((0x8100, 5),))[14:], proto=0x8100),
                   d.DLT_LINUX_SLL2).udp.payload == b"v"
    with pytest.raises(NotIP):
        dissect(mk.eth(b"\0" * 28, ethertype=0x0806))
    with pytest.raises(NotIP):
        dissect(mk.null(pkt)[:0] + struct.pack("<I", 7) + pkt, d.DLT_NULL)
    with pytest.raises(NotIP):
        dissect(b"\x55" + bytes(40), d.DLT_RAW)


def test_truncation_and_malformed_headers():
    pkt = mk.tcp4(C4, S4, 1, 2, mk.SYN)
    with pytest.raises(Short):
        dissect(mk.eth(pkt)[:20])
    with pytest.raises(Short):
        dissect(pkt[:19], d.DLT_RAW)
    with pytest.raises(Short):
        dissect(mk.tcp6(C6, S6, 1, 2, mk.SYN)[:39], d.DLT_IPV6)
    with pytest.raises(Malformed):
        dissect(b"\x44" + pkt[1:], d.DLT_RAW)                  # IHL 4
    with pytest.raises(Malformed):
        dissect(pkt[:2] + b"\0\x0a" + pkt[4:], d.DLT_RAW)      # total length < header
    with pytest.raises(Short):
        dissect(mk.ip6(C6, S6, 0, b"", exts=mk.ext(6)[:4]), d.DLT_IPV6)
    # a truncated TCP header gives no TCP view (the Observer counts the packet as short)
    assert dissect(pkt[:30], d.DLT_RAW).tcp is None
    # all dissect errors are ValueErrors
    assert issubclass(d.DissectError, ValueError)


def _touch_everything(ip):
    """Read every attribute of a view tree; must never raise."""
    for name in ("version", "proto", "traffic_class", "dscp", "ecn", "size", "pkt_len",
                 "hdr_len", "ttl", "hop_limit", "ident", "has_rf", "has_df", "has_mf",
                 "frag_offset", "is_fragment", "seconds", "data", "payload", "l4_offset"):
        getattr(ip, name)
    str(ip.src_prefix), str(ip.dst_prefix), repr(ip)
    if ip.version == 6:
        ip.flow_label, ip.payload_len, ip.next_hdr
    t = ip.tcp
    if t is not None:
        for name in ("src_port", "dst_port", "seq_nbr", "ack_nbr", "doff", "flags", "syn_flag",
                     "ack_flag", "fin_flag", "rst_flag", "psh_flag", "urg_flag", "ece_flag",
                     "cwr_flag", "window", "checksum", "urg_ptr", "options_raw", "options",
                     "option_numbers", "data", "payload", "payload_len"):
            getattr(t, name)
        t.option(2)
    u = ip.udp
    if u is not None:
        u.src_port, u.dst_port, u.len, u.checksum, u.data, u.payload, u.payload_len
    i = ip.icmp if ip.version == 4 else ip.icmp6
    if i is not None:
        i.type, i.code, i.checksum, i.rest, i.data, i.is_error
        q = i.payload
        if isinstance(q, (d.IP4, d.IP6)):
            _touch_everything(q)


SAMPLES = [mk.eth(p) for p in (
    mk.tcp4(C4, S4, 1, 2, mk.SYN, options=b"\x02\x04\x05\xb4", payload=b"x"),
    mk.tcp6(C6, S6, 1, 2, mk.SYN | mk.ACK, payload=b"y"),
    mk.udp4(C4, S4, 3, 4, b"z"),
    mk.ip6(C6, S6, 0, mk.udp(5, 6, b"w"), exts=mk.ext(17)),
    mk.ip4(S4, C4, 1, mk.icmp(3, 1, payload=mk.tcp4(C4, S4, 1, 2, mk.SYN))),
    mk.ip6(S6, C6, 58, mk.icmp(1, 0, payload=mk.tcp6(C6, S6, 1, 2, mk.SYN))),
)]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SAMPLES), st.integers(0, 120), st.binary(max_size=8),
       st.integers(0, 119), st.integers(0, 255))
def test_truncated_or_mutated_samples_never_crash(sample, cut, tail, pos, value):
    buf = bytearray(sample[:cut] + tail)
    if pos < len(buf):
        buf[pos] = value
    try:
        ip = dissect(bytes(buf))
    except d.DissectError:
        return
    _touch_everything(ip)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(mk.LINK)), st.binary(max_size=120))
def test_random_bytes_never_crash(linktype, buf):
    try:
        ip = dissect(buf, linktype)
    except d.DissectError:
        return
    _touch_everything(ip)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x0DB8, 0x2001]) | st.integers(0, 0xFFFF),
                min_size=8, max_size=8))
def test_ipv6_text_matches_python_ipaddress(groups):
    import ipaddress
    addr = b"".join(g.to_bytes(2, "big") for g in groups)
    assert str(d.Prefix(addr)) == str(ipaddress.IPv6Address(addr))


def test_ipv4_mapped_ipv6_text_matches_python_ipaddress():
    import ipaddress
    for text in ("::ffff:198.18.0.1", "::198.18.0.1", "::1", "::", "::ffff:0:0"):
        addr = ipaddress.IPv6Address(text).packed
        assert str(d.Prefix(addr)) == str(ipaddress.IPv6Address(addr))


@pytest.mark.parametrize("pkt,linktype", [
    (mk.tcp4(C4, S4, 1234, 80, mk.SYN), d.DLT_RAW), (mk.udp6(C6, S6, 53, 5353, b"x"), 229),
    (mk.ip4(C4, S4, 132, bytes(12)), d.DLT_RAW), (mk.tcp4(C4, S4, 1, 2, mk.SYN)[:30], 12),
    (mk.ip6("::ffff:198.18.0.1", S6, 17, mk.udp(1, 2)), 229),
])
def test_text_addresses_and_ports_match_the_1_0_spelling(pkt, linktype):
    from pathspider.observer import extract_ports
    ip = dissect(pkt, linktype)
    assert ip.src_addr == str(ip.src_prefix) and ip.dst_addr == str(ip.dst_prefix)
    assert ip.ports == extract_ports(ip)
