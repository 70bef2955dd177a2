"""Header views for unit tests of chain logic: the dissector's own views of crafted packets.

Chain functions are called with these views by the Observer, and the compiled library
functions accept nothing else; so the unit tests build real packets
(:mod:`pathspider.testing.packets`) and hand the chains the views the dissector makes of them.
The helpers keep the short signatures the tests use.
"""
from pathspider.observer import dissector as d
from pathspider.testing import packets as pk

C4, S4 = "198.18.0.1", "198.18.64.10"
C6, S6 = "2001:db8::1", "2001:db8:100::10"


def _segment(flags, seq, ack, options, payload, sport, dport):
    options = bytes(options)
    options += b"\x00" * (-len(options) % 4)
    return pk.tcp(sport, dport, flags, seq=seq, ack=ack, payload=bytes(payload),
                  options=options, src=C4, dst=S4)


def TCP(flags=0, seq=0, ack=0, options=b"", payload=b"", sport=40000, dport=80, doff=None):
    """A TCP view of one segment; ``doff`` overrides the data offset (4-byte units) in the
    header bytes, e.g. to claim more option bytes than the segment has."""
    seg = bytearray(_segment(flags, seq, ack, options, payload, sport, dport))
    if doff is not None:
        seg[12] = (doff << 4) | (seg[12] & 0x0F)
    seg = bytes(seg)
    return d.TCP(seg, 0, len(seg))


def UDP(checksum=0x1234, payload=b"", sport=40000, dport=53):
    """A UDP view of one datagram with the given checksum field."""
    seg = pk.udp(sport, dport, bytes(payload), csum=checksum)
    return d.UDP(seg, 0, len(seg))


def ip_tcp(flags=0, traffic_class=0, has_rf=False, **kw):
    """An IPv4 view of a TCP segment (``kw``: as :func:`TCP`)."""
    seg = _segment(flags, kw.get("seq", 0), kw.get("ack", 0), kw.get("options", b""),
                   kw.get("payload", b""), kw.get("sport", 40000), kw.get("dport", 80))
    return _ip4(d.PROTO_TCP, seg, traffic_class, has_rf)


def ip_udp(traffic_class=0, has_rf=False, **kw):
    """An IPv4 view of a UDP datagram (``kw``: as :func:`UDP`)."""
    seg = pk.udp(kw.get("sport", 40000), kw.get("dport", 53), bytes(kw.get("payload", b"")),
                 csum=kw.get("checksum", 0x1234))
    return _ip4(d.PROTO_UDP, seg, traffic_class, has_rf)


def ip_icmp(type_, traffic_class=0, has_rf=False, version=4):
    """An IPv4 or IPv6 view of an ICMP message of ``type_`` (code 0, nothing quoted)."""
    if version == 4:
        return _ip4(d.PROTO_ICMP, pk.icmp(type_, 0), traffic_class, has_rf)
    packet = pk.ip6(C6, S6, d.PROTO_ICMP6, pk.icmp(type_, 0, src=C6, dst=S6), tc=traffic_class)
    return d.dissect(packet, d.DLT_RAW)


def _ip4(proto, payload, traffic_class, has_rf):
    packet = pk.ip4(C4, S4, proto, payload, tos=traffic_class, evil=has_rf)
    return d.dissect(packet, d.DLT_RAW)
