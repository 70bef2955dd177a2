"""The forging packet builder (pathspider.client.packets): known vectors, agreement with the
lab's independent builder and parser, the DNS query, speed, and acceptance by real kernels."""
import random
import socket
import struct
import time

import dns.flags
import dns.message
import dns.rdatatype
import pytest

from pathspider.client import forging, packets
from pathspider.constants import Conn
from pathspider.lab import craft
from pathspider.lab import packets as lab_packets

C4, S4 = "198.18.0.2", "198.18.64.1"
C6, S6 = "2001:db8:0:1::2", "2001:db8:100::1"


def packed(addr):
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def verifies(data):
    """A checksummed block sums to 0xFFFF: its checksum recomputed over it is zero."""
    return packets.checksum(data) == 0


# ---- checksum ---------------------------------------------------------------------------------

def test_checksum_rfc1071_example():
    # RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is ~ddf2
    assert packets.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@pytest.mark.parametrize("data, expected", [
    (b"", 0xFFFF), (b"\x00\x00", 0xFFFF), (b"\xff\xff", 0x0000), (b"\x01", 0xFEFF),
    (b"\xff\xff\xff\xff", 0x0000), (b"\x00\x01\xff\xfe", 0x0000),
])
def test_checksum_edge_vectors(data, expected):
    assert packets.checksum(data) == expected


def test_checksum_agrees_with_the_loop_for_random_data():
    rng = random.Random(7)
    for size in list(range(0, 70)) + [1499, 1500]:
        data = bytes(rng.getrandbits(8) for _ in range(size))
        assert packets.checksum(data) == craft.checksum(data), size


def test_known_ipv4_header_vector():
    # the classic example header (Wikipedia, "IPv4 header checksum"): checksum b861
    header = packets.ip4_header(bytes.fromhex("c0a80001"), bytes.fromhex("c0a800c7"), 17,
                                0x73 - 20, ident=0, ttl=64, df=True)
    assert header.hex() == "4500007300004000" "4011b861" "c0a80001" "c0a800c7"


# ---- headers against the lab's builder -----------------------------------------------------

@pytest.mark.parametrize("evil", [False, True])
def test_ip4_header_matches_craft(evil):
    segment = b"x" * 28
    ours = packets.ip4_header(packed(C4), packed(S4), 6, len(segment), ident=4242, ttl=61,
                              tos=0x02, evil=evil) + segment
    theirs = craft.ip4(C4, S4, 6, segment, tos=0x02, ttl=61, ident=4242,
                       flags=craft.IP4_DF, evil=evil)
    assert ours == theirs
    assert verifies(ours[:20])
    assert bool(struct.unpack_from("!H", ours, 6)[0] & 0x8000) is evil


def test_ip6_header_matches_craft():
    ours = packets.ip6_header(packed(C6), packed(S6), 17, 12, hlim=50, tclass=0xB8, flow=7)
    assert ours + b"p" * 12 == craft.ip6(C6, S6, 17, b"p" * 12, tc=0xB8, hlim=50, flow=7)


@pytest.mark.parametrize("src, dst", [(C4, S4), (C6, S6)])
def test_tcp_syn_matches_craft_and_its_checksum_verifies(src, dst):
    opts = packets.syn_options(mss=1460, sack_ok=True, timestamps=(123, 0), wscale=7)
    ours = packets.tcp_syn(packed(src), packed(dst), 40000, 80, 0xDEADBEEF, opts)
    theirs = craft.tcp(40000, 80, craft.SYN, seq=0xDEADBEEF, options=opts, window=64240,
                       src=src, dst=dst)
    assert ours == theirs
    pseudo = packets._pseudo_header(packed(src), packed(dst), 6, len(ours))
    assert verifies(pseudo + ours)


def test_syn_options_have_linux_layouts():
    assert packets.LINUX_SYN_OPTIONS.hex() == "020405b4010104020103030" + "7"
    assert packets.syn_options(timestamps=(1, 2)).hex() == \
        "020405b40402080a00000001000000020103030" + "7"
    assert packets.syn_options(mss=None, sack_ok=False, wscale=None) == b""
    assert len(packets.syn_options(sack_ok=False, timestamps=(1, 0), wscale=None)) == 16


def test_tcp_options_must_be_padded():
    with pytest.raises(ValueError):
        packets.tcp_syn(packed(C4), packed(S4), 1, 2, 3, options=b"\x02\x04\x05")


@pytest.mark.parametrize("src, dst", [(C4, S4), (C6, S6)])
def test_udp_matches_craft_and_zero_is_zero(src, dst):
    payload = b"abc"
    ours = packets.udp(packed(src), packed(dst), 40000, 53, payload)
    assert ours == craft.udp(40000, 53, payload, src=src, dst=dst)
    pseudo = packets._pseudo_header(packed(src), packed(dst), 17, len(ours))
    assert verifies(pseudo + ours)
    zero = packets.udp(packed(src), packed(dst), 40000, 53, payload, zero_checksum=True)
    assert zero[6:8] == b"\0\0" and zero == craft.udp(40000, 53, payload, csum=0)


def test_a_computed_zero_udp_checksum_is_sent_as_ffff():
    src, dst = packed(C4), packed(S4)
    for value in range(65536):              # bounded: some two-byte payload sums to zero
        payload = struct.pack("!H", value)
        pseudo = packets._pseudo_header(src, dst, 17, 10)
        if packets.checksum(pseudo + packets.udp(src, dst, 1, 2, payload, True)) == 0:
            break
    else:
        pytest.fail("no payload found")
    assert packets.udp(src, dst, 1, 2, payload)[6:8] == b"\xff\xff"


# ---- whole packets, read back by the lab's independent parser ------------------------------

def parse(packet):
    return lab_packets.parse(packet, lab_packets.DLT_RAW)


@pytest.mark.parametrize("src, dst", [(C4, S4), (C6, S6)])
def test_build_a_syn(src, dst):
    pkt = parse(packets.build(packets.TCPSyn(80, tos=0x04), packed(src), packed(dst), 41000))
    assert (pkt["src"], pkt["dst"], pkt["sport"], pkt["dport"]) == (src, dst, 41000, 80)
    assert pkt["flags"] == lab_packets.SYN and pkt["tclass"] == 0x04 and not pkt["evil"]
    assert lab_packets.mss(pkt) == 1460


def test_build_an_evil_udp_datagram_with_zero_checksum():
    probe = packets.UDPDatagram(53, b"q" * 20, zero_checksum=True, evil=True)
    raw = packets.build(probe, packed(C4), packed(S4), 41001)
    pkt = parse(raw)
    assert pkt["evil"] and pkt["checksum"] == 0 and pkt["payload"] == b"q" * 20
    assert struct.unpack_from("!H", raw, 6)[0] == packets.IP4_EVIL | packets.IP4_DF
    assert verifies(raw[:20])


def test_ipv6_has_no_evil_bit():
    with pytest.raises(ValueError, match="no evil bit"):
        packets.build(packets.TCPSyn(80, evil=True), packed(C6), packed(S6), 1)


def test_sequence_numbers_and_ids_are_random():
    seqs = {parse(packets.build(packets.TCPSyn(80), packed(C4), packed(S4), 1))["seq"]
            for _ in range(20)}
    assert len(seqs) > 15


# ---- DNS ------------------------------------------------------------------------------------

def test_dns_query_parses_back_with_dnspython():
    wire = packets.dns_query("t1.clean.lab.test", "AAAA", qid=0x1234)
    msg = dns.message.from_wire(wire)
    assert msg.id == 0x1234 and msg.flags & dns.flags.RD and not msg.flags & dns.flags.QR
    [question] = msg.question
    assert (question.name.to_text(), question.rdtype) == ("t1.clean.lab.test.",
                                                          dns.rdatatype.AAAA)


def test_dns_query_for_a_job_without_hostname_asks_the_root():
    [question] = dns.message.from_wire(forging.dns_query_for("")).question
    assert question.name.to_text() == "." and question.rdtype == dns.rdatatype.NS


@pytest.mark.parametrize("host", [
    "evil.example\r\nX-Injected: 1", "a b.example", "a" * 64 + ".example", "x/y", "ex@mple",
    "bad..name", "-lead.example", "\x00.example",
])
def test_hostile_host_names_never_make_a_query(host):
    with pytest.raises(ValueError):
        forging.dns_query_for(host)


def test_dnspython_rejects_an_overlong_label():
    with pytest.raises(ValueError):
        packets.dns_query("a" * 64 + ".test")


# ---- speed ------------------------------------------------------------------------------------

def per_packet_us(fn, count=20000):
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) / count * 1e6


def test_building_a_packet_takes_microseconds():
    src, dst = packed(C4), packed(S4)
    syn = packets.TCPSyn(80, evil=True)
    dgram = packets.UDPDatagram(53, forging.dns_query_for("t1.clean.lab.test"),
                                zero_checksum=True)
    figures = {"tcp syn v4": per_packet_us(lambda: packets.build(syn, src, dst, 40000)),
               "udp dns v6": per_packet_us(lambda: packets.build(dgram, packed(C6),
                                                                 packed(S6), 40000))}
    print("us per forged packet:", {k: round(v, 2) for k, v in figures.items()})
    # generous bound (a busy shared machine); about 1.5 us each on the project's machine
    assert all(us < 50 for us in figures.values()), figures


# ---- recently used ports ------------------------------------------------------------------------

def test_recent_ports_refuse_a_triple_within_the_window_only():
    recent = forging.RecentPorts(window=0.05, most=4)
    assert recent.claim("198.18.64.1", 17, 40000)
    assert not recent.claim("198.18.64.1", 17, 40000)
    assert recent.claim("198.18.64.2", 17, 40000) and recent.claim("198.18.64.1", 6, 40000)
    time.sleep(0.06)                    # let the window pass (the test's own clock)
    assert recent.claim("198.18.64.1", 17, 40000)


def test_recent_ports_are_bounded():
    recent = forging.RecentPorts(window=60, most=3)
    for port in range(10):
        assert recent.claim("198.18.64.1", 17, port)
    assert len(recent._keys) <= 3
    assert recent.claim("198.18.64.1", 17, 0)       # forgotten: the oldest went first


# ---- real kernels: packets built here are accepted by a lab server ----------------------------

def _udp_answered(dst, query):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    src = forging.route_source(family, dst)
    sock, sport = forging.reserve_udp(family, src, dst, 53)
    sender = forging.RawSender()
    try:
        for zero in (False, True):
            probe = packets.UDPDatagram(53, query, zero_checksum=zero)
            sender.send(family, packets.build(probe, packed(src), packed(dst), sport), dst)
            yield forging.await_answer(sock, 2.0)
    finally:
        sender.close()
        sock.close()


def _syn_answered(dst):
    """Send a built SYN and wait (bounded) for the SYN-ACK on a raw TCP receive socket."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    src = forging.route_source(family, dst)
    sock, sport = forging.reserve_tcp(family, src)
    listen = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
    listen.settimeout(2.0)
    sender = forging.RawSender()
    try:
        sender.send(family, packets.build(packets.TCPSyn(80), packed(src), packed(dst), sport),
                    dst)
        for _ in range(200):
            data = listen.recv(4096)
            tcp = data[(data[0] & 0x0F) * 4:] if family == socket.AF_INET else data
            tsport, tdport = struct.unpack_from("!HH", tcp)
            if (tsport, tdport) == (80, sport):
                return tcp[13] & 0x12 == 0x12
        return False
    except socket.timeout:
        return False
    finally:
        sender.close()
        listen.close()
        sock.close()


@pytest.mark.root
@pytest.mark.parametrize("dst", [S4, "2001:db8:100::2"])
def test_a_real_server_answers_built_packets(lab, dst):
    query = forging.dns_query_for("t1.clean.lab.test")
    states = lab.call_in_client(lambda: list(_udp_answered(dst, query)))
    if ":" in dst:      # a zero checksum is invalid in IPv6: the server's kernel drops it
        assert [s for s, _ in states] == [Conn.OK, Conn.TIMEOUT], states
    else:
        assert [s for s, _ in states] == [Conn.OK, Conn.OK], states
    assert lab.call_in_client(_syn_answered, dst) is True
