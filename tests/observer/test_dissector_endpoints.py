"""ip.endpoints / dissector.endpoints (what basic_flow stores): the same values as the 1.0
spelling str(ip.src_prefix), str(ip.dst_prefix), extract_ports(ip), for any packet shape, and
the same again when the address text comes from the cache."""
import ipaddress

from hypothesis import given, settings, strategies as st

from core_craft import mk
from pathspider.observer import dissector as d
from pathspider.observer.dissector import DissectError, dissect
from pathspider.observer import basic_flow, extract_ports

ADDRS4 = ["198.18.0.1", "198.18.64.10", "198.19.255.254"]
ADDRS6 = ["2001:db8::1", "2001:db8:100::10", "::ffff:198.18.0.1", "::198.18.0.1", "::1", "::",
          "2001:db8:0:0:1::1", "2001:db8::ffff:0:1"]


def _expected(ip):
    return (str(ip.src_prefix), str(ip.dst_prefix)) + extract_ports(ip)


shapes = st.sampled_from(["tcp", "udp", "icmp", "other", "options", "ext", "frag", "short"])


def _packet(v6, shape, src, dst, cut):
    if v6:
        if shape in ("tcp", "options"):
            pkt = mk.tcp6(src, dst, 1000, 80, mk.SYN)
        elif shape == "udp":
            pkt = mk.udp6(src, dst, 53, 5353, b"q")
        elif shape == "ext":
            pkt = mk.ip6(src, dst, 0, mk.tcp(1, 2, mk.ACK), exts=mk.ext(6))
        elif shape == "frag":
            pkt = mk.ip6(src, dst, 44, mk.udp(1, 2, b"x" * 8), exts=mk.frag6(17, offset=8))
        else:
            pkt = mk.ip6(src, dst, 58 if shape == "icmp" else 132, bytes(12))
    else:
        if shape == "tcp":
            pkt = mk.tcp4(src, dst, 1000, 80, mk.SYN)
        elif shape == "udp":
            pkt = mk.udp4(src, dst, 53, 5353, b"q")
        elif shape == "options":
            pkt = mk.ip4(src, dst, 6, mk.tcp(1, 2, mk.ACK), options=b"\x01\x01\x01\x00")
        elif shape == "frag":
            pkt = mk.ip4(src, dst, 17, b"x" * 16, frag=2)
        else:
            pkt = mk.ip4(src, dst, 1 if shape == "icmp" else 132, bytes(12))
    if shape == "short":
        pkt = pkt[:cut]
    return pkt


@settings(max_examples=300, deadline=None)
@given(st.booleans(), shapes, st.integers(0, 7), st.integers(0, 7), st.integers(20, 60))
def test_endpoints_match_the_1_0_spelling(v6, shape, si, di, cut):
    addrs = ADDRS6 if v6 else ADDRS4
    pkt = _packet(v6, shape, addrs[si % len(addrs)], addrs[di % len(addrs)], cut)
    try:
        ip = dissect(pkt, d.DLT_RAW)
    except DissectError:
        return
    expected = _expected(ip)
    assert ip.endpoints == expected
    assert d.endpoints(ip) == expected          # now from the address cache
    rec = {}
    basic_flow(rec, ip)
    assert (rec["sip"], rec["dip"], rec["sp"], rec["dp"]) == expected


def test_address_text_cache_is_bounded_and_exact():
    d._TEXT.clear()
    for i in range(d._TEXT_MAX + 10):
        addr = ipaddress.IPv6Address("2001:db8::%x:%x" % (i >> 16, i & 0xFFFF)).packed
        assert d._addr_text(addr) == str(ipaddress.IPv6Address(addr))
        assert len(d._TEXT) <= d._TEXT_MAX
    mapped = ipaddress.IPv6Address("::ffff:198.18.0.1").packed
    assert d._addr_text(mapped) == str(ipaddress.IPv6Address(mapped))
    assert d._addr_text(bytes([198, 18, 0, 1])) == "198.18.0.1"
