"""pathspider.testing.packets: built packets parse with the project's dissector with the fields
asked for and valid checksums (checked here by an independent sum), pcap files round-trip
through the Observer, and the module docstring's example runs. No root needed."""
import ipaddress
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pathspider.observer import dissector
from pathspider.observer.basic import basic_count, basic_flow
from pathspider.observer.dissector import dissect
from pathspider.observer.dscp import dscp_extract, dscp_setup
from pathspider.observer.evil import evil_extract, evil_setup
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup
from pathspider.observer.udp import udp_setup, udp_zero_checksum
from pathspider.testing import packets as pk

C4, S4 = "198.18.0.2", "198.18.64.7"
C6, S6 = "2001:db8:0:1::2", "2001:db8:100::7"
RAW = dissector.LINKTYPE_RAW
DATA = Path(__file__).resolve().parents[1] / "data" / "core"


def ones_complement_sum(data):
    """The 16-bit one's complement sum, written independently of the builder."""
    data = bytes(data) + b"\0" * (len(data) % 2)
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def transport_ok(src, dst, proto, segment):
    """Whether ``segment``'s checksum is right for ``src`` -> ``dst`` (sums to 0xFFFF)."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        pseudo = s.packed + d.packed + bytes([0, proto]) + len(segment).to_bytes(2, "big")
    else:
        pseudo = s.packed + d.packed + len(segment).to_bytes(4, "big") + bytes([0, 0, 0, proto])
    return ones_complement_sum(pseudo + segment) == 0xFFFF


def test_ipv4_tcp_with_flags_tos_evil_bit_options_and_payload():
    opts = pk.options(mss=1460, sack_ok=True, timestamps=(7, 0), wscale=7, tfo_cookie=b"")
    pkt = pk.tcp4(C4, S4, 40000, 80, pk.SYN | pk.ECE | pk.CWR, tos=0xB9, evil=True, ttl=33,
                  seq=123456, options=opts, payload=b"hello")
    ip = dissect(pkt, RAW)
    assert (ip.version, ip.src_addr, ip.dst_addr, ip.proto, ip.ttl) == (4, C4, S4, 6, 33)
    assert (ip.traffic_class, ip.dscp, ip.ecn) == (0xB9, 46, 1)
    assert ip.has_rf and not ip.has_df and not ip.has_mf and ip.size == len(pkt)
    assert ones_complement_sum(pkt[:20]) == 0xFFFF                      # header checksum
    tcp = ip.tcp
    assert (tcp.src_port, tcp.dst_port, tcp.seq_nbr) == (40000, 80, 123456)
    assert tcp.flags == pk.SYN | pk.ECE | pk.CWR and tcp.ece_flag and not tcp.ack_flag
    assert tcp.options == [(2, b"\x05\xb4"), (4, b""), (8, struct.pack("!II", 7, 0)),
                           (3, b"\x07"), (34, b"")]
    assert tcp.payload == b"hello"
    assert transport_ok(C4, S4, 6, ip.payload)
    assert not pk.tcp4(C4, S4, 1, 2)[6] & 0x80                          # evil off by default


def test_ipv6_tcp_with_traffic_class():
    pkt = pk.tcp6(C6, S6, 40001, 443, pk.SYN | pk.ACK, tc=0x03, hlim=9, ack=99,
                  options=pk.options(mss=1220, tfo_exp_cookie=b"\x01\x02"))
    ip = dissect(pkt, RAW)
    assert (ip.version, ip.src_addr, ip.dst_addr, ip.proto, ip.hop_limit) == (6, C6, S6, 6, 9)
    assert (ip.traffic_class, ip.ecn, ip.has_rf) == (3, 3, False)
    assert ip.tcp.flags == pk.SYN | pk.ACK and ip.tcp.ack_nbr == 99
    assert ip.tcp.options == [(2, struct.pack("!H", 1220)), (254, b"\xf9\x89\x01\x02")]
    assert transport_ok(C6, S6, 6, ip.payload)


@pytest.mark.parametrize("src, dst, build", [(C4, S4, pk.udp4), (C6, S6, pk.udp6)])
def test_udp_checksums_right_or_zero(src, dst, build):
    ip = dissect(build(src, dst, 5353, 53, b"\x12\x34query"), RAW)
    assert (ip.udp.src_port, ip.udp.dst_port, ip.udp.payload) == (5353, 53, b"\x12\x34query")
    assert ip.udp.checksum != 0 and transport_ok(src, dst, 17, ip.payload)
    zero = dissect(build(src, dst, 5353, 53, b"q", csum=0), RAW)
    assert zero.udp.checksum == 0 and zero.udp.payload == b"q"


def test_udp_checksum_that_sums_to_zero_is_sent_as_ffff():
    # Find a payload whose checksum computes to 0 (RFC 768: sent as 0xFFFF, never as 0).
    for n in range(65536):
        payload = n.to_bytes(2, "big")
        seg = pk.udp(1, 2, payload, src=C4, dst=S4)
        if struct.unpack("!H", seg[6:8])[0] == 0xFFFF:
            assert transport_ok(C4, S4, 17, seg)
            return
    pytest.fail("no payload gave a zero checksum")


def test_icmp_and_icmpv6_errors_quote_the_packet():
    syn = pk.tcp4(C4, S4, 40000, 80, pk.SYN)
    ip = dissect(pk.icmp4("198.18.0.1", C4, 3, 1, payload=syn, tos=0xC0), RAW)
    assert (ip.proto, ip.icmp.type, ip.icmp.code, ip.traffic_class) == (1, 3, 1, 0xC0)
    assert ones_complement_sum(ip.payload) == 0xFFFF                    # ICMPv4: no pseudo
    assert ip.icmp.quoted.dst_addr == S4 and ip.icmp.quoted.ports == (40000, 80)
    syn6 = pk.tcp6(C6, S6, 40001, 80, pk.SYN)
    ip6 = dissect(pk.icmp6("2001:db8:0:1::1", C6, 1, 3, payload=syn6[:48]), RAW)
    assert (ip6.proto, ip6.icmp6.type, ip6.icmp6.code) == (58, 1, 3)
    assert transport_ok("2001:db8:0:1::1", C6, 58, ip6.payload)         # ICMPv6: with pseudo
    assert ip6.icmp6.quoted.dst_addr == S6
    echo = dissect(pk.icmp4(C4, S4, 8, 0, rest=b"\x00\x01\x00\x02", payload=b"ping"), RAW)
    assert echo.icmp.rest == b"\x00\x01\x00\x02" and not echo.icmp.is_error


def test_ethernet_frames():
    frame = pk.eth(pk.udp6(C6, S6, 1, 2), vlans=((0x8100, 7),))
    assert dissect(frame, dissector.DLT_EN10MB).udp.dst_port == 2
    short = pk.eth(pk.tcp4(C4, S4, 1, 2))
    assert len(short) == 60 and dissect(short, dissector.DLT_EN10MB).size == 40  # padding


def conversation(t0=10.0):
    """An IPv4 TCP exchange with ECN marks and an evil SYN, and an IPv6 UDP exchange with a
    zero checksum, as ``(timestamp, packet)`` pairs."""
    return [
        (t0, pk.tcp4(C4, S4, 40000, 80, pk.SYN, evil=True, tos=0x88)),
        (t0 + 0.1, pk.tcp4(S4, C4, 80, 40000, pk.SYN | pk.ACK, seq=500, ack=1001)),
        (t0 + 0.2, pk.tcp4(C4, S4, 40000, 80, pk.ACK, seq=1001, ack=501)),
        (t0 + 0.25, pk.udp6(C6, S6, 41000, 53, b"query", csum=0)),
        (t0 + 0.3, pk.tcp4(C4, S4, 40000, 80, pk.PSH | pk.ACK, tos=0x88, seq=1001, ack=501,
                           payload=b"GET / HTTP/1.0\r\n\r\n")),
        (t0 + 0.35, pk.udp6(S6, C6, 53, 41000, b"answer")),
        (t0 + 0.4, pk.tcp4(C4, S4, 40000, 80, pk.RST, seq=1019)),
    ]


CHAINS = dict(new_flow_chain=[basic_flow, tcp_setup, evil_setup, dscp_setup, udp_setup],
              ip4_chain=[basic_count, evil_extract, dscp_extract],
              ip6_chain=[basic_count, dscp_extract],
              tcp_chain=[tcp_handshake, tcp_complete], udp_chain=[udp_zero_checksum])


@pytest.mark.parametrize("nano", [False, True])
def test_pcap_round_trips_through_the_observer(tmp_path, nano):
    pcap = pk.write_pcap(tmp_path / "t.pcap", conversation(), nano=nano)
    head = pcap.read_bytes()[:24]
    magic, _, _, _, _, snaplen, linktype = struct.unpack("<IHHiIII", head)
    assert (magic, linktype) == (0xA1B23C4D if nano else 0xA1B2C3D4, pk.LINKTYPE_RAW)
    recs = {r["proto"]: r for r in pk.observe(pcap, **CHAINS)}
    tcp, udp = recs[6], recs[17]
    assert (tcp["sip"], tcp["dip"], tcp["sp"], tcp["dp"]) == (C4, S4, 40000, 80)
    assert (tcp["first"], tcp["last"]) == (10.0, pytest.approx(10.4))
    assert (tcp["pkt_fwd"], tcp["pkt_rev"]) == (4, 1)
    assert tcp["tcp_connected"] and tcp["fwd_rst"] and not tcp["rev_rst"]
    assert tcp["evilbit_syn_fwd"] is True and tcp["evilbit_syn_rev"] is False
    assert tcp["fwd_data_dscp"] == 0x88 >> 2
    assert (udp["sip"], udp["dp"], udp["pkt_fwd"], udp["pkt_rev"]) == (C6, 53, 1, 1)
    assert udp["udp_zero_checksum_fwd"] is True and udp["udp_zero_checksum_rev"] is False
    assert (udp["first"], udp["last"]) == (pytest.approx(10.25), pytest.approx(10.35))


def test_ethernet_pcap_and_default_chain(tmp_path):
    frames = [(ts, pk.eth(p)) for ts, p in conversation(20.0)]
    pcap = pk.write_pcap(tmp_path / "e.pcap", frames, linktype=pk.LINKTYPE_ETHERNET)
    recs = pk.observe(pcap)                                 # basic_flow only
    assert sorted((r["proto"], r["sp"]) for r in recs) == [(6, 40000), (17, 41000)]
    assert all(r["first"] >= 20.0 for r in recs)


def test_the_module_docstring_example_runs(tmp_path):
    doc = pk.__doc__
    example = textwrap.dedent(doc.split("Example, an ECN chain test::", 1)[1].split(
        "\nThe builders are", 1)[0])
    namespace = {}
    exec(compile(example, "packets-docstring-example", "exec"), namespace)
    namespace["test_ecn_negotiated"](tmp_path)


def test_the_core_captures_are_made_with_this_builder(tmp_path):
    """tests/data/core/make_pcaps.py uses this builder; its captures come out byte-identical
    to the committed ones."""
    source = (DATA / "make_pcaps.py").read_text()
    assert "from pathspider.testing.packets import" in source
    assert not re.search(r"^def (tcp|udp|icmp|ip4|ip6|eth|checksum|tcp4|udp4)\(", source, re.M)
    subprocess.run([sys.executable, str(DATA / "make_pcaps.py"), str(tmp_path)], check=True,
                   timeout=60)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))
    for name in made:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
