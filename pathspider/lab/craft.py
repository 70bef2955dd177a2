"""Hand-made packets for the lab's checks: TCP SYNs with chosen options, the IPv4 evil bit.

Build segments with correct checksums and send them through raw sockets. Call the senders
inside a lab namespace (``Lab.call_in_client``); raw sockets need root. The local kernel
answers the SYN-ACKs these SYNs provoke with RSTs, as it has no socket for them.
"""
import ipaddress
import os
import socket
import struct

from .packets import OPT_EXP, OPT_MSS, OPT_TFO, SYN

IPV4_EVIL = 0x8000
IPV4_DF = 0x4000
TFO_EXP_MAGIC = b"\xf9\x89"


def checksum(data):
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src, dst, proto, length):
    src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def options(mss=None, tfo_cookie=None, tfo_exp_cookie=None):
    """TCP option bytes: MSS, TFO (kind 34) and/or experimental TFO (254 + F989), padded.

    A cookie of ``b""`` is a cookie request; None leaves the option out.
    """
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if tfo_cookie is not None:
        out += bytes([OPT_TFO, 2 + len(tfo_cookie)]) + tfo_cookie
    if tfo_exp_cookie is not None:
        out += bytes([OPT_EXP, 4 + len(tfo_exp_cookie)]) + TFO_EXP_MAGIC + tfo_exp_cookie
    return out + b"\x01" * (-len(out) % 4)


def tcp_segment(src, dst, sport, dport, flags=SYN, seq=None, ack=0, opts=b"", payload=b""):
    """A TCP segment (header, options, payload) with its checksum for ``src`` -> ``dst``."""
    seq = int.from_bytes(os.urandom(4), "big") if seq is None else seq
    doff = (20 + len(opts)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 64240, 0, 0)
    seg = header + opts + payload
    csum = checksum(_pseudo_header(src, dst, socket.IPPROTO_TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def ipv4_packet(src, dst, proto, payload, flags=IPV4_DF, tos=0, ttl=64):
    """An IPv4 packet; ``flags`` is the 3-bit flag field in place (IPV4_EVIL, IPV4_DF)."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload),
                         int.from_bytes(os.urandom(2), "big"), flags, ttl, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def send_ipv4(packet, dst):
    """Send a complete IPv4 packet (header included) through a raw socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        sock.sendto(packet, (str(dst), 0))


def send_tcp(src, dst, sport, dport, flags=SYN, opts=b"", payload=b"", evil=False):
    """Send one hand-made TCP segment from ``src`` to ``dst`` (IPv4 or IPv6).

    IPv4 goes with a hand-made header (so ``evil`` can set the reserved bit); IPv6 through a
    raw TCP socket bound to ``src`` (the kernel adds the header).
    """
    seg = tcp_segment(src, dst, sport, dport, flags=flags, opts=opts, payload=payload)
    if ipaddress.ip_address(dst).version == 4:
        flag_bits = IPV4_DF | (IPV4_EVIL if evil else 0)
        send_ipv4(ipv4_packet(src, dst, socket.IPPROTO_TCP, seg, flags=flag_bits), dst)
        return
    if evil:
        raise ValueError("IPv6 has no evil bit")
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP) as sock:
        sock.bind((str(src), 0))
        sock.sendto(seg, (str(dst), 0))
