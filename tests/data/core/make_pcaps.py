#!/usr/bin/env python3
"""Craft the Observer-core test captures with ``struct`` (no scapy) and write them here.

Run ``python tests/data/core/make_pcaps.py`` to regenerate every ``*.pcap``/``*.pcapng`` in
this directory; the output is deterministic (fixed timestamps, addresses and ports). The
functions are also imported by the tests in ``tests/observer`` to craft packets inline.

Addresses are documentation/benchmarking ones only: 198.18.0.0/15 and 2001:db8::/32.
"""

import os
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

C4, S4 = "198.18.0.1", "198.18.64.10"
C6, S6 = "2001:db8::1", "2001:db8:100::10"
MAC_C = bytes.fromhex("020000000001")
MAC_S = bytes.fromhex("020000000002")

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


# ---------------------------------------------------------------------------- checksums

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _pseudo(src, dst, proto, length):
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def _addr(a):
    return socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)


# ---------------------------------------------------------------------------- transport

def tcp(sport, dport, flags, seq=1000, ack=0, payload=b"", options=b"", window=65535,
        src=None, dst=None):
    """A TCP segment; with ``src``/``dst`` (address strings) the checksum is right."""
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0)
    seg = hdr + options + payload
    if src and dst:
        c = checksum(_pseudo(_addr(src), _addr(dst), 6, len(seg)) + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return seg


def udp(sport, dport, payload=b"", csum=None, src=None, dst=None):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if csum is None and src and dst:
        csum = checksum(_pseudo(_addr(src), _addr(dst), 17, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", csum or 0) + seg[8:]


def icmp(type_, code, rest=b"\0\0\0\0", payload=b""):
    body = struct.pack("!BBH", type_, code, 0) + rest + payload
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


# ---------------------------------------------------------------------------- IP

def ip4(src, dst, proto, payload, tos=0, ttl=64, ident=1, flags=0, frag=0, options=b"",
        total=None):
    """IPv4 packet; ``flags`` is the 3-bit field (4 = evil/RF, 2 = DF, 1 = MF)."""
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    if total is None:
        total = ihl * 4 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total, ident,
                      (flags << 13) | frag, ttl, proto, 0, _addr(src), _addr(dst)) + options
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def ext(next_hdr, body=b"\0" * 6):
    """A generic IPv6 extension header (hop-by-hop, routing, dest-opts): 8-byte units."""
    body += b"\0" * (-(len(body) + 2) % 8)
    return struct.pack("!BB", next_hdr, (len(body) + 2) // 8 - 1) + body


def frag6(next_hdr, offset=0, more=False, ident=0x1234):
    return struct.pack("!BBHI", next_hdr, 0, (offset << 3) | int(more), ident)


def ah6(next_hdr, icv=b"\0" * 12):
    body = struct.pack("!HII", 0, 0x100, 1) + icv
    return struct.pack("!BB", next_hdr, (len(body) + 2) // 4 - 2) + body


def ip6(src, dst, next_hdr, payload, tc=0, hlim=64, exts=b"", flow=0, plen=None):
    body = exts + payload
    if plen is None:
        plen = len(body)
    first = (6 << 28) | (tc << 20) | flow
    return struct.pack("!IHBB16s16s", first, plen, next_hdr, hlim, _addr(src), _addr(dst)) + body


def tcp4(src, dst, sport, dport, flags, tos=0, payload=b"", **kw):
    return ip4(src, dst, 6, tcp(sport, dport, flags, payload=payload, src=src, dst=dst, **kw),
               tos=tos)


def tcp6(src, dst, sport, dport, flags, tc=0, payload=b"", **kw):
    return ip6(src, dst, 6, tcp(sport, dport, flags, payload=payload, src=src, dst=dst, **kw),
               tc=tc)


def udp4(src, dst, sport, dport, payload=b"", **kw):
    return ip4(src, dst, 17, udp(sport, dport, payload, src=src, dst=dst), **kw)


def udp6(src, dst, sport, dport, payload=b"", **kw):
    return ip6(src, dst, 17, udp(sport, dport, payload, src=src, dst=dst), **kw)


# ---------------------------------------------------------------------------- link layers

def eth(payload, ethertype=None, vlans=(), dst=MAC_S, src=MAC_C, pad=True):
    """Ethernet II frame; ``vlans`` is a list of ``(tpid, vid)`` tags, outermost first."""
    if ethertype is None:
        ethertype = 0x86DD if payload[:1] and payload[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    frame = dst + src + tags + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < 60:
        frame += b"\0" * (60 - len(frame))
    return frame


def sll(payload, proto=None, pkttype=0):
    if proto is None:
        proto = 0x86DD if payload[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", pkttype, 1, 6, MAC_C + b"\0\0", proto) + payload


def sll2(payload, proto=None, ifindex=2, pkttype=0):
    if proto is None:
        proto = 0x86DD if payload[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 1, pkttype, 6, MAC_C + b"\0\0") + payload


def null(payload, big_endian=False):
    fam = 2 if payload[0] >> 4 == 4 else 24
    return struct.pack(">I" if big_endian else "<I", fam) + payload


def loop(payload):
    return null(payload, big_endian=True)


LINK = {1: eth, 113: sll, 276: sll2, 0: null, 108: loop, 101: lambda p: p, 12: lambda p: p,
        228: lambda p: p, 229: lambda p: p}


# ---------------------------------------------------------------------------- files

def write_pcap(path, packets, linktype=1, snaplen=65535, nano=False):
    """``packets``: iterable of ``(timestamp, bytes)`` or ``(timestamp, bytes, wire_len)``."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                            snaplen, linktype))
        for p in packets:
            ts, data = p[0], p[1]
            wire = p[2] if len(p) > 2 else len(data)
            sec = int(ts)
            frac = round((ts - sec) * (1e9 if nano else 1e6))
            f.write(struct.pack("<IIII", sec, frac, len(data), wire))
            f.write(data)


def _block(btype, body):
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path, packets, linktype=1, snaplen=65535):
    """Minimal pcapng: section header, one interface (microseconds), enhanced packet blocks."""
    with open(path, "wb") as f:
        f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(_block(1, struct.pack("<HHI", linktype, 0, snaplen)))
        for p in packets:
            ts, data = p[0], p[1]
            wire = p[2] if len(p) > 2 else len(data)
            t = round(ts * 1e6)
            f.write(_block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(data),
                                          wire) + data))


# ---------------------------------------------------------------------------- scenarios

def tcp_conversation(c, s, sport, dport, t0, v6=False, tos=0, close=True):
    """Handshake, one request/response, FIN exchange: ``(ts, ip_packet)`` pairs."""
    mk = tcp6 if v6 else tcp4
    kw = {"tc": tos} if v6 else {"tos": tos}
    pkts = [
        (mk(c, s, sport, dport, SYN, seq=100, **kw)),
        (mk(s, c, dport, sport, SYN | ACK, seq=500, ack=101, **kw)),
        (mk(c, s, sport, dport, ACK, seq=101, ack=501, **kw)),
        (mk(c, s, sport, dport, PSH | ACK, seq=101, ack=501, payload=b"GET / HTTP/1.0\r\n\r\n", **kw)),
        (mk(s, c, dport, sport, PSH | ACK, seq=501, ack=119, payload=b"HTTP/1.0 200 OK\r\n\r\n", **kw)),
    ]
    if close:
        pkts += [
            (mk(c, s, sport, dport, FIN | ACK, seq=119, ack=520, **kw)),
            (mk(s, c, dport, sport, FIN | ACK, seq=520, ack=120, **kw)),
            (mk(c, s, sport, dport, ACK, seq=120, ack=521, **kw)),
        ]
    return [(t0 + 0.01 * i, p) for i, p in enumerate(pkts)]


def link_types_trace():
    """One TCP conversation over IPv4 and one over IPv6, for every link-layer file."""
    return (tcp_conversation(C4, S4, 40000, 80, 1000.0)
            + tcp_conversation(C6, S6, 40001, 80, 1000.5, v6=True))


def mixed_trace():
    """Edge cases in one Ethernet capture (see tests/observer/test_observer_pcaps.py)."""
    out = []
    t = 2000.0
    # 1. an IPv4 TCP flow answered by an ICMP port... no: a SYN answered by a host unreachable
    syn = tcp4(C4, "198.18.65.1", 41000, 80, SYN, seq=7)
    out.append((t, eth(syn)))
    out.append((t + 0.1, eth(ip4("198.18.0.254", C4, 1, icmp(3, 1, payload=syn[:28])))))
    # 2. an IPv6 UDP flow answered by an ICMPv6 unreachable quoting it (behind a hop-by-hop)
    u6 = udp6(C6, "2001:db8:100::99", 41001, 53, b"q" * 12)
    out.append((t + 0.2, eth(u6)))
    out.append((t + 0.3, eth(ip6("2001:db8::fe", C6, 58, icmp(1, 4, payload=u6[:48])))))
    # 3. IPv6 TCP with hop-by-hop + destination options + routing headers
    seg = tcp(41002, 80, SYN, src=C6, dst=S6)
    out.append((t + 0.4, eth(ip6(C6, S6, 0, seg, exts=ext(60) + ext(43, b"\0" * 14) + ext(6)))))
    # 4. a VLAN-tagged (QinQ) IPv4 UDP datagram with zero checksum
    out.append((t + 0.5, eth(ip4(C4, S4, 17, udp(41003, 53, b"x", csum=0)),
                             vlans=((0x88A8, 100), (0x8100, 200)))))
    # 5. truncated packets: IPv4 header cut, TCP header cut
    out.append((t + 0.6, eth(tcp4(C4, S4, 41004, 80, SYN))[:14 + 12]))
    out.append((t + 0.7, eth(tcp4(C4, S4, 41005, 80, SYN))[:14 + 20 + 10]))
    # 6. non-IP (ARP)
    out.append((t + 0.8, eth(b"\0\1\x08\0\6\4\0\1" + bytes(20), ethertype=0x0806)))
    # 7. a short ICMP quotation (only 20 bytes of IP, no ports): keyed by its own 3-tuple
    out.append((t + 0.9, eth(ip4("198.18.0.254", C4, 1, icmp(11, 0, payload=syn[:20])))))
    return out


def main(outdir=HERE):
    lt = link_types_trace()
    for linktype, name in ((1, "eth"), (113, "sll"), (276, "sll2"), (101, "raw"),
                           (0, "null"), (108, "loop")):
        write_pcap(os.path.join(outdir, "link_%s.pcap" % name),
                   [(ts, LINK[linktype](p)) for ts, p in lt], linktype)
    write_pcap(os.path.join(outdir, "link_ipv4.pcap"),
               [(ts, p) for ts, p in lt if p[0] >> 4 == 4], 228)
    write_pcap(os.path.join(outdir, "link_ipv6.pcap"),
               [(ts, p) for ts, p in lt if p[0] >> 4 == 6], 229)
    write_pcap(os.path.join(outdir, "link_vlan.pcap"),
               [(ts, eth(p, vlans=((0x8100, 42),))) for ts, p in lt], 1)
    write_pcapng(os.path.join(outdir, "link_eth.pcapng"), [(ts, eth(p)) for ts, p in lt], 1)
    write_pcap(os.path.join(outdir, "link_eth_nano.pcap"), [(ts, eth(p)) for ts, p in lt], 1,
               nano=True)
    write_pcap(os.path.join(outdir, "mixed.pcap"), mixed_trace(), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
