"""Packets for forging measurements: IPv4/IPv6 headers, a TCP SYN, UDP, a DNS query.

What a forging plugin (:class:`pathspider.engine.forge.ForgeSpider`) returns from
``forge(job, seq)`` is a *probe*: :class:`TCPSyn` or :class:`UDPDatagram`, the transport and
the IP fields that make the experiment (the IPv4 reserved "evil" bit, a zero UDP checksum, the
TOS byte...), without addresses or source port. The engine chooses those (it reserves the
source port, so that the kernel gives it to nobody else while the answer may come back) and
calls :func:`build` to get the bytes it sends through a raw socket. :func:`build` is the
per-packet path, so it is plain ``struct`` packing with precomputed pieces: a few
microseconds a packet (``tests/client/test_packets.py`` prints the figure), no packet
objects, no scapy.

The pieces are usable alone: :func:`checksum`, :func:`ip4_header`, :func:`ip6_header`,
:func:`tcp_syn`, :func:`syn_options`, :func:`udp` and :func:`dns_query`. Addresses are
*packed* (``socket.inet_pton``: 4 or 16 bytes), which is what the engine holds per job.

Checksums: the IPv4 header checksum and the TCP/UDP checksums (over the pseudo-header of
RFC 768/793, RFC 8200 section 8.1 for IPv6) are always right, except that a UDP checksum can
be forced to zero ("no checksum": legal in IPv4, RFC 768; invalid in IPv6, RFC 8200). A
computed UDP checksum of zero is sent as 0xFFFF, as RFC 768 says.

This builder is independent of :mod:`pathspider.lab.craft` (the lab's and the tests'
builder, which the lab must not share with the code it tests); the unit tests check that both
give the same bytes, and that a real server answers packets built here.
"""
import random
import struct

import dns.exception
import dns.name
import dns.rdatatype

__all__ = ["PROTO_TCP", "PROTO_UDP", "IP4_EVIL", "IP4_DF", "TCPSyn", "UDPDatagram", "build",
           "checksum", "ip4_header", "ip6_header", "syn_options", "tcp_syn", "udp",
           "dns_query", "LINUX_SYN_OPTIONS"]

PROTO_TCP = 6
PROTO_UDP = 17

#: Bits of the IPv4 flags/fragment-offset field: the reserved ("evil", RFC 3514) bit and
#: don't-fragment.
IP4_EVIL = 0x8000
IP4_DF = 0x4000

_TCP_SYN_FLAGS = 0x02
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_CSUM = struct.Struct("!H")
_DNS_HEADER = struct.Struct("!HHHHHH")
_DNS_QUESTION_TAIL = struct.Struct("!HH")
_DNS_RD = 0x0100
_DNS_CLASS_IN = 1


# ---- checksums ---------------------------------------------------------------------------------

def checksum(data):
    """The Internet checksum (RFC 1071) of ``data`` (bytes).

    The one's-complement sum of 16-bit words is the value of the data, read as one big-endian
    number, modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), with 0xFFFF standing for a non-zero
    sum that comes out as 0: one C-level conversion and one modulo instead of a Python loop.
    """
    if len(data) & 1:
        data += b"\0"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


def _pseudo_header(src, dst, proto, length):
    """The pseudo-header the TCP/UDP checksum covers (IPv4 or IPv6, by address length)."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


# ---- IP headers ---------------------------------------------------------------------------------

def ip4_header(src, dst, proto, payload_len, ident=0, ttl=64, tos=0, df=True, evil=False):
    """A 20-byte IPv4 header (no options) with its checksum.

    ``evil`` sets the reserved flag bit (RFC 3514), ``df`` don't-fragment; ``tos`` is the
    whole TOS byte (DSCP << 2 | ECN). The kernel's raw socket (``IP_HDRINCL``) would fill the
    checksum and total length itself; they are right here anyway, so the bytes are the
    packet as it leaves.
    """
    frag = (IP4_DF if df else 0) | (IP4_EVIL if evil else 0)
    header = _IP4.pack(0x45, tos, 20 + payload_len, ident, frag, ttl, proto, 0, src, dst)
    return header[:10] + _CSUM.pack(checksum(header)) + header[12:]


def ip6_header(src, dst, next_header, payload_len, hlim=64, tclass=0, flow=0):
    """A 40-byte IPv6 header: traffic class ``tclass``, flow label ``flow``, hop limit."""
    first = 0x60000000 | (tclass << 20) | (flow & 0xFFFFF)
    return _IP6.pack(first, payload_len, next_header, hlim, src, dst)


# ---- TCP ----------------------------------------------------------------------------------------

def syn_options(mss=1460, sack_ok=True, timestamps=None, wscale=7):
    """TCP SYN option bytes in Linux's order and layout: MSS, SACK permitted, timestamps
    (``(tsval, tsecr)``), NOP, window scale; an option given as None (or False) is left out
    and the rest NOP-padded to a multiple of four."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", 2, 4, mss)
    if sack_ok and timestamps is not None:
        out += struct.pack("!BBBBII", 4, 2, 8, 10, *timestamps)
    elif sack_ok:
        out += b"\x01\x01\x04\x02"
    elif timestamps is not None:
        out += struct.pack("!BBBBII", 1, 1, 8, 10, *timestamps)
    if wscale is not None:
        out += bytes((1, 3, 3, wscale))
    return out + b"\x01" * (-len(out) % 4)


#: What a Linux client sends in a SYN (timestamps left out: they would need a clock per
#: connection and say nothing to these measurements).
LINUX_SYN_OPTIONS = syn_options()


def tcp_syn(src, dst, sport, dport, seq, options=LINUX_SYN_OPTIONS, window=64240,
            flags=_TCP_SYN_FLAGS):
    """A TCP SYN segment (header and options) with its checksum over the pseudo-header."""
    if len(options) % 4:
        raise ValueError("TCP options must be padded to a multiple of four bytes")
    length = 20 + len(options)
    segment = _TCP.pack(sport, dport, seq, 0, (length // 4) << 4, flags, window, 0, 0) + options
    csum = checksum(_pseudo_header(src, dst, PROTO_TCP, length) + segment)
    return segment[:16] + _CSUM.pack(csum) + segment[18:]


# ---- UDP ----------------------------------------------------------------------------------------

def udp(src, dst, sport, dport, payload, zero_checksum=False):
    """A UDP datagram with its checksum, or with checksum 0 if ``zero_checksum``."""
    length = 8 + len(payload)
    datagram = _UDP.pack(sport, dport, length, 0) + payload
    if zero_checksum:
        return datagram
    csum = checksum(_pseudo_header(src, dst, PROTO_UDP, length) + datagram) or 0xFFFF
    return datagram[:6] + _CSUM.pack(csum) + datagram[8:]


# ---- DNS ----------------------------------------------------------------------------------------

def dns_query(name, rdtype="A", qid=None):
    """The wire form of a recursive DNS query for ``name`` (class IN, one question).

    ``name`` goes through dnspython's name parser (``dns.name.from_text``: labels of at most
    63 bytes, at most 255 in all, escapes resolved), so nothing but a DNS name reaches the
    packet; it raises ``ValueError`` (a ``dns.exception.DNSException`` turned into one)
    otherwise. Callers holding target data check it with
    :func:`pathspider.client.names.dns_name` first. ``qid`` defaults to a random id.
    """
    try:
        wire = dns.name.from_text(name).to_wire()
        qtype = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else int(rdtype)
    except dns.exception.DNSException as exc:
        raise ValueError(f"cannot make a DNS query for {name!r}: {exc}") from None
    if qid is None:
        qid = random.getrandbits(16)
    return (_DNS_HEADER.pack(qid, _DNS_RD, 1, 0, 0, 0) + wire
            + _DNS_QUESTION_TAIL.pack(qtype, _DNS_CLASS_IN))


# ---- probes: what a forging plugin returns ---------------------------------------------------

class TCPSyn:
    """A TCP SYN to ``dport``: ``options`` (default :data:`LINUX_SYN_OPTIONS`), and the IP
    fields ``evil`` (IPv4 reserved bit), ``tos`` (TOS byte / IPv6 traffic class) and ``ttl``
    (TTL / hop limit). ``flags`` are the TCP flags (default SYN; 0xC2 is an ECN-setup SYN,
    SYN|ECE|CWR); ``seq`` the sequence number (default None: a random one per packet; the
    tracer of :mod:`pathspider.client.trace` sets its own per TTL)."""

    __slots__ = ("dport", "options", "evil", "tos", "ttl", "window", "flags", "seq")
    proto = PROTO_TCP

    def __init__(self, dport, options=LINUX_SYN_OPTIONS, evil=False, tos=0, ttl=64,
                 window=64240, flags=_TCP_SYN_FLAGS, seq=None):
        self.dport, self.options, self.evil = dport, options, evil
        self.tos, self.ttl, self.window = tos, ttl, window
        self.flags, self.seq = flags, seq

    def transport(self, src, dst, sport, seq=None):
        """The TCP segment from ``sport`` (addresses packed); ``seq`` overrides the probe's
        own sequence number (random when neither is given)."""
        if seq is None:
            seq = random.getrandbits(32) if self.seq is None else self.seq
        return tcp_syn(src, dst, sport, self.dport, seq, self.options, self.window,
                       self.flags)

    def __repr__(self):
        extra = "" if self.flags == _TCP_SYN_FLAGS else f", flags=0x{self.flags:02x}"
        return f"TCPSyn(dport={self.dport}, evil={self.evil}, tos={self.tos}{extra})"


class UDPDatagram:
    """A UDP datagram to ``dport`` carrying ``payload``; ``zero_checksum`` sends checksum 0;
    ``evil``, ``tos`` and ``ttl`` as for :class:`TCPSyn`."""

    __slots__ = ("dport", "payload", "zero_checksum", "evil", "tos", "ttl")
    proto = PROTO_UDP

    def __init__(self, dport, payload, zero_checksum=False, evil=False, tos=0, ttl=64):
        self.dport, self.payload, self.zero_checksum = dport, payload, zero_checksum
        self.evil, self.tos, self.ttl = evil, tos, ttl

    def transport(self, src, dst, sport):
        """The UDP datagram from ``sport`` (addresses packed)."""
        return udp(src, dst, sport, self.dport, self.payload, self.zero_checksum)

    def __repr__(self):
        return (f"UDPDatagram(dport={self.dport}, {len(self.payload)} bytes, "
                f"zero_checksum={self.zero_checksum}, evil={self.evil})")


def build(probe, src, dst, sport):
    """The whole IP packet of ``probe`` from ``src``:``sport`` to ``dst`` (packed addresses:
    4 bytes IPv4, 16 bytes IPv6). ``ValueError`` for an evil bit on IPv6, which has none."""
    segment = probe.transport(src, dst, sport)
    if len(dst) == 4:
        return ip4_header(src, dst, probe.proto, len(segment), random.getrandbits(16),
                          probe.ttl, probe.tos, True, probe.evil) + segment
    if probe.evil:
        raise ValueError("IPv6 has no evil bit (RFC 3514 is about IPv4)")
    return ip6_header(src, dst, probe.proto, len(segment), probe.ttl, probe.tos) + segment
