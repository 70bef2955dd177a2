#!/usr/bin/env python3
"""Craft the Observer-core test captures and write them here.

Packets come from pathspider's one packet builder, :mod:`pathspider.testing.packets`
(``struct``, no scapy); this script adds what only these captures need: IPv6 extension
headers, the link layers other than Ethernet, and pcapng.

Run ``python tests/data/core/make_pcaps.py`` to regenerate every ``*.pcap``/``*.pcapng`` in
this directory; the output is deterministic (fixed timestamps, addresses and ports). The
functions are also imported by the tests in ``tests/observer`` to craft packets inline.

Addresses are documentation/benchmarking ones only: 198.18.0.0/15 and 2001:db8::/32.
"""

import os
import struct
import sys

# The packet builders are the package's (one implementation); re-exported here for the tests
# in tests/observer, which use them as ``mk.tcp4(...)`` etc.
from pathspider.testing.packets import (ACK, CWR, ECE, FIN, PSH, RST, SYN, URG,  # noqa: F401
                                        checksum, eth, icmp, ip4, ip6, tcp, tcp4, tcp6, udp,
                                        udp4, udp6)
from pathspider.testing.packets import MAC_CLIENT as MAC_C, MAC_SERVER as MAC_S  # noqa: F401
from pathspider.testing.packets import write_pcap as _write_pcap

HERE = os.path.dirname(os.path.abspath(__file__))

C4, S4 = "198.18.0.1", "198.18.64.10"
C6, S6 = "2001:db8::1", "2001:db8:100::10"


# ---------------------------------------------------------------------------- IPv6 extras

def ext(next_hdr, body=b"\0" * 6):
    """A generic IPv6 extension header (hop-by-hop, routing, dest-opts): 8-byte units."""
    body += b"\0" * (-(len(body) + 2) % 8)
    return struct.pack("!BB", next_hdr, (len(body) + 2) // 8 - 1) + body


def frag6(next_hdr, offset=0, more=False, ident=0x1234):
    return struct.pack("!BBHI", next_hdr, 0, (offset << 3) | int(more), ident)


def ah6(next_hdr, icv=b"\0" * 12):
    body = struct.pack("!HII", 0, 0x100, 1) + icv
    return struct.pack("!BB", next_hdr, (len(body) + 2) // 4 - 2) + body


# ---------------------------------------------------------------------------- link layers
# (Ethernet: ``eth`` from the package)

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
    """``packets``: iterable of ``(timestamp, bytes)`` or ``(timestamp, bytes, wire_len)``;
    Ethernet frames unless ``linktype`` says otherwise (the package writer's default is raw
    IP)."""
    return _write_pcap(path, packets, linktype, snaplen, nano)


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
