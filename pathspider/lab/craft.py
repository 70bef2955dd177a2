"""Hand-made packets: IPv4 and IPv6 with TCP, UDP or ICMP, with correct checksums.

The one packet builder of pathspider. Pure functions of their arguments (no randomness unless
asked for, no pathspider imports, no root), so that the same call gives the same bytes:

- the lab sends them through raw sockets to prove its impairments (:func:`send_tcp`, the only
  functions here that need root and a lab namespace, ``Lab.call_in_client``);
- plugin authors build chain unit-test captures with them, through
  :mod:`pathspider.testing.packets`, which adds the pcap writer and the Observer runner;
- the Observer-core test captures (``tests/data/core/make_pcaps.py``) are made with them.

Building blocks return bytes and nest: a transport header (:func:`tcp`, :func:`udp`,
:func:`icmp`) goes inside an IP packet (:func:`ip4`, :func:`ip6`), which may go inside an
Ethernet frame (:func:`eth`). :func:`tcp4`, :func:`tcp6`, :func:`udp4`, :func:`udp6`,
:func:`icmp4` and :func:`icmp6` build a whole IP packet in one call. Transport checksums cover
the IP pseudo-header, so :func:`tcp`, :func:`udp` and :func:`icmp` compute them only when
given ``src`` and ``dst`` (the one-call builders always pass them).

Addresses are strings (or ``ipaddress`` objects). Use only the lab's documentation and
benchmarking addresses, 198.18.0.0/15 and 2001:db8::/32.
"""
import ipaddress
import os
import socket
import struct

from .packets import (ACK, CWR, ECE, FIN, OPT_EXP, OPT_MSS, OPT_SACK_PERM, OPT_TFO, OPT_TS,
                      OPT_WSCALE, PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PROTO_UDP, PSH, RST, SYN,
                      URG)

__all__ = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "IP4_RF", "IP4_DF",
           "IP4_MF", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "PROTO_ICMP6", "TFO_EXP_MAGIC",
           "checksum", "options", "tcp", "udp", "icmp", "ip4", "ip6", "tcp4", "tcp6", "udp4",
           "udp6", "icmp4", "icmp6", "eth", "send_tcp"]

#: IPv4 flag bits as :func:`ip4`'s 3-bit ``flags`` takes them: reserved ("evil", RFC 3514),
#: don't fragment, more fragments.
IP4_RF, IP4_DF, IP4_MF = 4, 2, 1
TFO_EXP_MAGIC = b"\xf9\x89"
#: The MAC addresses :func:`eth` uses unless told otherwise (locally administered).
MAC_CLIENT = bytes.fromhex("020000000001")
MAC_SERVER = bytes.fromhex("020000000002")


# -- checksums ----------------------------------------------------------------------------

def checksum(data):
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _packed(address):
    return ipaddress.ip_address(address).packed


def _pseudo_header(src, dst, proto, length):
    src, dst = _packed(src), _packed(dst)
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def _with_checksum(segment, offset, src, dst, proto):
    """``segment`` with its checksum (at ``offset``) over the pseudo-header and itself."""
    csum = checksum(_pseudo_header(src, dst, proto, len(segment)) + segment)
    return segment[:offset] + struct.pack("!H", csum) + segment[offset + 2:]


# -- transport ----------------------------------------------------------------------------

def options(mss=None, sack_ok=False, timestamps=None, wscale=None, tfo_cookie=None,
            tfo_exp_cookie=None):
    """TCP option bytes, NOP-padded to a multiple of four.

    ``mss`` (kind 2), ``sack_ok`` (SACK permitted, 4), ``timestamps`` (a ``(tsval, tsecr)``
    pair, 8), ``wscale`` (window scale shift, 3), ``tfo_cookie`` (TCP Fast Open, 34) and
    ``tfo_exp_cookie`` (experimental TFO, 254 with magic F989), in that order. A cookie of
    ``b""`` is a cookie request; None leaves an option out.
    """
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if sack_ok:
        out += bytes([OPT_SACK_PERM, 2])
    if timestamps is not None:
        out += struct.pack("!BBII", OPT_TS, 10, *timestamps)
    if wscale is not None:
        out += bytes([OPT_WSCALE, 3, wscale])
    if tfo_cookie is not None:
        out += bytes([OPT_TFO, 2 + len(tfo_cookie)]) + tfo_cookie
    if tfo_exp_cookie is not None:
        out += bytes([OPT_EXP, 4 + len(tfo_exp_cookie)]) + TFO_EXP_MAGIC + tfo_exp_cookie
    return out + b"\x01" * (-len(out) % 4)


def tcp(sport, dport, flags=SYN, seq=1000, ack=0, payload=b"", options=b"", window=65535,
        src=None, dst=None, urgent=0):
    """A TCP segment: header, ``options`` (padded with zeros to a multiple of four; build
    them with :func:`options`) and ``payload``. ``flags`` is the flag byte (``SYN | ECE |
    CWR``...). With ``src`` and ``dst`` the checksum is right, else it is zero."""
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0,
                      urgent) + options + payload
    return _with_checksum(seg, 16, src, dst, PROTO_TCP) if src and dst else seg


def udp(sport, dport, payload=b"", csum=None, src=None, dst=None):
    """A UDP datagram. ``csum`` None: the right checksum if ``src`` and ``dst`` are given
    (0xFFFF when it comes out as zero, as RFC 768 says), else zero; ``csum=0`` sends a zero
    checksum ("none", legal in IPv4 only); any other value is written as given."""
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if csum is None and src and dst:
        csum = checksum(_pseudo_header(src, dst, PROTO_UDP, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", csum or 0) + seg[8:]


def icmp(type_, code, rest=b"\0\0\0\0", payload=b"", src=None, dst=None):
    """An ICMP message: type, code, checksum, the four bytes ``rest`` (identifier and
    sequence, or unused) and ``payload`` (for errors: the quoted packet's start).

    The checksum is ICMPv4's (over the message alone) unless ``src`` and ``dst`` are IPv6
    addresses: then it is ICMPv6's, which covers the IPv6 pseudo-header too."""
    body = struct.pack("!BBH", type_, code, 0) + rest + payload
    if src and dst and ipaddress.ip_address(src).version == 6:
        return _with_checksum(body, 2, src, dst, PROTO_ICMP6)
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


# -- IP -----------------------------------------------------------------------------------

def ip4(src, dst, proto, payload, tos=0, ttl=64, ident=1, flags=0, frag=0, options=b"",
        total=None, evil=False):
    """An IPv4 packet with a correct header checksum.

    ``tos``: the whole TOS byte (DSCP << 2 | ECN). ``flags``: the 3-bit flag field
    (``IP4_RF`` = 4, the reserved or "evil" bit; ``IP4_DF`` = 2; ``IP4_MF`` = 1); ``evil=True``
    sets the reserved bit too. ``frag``: fragment offset in 8-byte units. ``options`` are
    zero-padded to a multiple of four. ``total`` overrides the total-length field (to build a
    broken packet)."""
    flags |= IP4_RF if evil else 0
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    if total is None:
        total = ihl * 4 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total, ident, (flags << 13) | frag,
                      ttl, proto, 0, _packed(src), _packed(dst)) + options
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def ip6(src, dst, next_hdr, payload, tc=0, hlim=64, exts=b"", flow=0, plen=None):
    """An IPv6 packet: ``tc`` the traffic class (DSCP << 2 | ECN), ``exts`` extension headers
    (bytes, placed before ``payload``; ``next_hdr`` names the first of them), ``plen``
    overrides the payload-length field."""
    body = exts + payload
    if plen is None:
        plen = len(body)
    first = (6 << 28) | (tc << 20) | flow
    return struct.pack("!IHBB16s16s", first, plen, next_hdr, hlim, _packed(src),
                       _packed(dst)) + body


def tcp4(src, dst, sport, dport, flags=SYN, tos=0, payload=b"", evil=False, ttl=64, **kw):
    """An IPv4 TCP packet; ``kw`` go to :func:`tcp` (``seq``, ``ack``, ``options``,
    ``window``...)."""
    return ip4(src, dst, PROTO_TCP, tcp(sport, dport, flags, payload=payload, src=src, dst=dst,
                                        **kw), tos=tos, evil=evil, ttl=ttl)


def tcp6(src, dst, sport, dport, flags=SYN, tc=0, payload=b"", hlim=64, **kw):
    """An IPv6 TCP packet; ``kw`` go to :func:`tcp`."""
    return ip6(src, dst, PROTO_TCP, tcp(sport, dport, flags, payload=payload, src=src, dst=dst,
                                        **kw), tc=tc, hlim=hlim)


def udp4(src, dst, sport, dport, payload=b"", csum=None, **kw):
    """An IPv4 UDP packet (``csum=0``: zero checksum); ``kw`` go to :func:`ip4` (``tos``,
    ``evil``, ``ttl``...)."""
    return ip4(src, dst, PROTO_UDP, udp(sport, dport, payload, csum, src=src, dst=dst), **kw)


def udp6(src, dst, sport, dport, payload=b"", csum=None, **kw):
    """An IPv6 UDP packet; ``kw`` go to :func:`ip6` (``tc``, ``hlim``...)."""
    return ip6(src, dst, PROTO_UDP, udp(sport, dport, payload, csum, src=src, dst=dst), **kw)


def icmp4(src, dst, type_, code, rest=b"\0\0\0\0", payload=b"", **kw):
    """An IPv4 ICMP packet (e.g. ``icmp4(router, client, 3, 1, payload=syn[:28])``, a host
    unreachable quoting a packet); ``kw`` go to :func:`ip4`."""
    return ip4(src, dst, PROTO_ICMP, icmp(type_, code, rest, payload), **kw)


def icmp6(src, dst, type_, code, rest=b"\0\0\0\0", payload=b"", **kw):
    """An IPv6 ICMPv6 packet (e.g. type 1 code 3, address unreachable); ``kw`` go to
    :func:`ip6`."""
    return ip6(src, dst, PROTO_ICMP6, icmp(type_, code, rest, payload, src=src, dst=dst), **kw)


def eth(payload, ethertype=None, vlans=(), dst=MAC_SERVER, src=MAC_CLIENT, pad=True):
    """An Ethernet II frame around ``payload`` (the ethertype follows the IP version unless
    given); ``vlans`` is a list of ``(tpid, vid)`` tags, outermost first. Padded to the
    60-byte minimum unless ``pad`` is false."""
    if ethertype is None:
        ethertype = 0x86DD if payload[:1] and payload[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    frame = dst + src + tags + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < 60:
        frame += b"\0" * (60 - len(frame))
    return frame


# -- sending (root, inside a lab namespace) -----------------------------------------------

def send_tcp(src, dst, sport, dport, flags=SYN, opts=b"", payload=b"", evil=False):
    """Send one hand-made TCP segment from ``src`` to ``dst`` (IPv4 or IPv6), with a random
    sequence number (and IPv4 identification).

    IPv4 goes with a hand-made header through a raw IP socket (so ``evil`` can set the
    reserved bit; DF is set); IPv6 through a raw TCP socket bound to ``src`` (the kernel adds
    the header). The local kernel answers the SYN-ACK a SYN provokes with an RST, as it has
    no socket for it.
    """
    seq = int.from_bytes(os.urandom(4), "big")
    seg = tcp(sport, dport, flags, seq=seq, payload=payload, options=opts, window=64240,
              src=src, dst=dst)
    if ipaddress.ip_address(dst).version == 4:
        packet = ip4(src, dst, PROTO_TCP, seg, flags=IP4_DF, evil=evil,
                     ident=int.from_bytes(os.urandom(2), "big"))
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            sock.sendto(packet, (str(dst), 0))
        return
    if evil:
        raise ValueError("IPv6 has no evil bit")
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP) as sock:
        sock.bind((str(src), 0))
        sock.sendto(seg, (str(dst), 0))
