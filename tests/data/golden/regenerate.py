#!/usr/bin/env python3
"""Regenerate the golden pcaps of the Observer tests and their expected flow records.

    .venv/bin/python tests/data/golden/regenerate.py            # crafted pcaps + records
    .venv/bin/python tests/data/golden/regenerate.py --capture  # also the real captures (root)
    .venv/bin/python tests/data/golden/regenerate.py --records  # records only (pcaps kept)

Two kinds of pcaps live here:

* crafted edge cases, built byte by byte with ``struct`` below (handshake only, RST, FIN from
  one side, ICMP errors quoting TCP/UDP over IPv4 and IPv6, ECN marks, DSCP, TCP Fast Open,
  MSS, evil bit, zero checksums, DNS, fragments, VLAN, SLL/SLL2, raw IP, loopback, pcapng,
  malformed packets, packet-clock timers, a local port reused within the expiry). Checksums
  are valid; Ethernet frames are padded to 60 bytes as on the wire, so short control
  segments carry padding;
* ``real_*.pcap``: real connections between two network namespaces joined by a veth pair,
  created (and deleted) by ``--capture`` (root; nothing in the root namespace is changed;
  addresses from 198.18.0.0/15 and 2001:db8::/32 only). Capture uses pcapy-ng inside the
  client namespace, through a subprocess started with ``ip netns exec``.

For every pcap, ``manifest.json`` names the chains to run and a few expected partial records
written by hand (each must match exactly one output record); ``<pcap>.jsonl`` holds every
expected record, one JSON object per line, produced by running the chains through the
Observer, and ``stats.json`` the Observer's counters per pcap (packets, short, non-IP,
malformed...). Regeneration reports records that contradict the hand-written expectations
and any chain function that raised (exit status 1). Review the diff of the ``.jsonl`` files
before committing.
"""
import argparse
import inspect
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = 1700000000.0        # timestamp of the first packet of every crafted pcap

# ============================================================================ wire helpers


def checksum(data):
    """Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b'\x00'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def addr(text):
    """Raw bytes of an IPv4 or IPv6 address."""
    return socket.inet_pton(socket.AF_INET6 if ':' in text else socket.AF_INET, text)


def pseudo(src, dst, proto, length):
    s, d = addr(src), addr(dst)
    if len(s) == 4:
        return s + d + struct.pack('!BBH', 0, proto, length)
    return s + d + struct.pack('!I3xB', length, proto)


def ipv4(src, dst, proto, payload, tos=0, ttl=64, ident=1, df=True, rf=False, mf=False,
         frag=0, options=b'', total=None):
    """An IPv4 packet; ``frag`` is the fragment offset in bytes (a multiple of 8)."""
    ihl = 5 + len(options) // 4
    flags = (0x8000 if rf else 0) | (0x4000 if df else 0) | (0x2000 if mf else 0) | frag // 8
    total = 20 + len(options) + len(payload) if total is None else total
    hdr = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, tos, total, ident, flags, ttl, proto, 0,
                      addr(src), addr(dst)) + options
    return hdr[:10] + struct.pack('!H', checksum(hdr)) + hdr[12:] + payload


def ipv6(src, dst, nh, payload, tc=0, hlim=64, flow=0):
    first = (6 << 28) | (tc << 20) | flow
    return struct.pack('!IHBB16s16s', first, len(payload), nh, hlim, addr(src),
                       addr(dst)) + payload


def ip(src, dst, proto, payload, tos=0, **kw):
    """IPv4 or IPv6 packet depending on the address family; ``tos`` is the traffic class."""
    if ':' in src:
        return ipv6(src, dst, proto, payload, tc=tos)
    return ipv4(src, dst, proto, payload, tos=tos, **kw)


def tcp_segment(src, dst, sport, dport, seq, ack, flags, payload=b'', options=b'',
                window=64240):
    if len(options) % 4:
        options += b'\x00' * (4 - len(options) % 4)
    doff = 5 + len(options) // 4
    hdr = struct.pack('!HHIIBBHHH', sport, dport, seq % 2**32, ack % 2**32, doff << 4,
                      flags, window, 0, 0) + options
    seg = hdr + payload
    csum = checksum(pseudo(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack('!H', csum) + seg[18:]


def udp_datagram(src, dst, sport, dport, payload, zero_checksum=False):
    dg = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    if zero_checksum:
        return dg
    csum = checksum(pseudo(src, dst, 17, len(dg)) + dg) or 0xFFFF
    return dg[:6] + struct.pack('!H', csum) + dg[8:]


def icmp4(type_, code, body, rest=0):
    msg = struct.pack('!BBHI', type_, code, 0, rest) + body
    return msg[:2] + struct.pack('!H', checksum(msg)) + msg[4:]


def icmp6(src, dst, type_, code, body, rest=0):
    msg = struct.pack('!BBHI', type_, code, 0, rest) + body
    csum = checksum(pseudo(src, dst, 58, len(msg)) + msg)
    return msg[:2] + struct.pack('!H', csum) + msg[4:]


def icmp_error(router, quoted, type_, code, tos=0, quote_len=None, rest=0):
    """An ICMPv4/ICMPv6 error from ``router`` quoting the IP packet ``quoted``.

    The quote is ``quote_len`` bytes (default: IPv4 header + 8 bytes as RFC 792 routers do,
    or as much as fits in 1280 bytes for IPv6), sent back to the quoted packet's source.
    """
    if quoted[0] >> 4 == 4:
        back_to = socket.inet_ntop(socket.AF_INET, quoted[12:16])
        n = ((quoted[0] & 15) * 4 + 8) if quote_len is None else quote_len
        return ipv4(router, back_to, 1, icmp4(type_, code, quoted[:n], rest), tos=tos,
                    df=False)
    back_to = socket.inet_ntop(socket.AF_INET6, quoted[8:24])
    n = min(len(quoted), 1232) if quote_len is None else quote_len
    return ipv6(router, back_to, 58, icmp6(router, back_to, type_, code, quoted[:n], rest),
                tc=tos)


def opt(kind, value=b''):
    """One TCP option."""
    return bytes([kind, len(value) + 2]) + value


MSS1460 = opt(2, struct.pack('!H', 1460))
SYN_OPTS = MSS1460 + opt(4) + opt(8, struct.pack('!II', 1, 0)) + b'\x01' + opt(3, b'\x07')

FIN, SYN, RST, PSH, ACK, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x40, 0x80

# ---------------------------------------------------------------------------- link layers

MAC_A = bytes.fromhex('020000000001')
MAC_B = bytes.fromhex('020000000002')
ETHERTYPE = {4: 0x0800, 6: 0x86DD}


def ether(packet, outbound=True, vlans=(), pad=b'\x00'):
    """Ethernet II frame (802.1Q tags from ``vlans``: (tpid, vid) pairs), padded to 60 bytes."""
    src, dst = (MAC_A, MAC_B) if outbound else (MAC_B, MAC_A)
    tags = b''.join(struct.pack('!HH', tpid, vid) for tpid, vid in vlans)
    frame = dst + src + tags + struct.pack('!H', ETHERTYPE.get(packet[0] >> 4, 0x0800)) + packet
    if len(frame) < 60:
        frame += (pad * 60)[:60 - len(frame)]
    return frame


def sll(packet, outbound=True):
    """Linux cooked capture v1 header (LINKTYPE_LINUX_SLL, 113)."""
    return struct.pack('!HHH8sH', 4 if outbound else 0, 1, 6, MAC_A + b'\x00\x00',
                       ETHERTYPE.get(packet[0] >> 4, 0x0800)) + packet


def sll2(packet, outbound=True):
    """Linux cooked capture v2 header (LINKTYPE_LINUX_SLL2, 276)."""
    return struct.pack('!HHIHBB8s', ETHERTYPE.get(packet[0] >> 4, 0x0800), 0, 2, 1,
                       4 if outbound else 0, 6, MAC_A + b'\x00\x00') + packet


def null(packet, outbound=True):
    """BSD loopback header (LINKTYPE_NULL, 0): host-order address family (2, or 30 for v6)."""
    return struct.pack('<I', 2 if packet[0] >> 4 == 4 else 30) + packet


def raw(packet, outbound=True):
    return packet


LINKS = {'ether': (1, ether), 'sll': (113, sll), 'sll2': (276, sll2), 'null': (0, null),
         'raw': (101, raw), 'raw12': (12, raw)}

# ---------------------------------------------------------------------------- file formats


def write_pcap(path, linktype, frames, snaplen=65535):
    """Classic pcap (microsecond timestamps). ``frames``: (time, bytes[, original length])."""
    with open(path, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for frame in frames:
            ts, data = frame[0], frame[1]
            orig = frame[2] if len(frame) > 2 else len(data)
            usec = round(ts * 1e6)
            f.write(struct.pack('<IIII', usec // 10**6, usec % 10**6, len(data), orig) + data)


def _block(btype, body):
    body += b'\x00' * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack('<II', btype, n) + body + struct.pack('<I', n)


def write_pcapng(path, linktype, frames, snaplen=65535):
    """pcapng with one interface using nanosecond timestamps (if_tsresol = 9)."""
    shb = _block(0x0A0D0D0A, struct.pack('<IHHq', 0x1A2B3C4D, 1, 0, -1)
                 + struct.pack('<HH', 0, 0))
    tsresol = struct.pack('<HHB3x', 9, 1, 9)
    idb = _block(1, struct.pack('<HHI', linktype, 0, snaplen) + tsresol
                 + struct.pack('<HH', 0, 0))
    out = [shb, idb]
    for ts, data in frames:
        nsec = round(ts * 1e6) * 1000
        body = struct.pack('<IIIII', 0, nsec >> 32, nsec & 0xFFFFFFFF, len(data), len(data))
        out.append(_block(6, body + data))
    Path(path).write_bytes(b''.join(out))


# ============================================================================ conversations


class Clock:
    """Packet timestamps: ``next()`` advances by ``step`` seconds, ``skip(s)`` jumps."""

    def __init__(self, t=T0, step=0.01):
        self.t = t
        self.step = step

    def next(self):
        self.t = round(self.t + self.step, 6)
        return self.t

    def skip(self, seconds):
        self.t = round(self.t + seconds, 6)


class Conv:
    """One TCP connection between ``client`` and ``server``, with sequence numbers tracked.

    Each method returns an IP packet (bytes) and advances the sender's sequence number by
    the payload (and SYN/FIN) it carries.
    """

    def __init__(self, client, server, sport, dport=80, cseq=1000, sseq=5000):
        self.c, self.s, self.sport, self.dport = client, server, sport, dport
        self.cseq, self.sseq = cseq, sseq
        self.cack = self.sack = 0

    def seg(self, from_client, flags, payload=b'', options=b'', tos=0, seq=None, ack=None,
            **ipkw):
        if from_client:
            src, dst, sp, dp = self.c, self.s, self.sport, self.dport
            s, a = self.cseq, self.sseq
        else:
            src, dst, sp, dp = self.s, self.c, self.dport, self.sport
            s, a = self.sseq, self.cseq
        s = s if seq is None else seq
        a = (a if flags & ACK else 0) if ack is None else ack
        adv = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if from_client:
            self.cseq = (self.cseq + adv) % 2**32
        else:
            self.sseq = (self.sseq + adv) % 2**32
        seg = tcp_segment(src, dst, sp, dp, s, a, flags, payload, options)
        return ip(src, dst, 6, seg, tos=tos, **ipkw)

    def client(self, flags, payload=b'', **kw):
        return self.seg(True, flags, payload, **kw)

    def server(self, flags, payload=b'', **kw):
        return self.seg(False, flags, payload, **kw)

    def handshake(self, syn_flags=SYN, synack_flags=SYN | ACK, **kw):
        return [(True, self.client(syn_flags, options=SYN_OPTS, **kw)),
                (False, self.server(synack_flags, options=MSS1460, **kw)),
                (True, self.client(ACK, **kw))]

    def close(self, **kw):
        return [(True, self.client(FIN | ACK, **kw)), (False, self.server(FIN | ACK, **kw)),
                (True, self.client(ACK, **kw))]

    def exchange(self, request=b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
                 response=b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', **kw):
        return [(True, self.client(ACK | PSH, request, **kw)),
                (False, self.server(ACK | PSH, response, **kw)),
                (True, self.client(ACK, **kw))]


def udp(src, dst, sport, dport, payload, tos=0, zero_checksum=False, **kw):
    return ip(src, dst, 17, udp_datagram(src, dst, sport, dport, payload, zero_checksum),
              tos=tos, **kw)


# Addresses: vantage point (client), targets (servers), a router on the path.
C4, C6 = '198.18.0.10', '2001:db8::10'
R4, R6 = '198.18.1.1', '2001:db8:1::1'


def S4(n):
    return '198.18.64.%d' % n


def S6(n):
    return '2001:db8:100::%x' % n


# ============================================================================ scenarios

SCENARIOS = {}


def scenario(name, chains, expect, link='ether', fmt='pcap', description=''):
    """Register a crafted pcap: ``fn()`` returns [(outbound, ip_packet_or_frame), ...] or
    [(time, outbound, packet)] tuples; ``expect`` are hand-written partial records."""
    def register(fn):
        SCENARIOS[name] = dict(build=fn, chains=chains, expect=expect, link=link, fmt=fmt,
                               description=description or inspect.cleandoc(fn.__doc__ or ''))
        return fn
    return register


def timed(packets, clock=None):
    clock = clock or Clock()
    return [(clock.next(), out, pkt) for out, pkt in packets]


@scenario('tcp_handshake_only', ['basic', 'tcp'],
          [{'sip': C4, 'dip': S4(1), 'sp': 40001, 'dp': 80, 'tcp_connected': True,
            'fwd_syn_flags': SYN, 'rev_syn_flags': SYN | ACK, 'fwd_fin': False,
            'rev_fin': False, 'pkt_fwd': 2, 'pkt_rev': 1},
           {'sip': C6, 'dip': S6(1), 'sp': 40002, 'tcp_connected': True, 'pkt_fwd': 2}])
def _handshake_only():
    """IPv4 and IPv6 three-way handshakes, nothing else (flushed at the end of the file)."""
    return (Conv(C4, S4(1), 40001).handshake() + Conv(C6, S6(1), 40002).handshake())


@scenario('tcp_rst', ['basic', 'tcp'],
          [{'sp': 40010, 'dip': S4(2), 'fwd_syn_flags': SYN, 'rev_syn_flags': None,
            'rev_rst': True, 'fwd_rst': False, 'tcp_connected': False, 'pkt_fwd': 1,
            'pkt_rev': 1},
           {'sp': 40011, 'tcp_connected': True, 'fwd_rst': True, 'rev_rst': False,
            'pkt_fwd': 5, 'pkt_rev': 1},
           {'sp': 40012, 'dip': S6(2), 'rev_rst': True, 'pkt_rev': 1}])
def _rst():
    """Refused connections (RST+ACK answering the SYN, v4 and v6) and a client abort
    (RST after data); the segment following the abort still counts within the 5 s window."""
    refused = Conv(C4, S4(2), 40010)
    aborted = Conv(C4, S4(2), 40011)
    refused6 = Conv(C6, S6(2), 40012)
    return ([(True, refused.client(SYN, options=SYN_OPTS)),
             (False, refused.server(RST | ACK, seq=0))]
            + aborted.handshake() + [(True, aborted.client(ACK | PSH, b'hello')),
                                     (True, aborted.client(RST | ACK)),
                                     (True, aborted.client(RST))]
            + [(True, refused6.client(SYN)), (False, refused6.server(RST | ACK, seq=0))])


@scenario('tcp_fin_one_side', ['basic', 'tcp'],
          [{'sp': 40020, 'fwd_fin': True, 'rev_fin': False, 'tcp_connected': True},
           {'sp': 40021, 'fwd_fin': False, 'rev_fin': True, 'tcp_connected': True},
           {'sp': 40022, 'fwd_fin': True, 'rev_fin': True, 'pkt_fwd': 6, 'pkt_rev': 3}])
def _fin_one_side():
    """Half-closed connections: only the client FINs (40020), only the server FINs (40021)
    — 2.0 recorded these in the opposite fields — and a full close (40022)."""
    a, b, c = Conv(C4, S4(3), 40020), Conv(C4, S4(3), 40021), Conv(C4, S4(3), 40022)
    return (a.handshake() + [(True, a.client(FIN | ACK)), (False, a.server(ACK))]
            + b.handshake() + [(False, b.server(FIN | ACK)), (True, b.client(ACK))]
            + c.handshake() + c.exchange() + c.close())


def _icmp_flows(client, server, router, v6):
    """A TCP SYN answered by a router's unreachable, a UDP datagram answered by the target's
    port unreachable, a UDP datagram answered by time exceeded, and a quote too short."""
    t1, t2, t3, t4 = server(10), server(11), server(12), server(13)
    syn = Conv(client, t1, 40030).client(SYN, options=SYN_OPTS)
    dg = udp(client, t2, 40031, 53, b'query')
    dg2 = udp(client, t3, 40032, 33434, b'probe')
    dg3 = udp(client, t4, 40033, 53, b'x' * 30)
    if v6:
        unreach, port, ttl = (1, 3), (1, 4), (3, 0)
    else:
        unreach, port, ttl = (3, 1), (3, 3), (11, 0)
    return [(True, syn), (False, icmp_error(router, syn, *unreach, tos=0xC0)),
            (True, dg), (False, icmp_error(t2, dg, *port, quote_len=None if v6 else 48)),
            (True, dg2), (False, icmp_error(router, dg2, *ttl)),
            (True, dg3), (False, icmp_error(router, dg3, *unreach,
                                            quote_len=30 if v6 else 12))]


@scenario('icmp4', ['basic', 'tcp', 'udp', 'icmp', 'dscp'],
          [{'sp': 40030, 'proto': 6, 'icmp_unreachable': True, 'pkt_rev': 1,
            'rev_data_dscp': None, 'tcp_connected': False},
           {'sp': 40031, 'proto': 17, 'icmp_unreachable': True, 'pkt_rev': 1,
            'udp_zero_checksum_rev': None},
           {'sp': 40032, 'icmp_unreachable': False, 'pkt_rev': 1},
           {'sp': 40033, 'icmp_unreachable': False, 'pkt_rev': 0}])
def _icmp4():
    """ICMPv4 errors quoting TCP and UDP (host and port unreachable, time exceeded), sent
    with DSCP CS6 by the router; a quote of 12 bytes (no ports) cannot be attached."""
    return _icmp_flows(C4, S4, R4, False)


@scenario('icmp6', ['basic', 'tcp', 'udp', 'icmp', 'dscp'],
          [{'sp': 40030, 'dip': S6(10), 'icmp_unreachable': True, 'pkt_rev': 1},
           {'sp': 40031, 'proto': 17, 'icmp_unreachable': True, 'pkt_rev': 1},
           {'sp': 40032, 'icmp_unreachable': False, 'pkt_rev': 1},
           {'sp': 40033, 'icmp_unreachable': False, 'pkt_rev': 0}])
def _icmp6():
    """The ICMPv6 equivalents (1.0 could not attach them; its icmp6 chain crashed)."""
    return _icmp_flows(C6, S6, R6, True)


@scenario('ecn', ['basic', 'tcp', 'ecn', 'ecn_split', 'icmp'],
          [{'sp': 40040, 'fwd_syn_flags': SYN | ECE | CWR, 'rev_syn_flags': SYN | ACK | ECE,
            'tcp_connected': True, 'fwd_ez': True, 'rev_ez': True, 'rev_ce': True,
            'fwd_eo': False, 'fwd_ce': False, 'rev_eo': False,
            'ecn_ect0_syn_fwd': False, 'ecn_ect0_data_fwd': True, 'ecn_ce_data_rev': True,
            'ecn_ect0_data_rev': True},
           {'sp': 40041, 'dip': S6(20), 'fwd_syn_flags': SYN | ECE | CWR,
            'rev_syn_flags': SYN | ACK, 'fwd_ez': False, 'rev_eo': True,
            'ecn_ect1_syn_rev': True, 'ecn_ect1_data_rev': False},
           {'sp': 40042, 'proto': 17, 'fwd_ce': True, 'rev_ez': False, 'rev_ce': False,
            'ecn_ce_data_fwd': True, 'icmp_unreachable': True}])
def _ecn():
    """ECN negotiated over IPv4 with ECT(0) data both ways and a CE mark on a reply; an
    IPv6 server ignoring the ECN request but (wrongly) marking its SYN+ACK and pure ACKs
    ECT(1); a CE-marked UDP datagram answered by a CE-marked ICMP error (the router's bits
    are not the flow's)."""
    a = Conv(C4, S4(20), 40040)
    pk = [(True, a.client(SYN | ECE | CWR, options=SYN_OPTS)),
          (False, a.server(SYN | ACK | ECE, options=MSS1460)),
          (True, a.client(ACK)),
          (True, a.client(ACK | PSH, b'GET / HTTP/1.1\r\n\r\n', tos=0x02)),
          (False, a.server(ACK | PSH, b'HTTP/1.1 200 OK\r\n', tos=0x02)),
          (False, a.server(ACK | PSH, b'more data', tos=0x03)),
          (True, a.client(ACK | ECE)),
          (True, a.client(FIN | ACK | CWR, tos=0)),
          (False, a.server(FIN | ACK)),
          (True, a.client(ACK))]
    b = Conv(C6, S6(20), 40041)
    pk += [(True, b.client(SYN | ECE | CWR, options=SYN_OPTS)),
           (False, b.server(SYN | ACK, options=MSS1460, tos=0x01)),
           (True, b.client(ACK)),
           (False, b.server(ACK, tos=0x01))]
    dg = udp(C4, S4(21), 40042, 4242, b'ce', tos=0x03)
    pk += [(True, dg), (False, icmp_error(S4(21), dg, 3, 3, tos=0x03, quote_len=30))]
    return pk


@scenario('dscp', ['basic', 'tcp', 'dscp', 'icmp'],
          [{'sp': 40050, 'fwd_syn_dscp': 46, 'rev_syn_dscp': 0, 'fwd_data_dscp': 46,
            'rev_data_dscp': 10, 'tcp_connected': True},
           {'sp': 40051, 'dip': S6(30), 'fwd_syn_dscp': 8, 'rev_syn_dscp': 8,
            'fwd_data_dscp': None, 'rev_data_dscp': None},
           {'sp': 40052, 'proto': 17, 'fwd_data_dscp': 34, 'rev_data_dscp': 0},
           {'sp': 40053, 'proto': 17, 'fwd_data_dscp': 26, 'rev_data_dscp': None,
            'icmp_unreachable': False, 'pkt_rev': 1}])
def _dscp():
    """DSCP EF on an IPv4 connection whose SYN+ACK is bleached, with padded pure ACKs
    (junk Ethernet padding, marked CS4) that must not count as data; a data-less IPv6
    connection (CS1 both ways); UDP marked AF41 with an unmarked reply; UDP answered by a
    CS6 time-exceeded that must not count as the reply mark."""
    a = Conv(C4, S4(30), 40050)
    pk = [(True, a.client(SYN, options=SYN_OPTS, tos=46 << 2)),
          (False, a.server(SYN | ACK, options=MSS1460, tos=0)),
          (True, a.client(ACK, tos=32 << 2)),
          (False, a.server(ACK, tos=32 << 2)),
          (True, a.client(ACK | PSH, b'GET /', tos=0)),
          (True, a.client(ACK | PSH, b'x', tos=46 << 2)),
          (True, a.client(ACK | PSH, b'y', tos=12 << 2)),
          (False, a.server(ACK | PSH, b'HTTP/1.1 200 OK', tos=10 << 2))]
    pk += a.close(tos=0)
    b = Conv(C6, S6(30), 40051)
    pk += b.handshake(tos=8 << 2)
    pk += [(True, udp(C4, S4(31), 40052, 5000, b'ping', tos=34 << 2)),
           (False, udp(S4(31), C4, 5000, 40052, b'pong', tos=0))]
    dg = udp(C4, S4(32), 40053, 33434, b'probe', tos=26 << 2)
    pk += [(True, dg), (False, icmp_error(R4, dg, 11, 0, tos=48 << 2))]
    return pk


COOKIE = bytes.fromhex('a1b2c3d4e5f60718')
REQUEST = b'GET / HTTP/1.1\r\nHost: target\r\n\r\n'


def _tfo_pair(server, sport, kind):
    """Cookie request connection and data-on-SYN connection using option ``kind``."""
    def tfo(cookie):
        return opt(34, cookie) if kind == 34 else opt(kind, b'\xf9\x89' + cookie)
    a = Conv(C4 if ':' not in server else C6, server, sport, cseq=100000, sseq=900000)
    pk = [(True, a.client(SYN, options=MSS1460 + tfo(b''))),
          (False, a.server(SYN | ACK, options=MSS1460 + tfo(COOKIE))),
          (True, a.client(ACK))] + a.close()
    b = Conv(a.c, server, sport + 1, cseq=2**32 - 10, sseq=700000)
    pk += [(True, b.client(SYN, REQUEST, options=MSS1460 + tfo(COOKIE))),
           (False, b.server(SYN | ACK, options=MSS1460)),
           (True, b.client(ACK)),
           (False, b.server(ACK | PSH, b'HTTP/1.1 200 OK\r\n\r\n')),
           (True, b.client(ACK))] + b.close()
    return pk


@scenario('tfo_iana', ['basic', 'tcp', 'tfo'],
          [{'sp': 40060, 'tfo_synkind': 34, 'tfo_synclen': 0, 'tfo_ackkind': 34,
            'tfo_ackclen': 8, 'tfo_seq': 100000, 'tfo_dlen': 0, 'tfo_ack': 100001},
           {'sp': 40061, 'tfo_synkind': 34, 'tfo_synclen': 8, 'tfo_ackkind': 0,
            'tfo_ackclen': 0, 'tfo_seq': 2**32 - 10, 'tfo_dlen': len(REQUEST),
            'tfo_ack': (2**32 - 10 + len(REQUEST) + 1) % 2**32, 'tcp_connected': True},
           {'sp': 40062, 'dip': S6(40), 'tfo_synkind': 34, 'tfo_ackclen': 8},
           {'sp': 40063, 'dip': S6(40), 'tfo_dlen': len(REQUEST)}])
def _tfo_iana():
    """TCP Fast Open with the IANA option (kind 34): a cookie request that gets a cookie,
    then data on SYN accepted by the server (sequence number wrapping past 2**32)."""
    return _tfo_pair(S4(40), 40060, 34) + _tfo_pair(S6(40), 40062, 34)


@scenario('tfo_experimental', ['basic', 'tcp', 'tfo'],
          [{'sp': 40070, 'tfo_synkind': 254, 'tfo_synclen': 0, 'tfo_ackkind': 254,
            'tfo_ackclen': 8},
           {'sp': 40071, 'tfo_synkind': 254, 'tfo_synclen': 8, 'tfo_dlen': len(REQUEST)},
           {'sp': 40072, 'tfo_synkind': 255, 'tfo_synclen': 8, 'tfo_dlen': 5,
            'tfo_ack': 3001},
           {'sp': 40073, 'tfo_synkind': 0, 'tfo_synclen': 0, 'fwd_syn_flags': SYN}])
def _tfo_experimental():
    """Experimental Fast Open (kind 254 with magic F9 89); a SYN with only the "option B"
    kind 255 carrying data the server does not accept (1.0 crashed on it); a SYN with a
    zero-length option (1.0 looped forever on it)."""
    pk = _tfo_pair(S4(41), 40070, 254)
    c = Conv(C4, S4(41), 40072, cseq=3000)
    pk += [(True, c.client(SYN, b'hello', options=opt(255, b'\xf9\x89' + COOKIE))),
           (False, c.server(SYN | ACK, ack=3001)), (True, c.client(ACK, seq=3001))]
    d = Conv(C4, S4(41), 40073)
    pk += [(True, d.client(SYN, options=MSS1460 + b'\x22\x00' + opt(34, COOKIE))),
           (False, d.server(SYN | ACK))]
    return pk


@scenario('mss', ['basic', 'tcp', 'mss'],
          [{'sp': 40080, 'mss_len_fwd': 4, 'mss_value_fwd': 1460, 'mss_len_rev': 4,
            'mss_value_rev': 1380},
           {'sp': 40081, 'dip': S6(50), 'mss_value_fwd': 1440, 'mss_len_rev': None,
            'mss_value_rev': None},
           {'sp': 40082, 'mss_len_fwd': 5, 'mss_value_fwd': None, 'mss_value_rev': 536}])
def _mss():
    """MSS options: rewritten by the path on the SYN+ACK (1380), absent on an IPv6
    SYN+ACK, and a malformed 3-byte MSS option."""
    a = Conv(C4, S4(50), 40080)
    pk = [(True, a.client(SYN, options=SYN_OPTS)),
          (False, a.server(SYN | ACK, options=opt(2, struct.pack('!H', 1380)))),
          (True, a.client(ACK))]
    b = Conv(C6, S6(50), 40081)
    pk += [(True, b.client(SYN, options=opt(2, struct.pack('!H', 1440)))),
           (False, b.server(SYN | ACK)), (True, b.client(ACK))]
    c = Conv(C4, S4(50), 40082)
    pk += [(True, c.client(SYN, options=opt(2, b'\x05\xb4\x00'))),
           (False, c.server(SYN | ACK, options=opt(2, struct.pack('!H', 536))))]
    return pk


@scenario('evil', ['basic', 'tcp', 'evil'],
          [{'sp': 40090, 'evilbit_syn_fwd': True, 'evilbit_syn_rev': False,
            'evilbit_data_fwd': True, 'evilbit_data_rev': False, 'pkt_fwd': 6,
            'pkt_rev': 4, 'fwd_fin': True, 'rev_fin': True},
           {'sp': 40091, 'dip': S6(60), 'evilbit_syn_fwd': None, 'evilbit_data_fwd': None},
           {'sp': 40092, 'proto': 17, 'evilbit_data_fwd': False, 'evilbit_data_rev': True}])
def _evil():
    """The IPv4 reserved bit on SYN and data of one connection with several data packets
    per direction (2.0 ended such flows early at the second data packet, so its FINs and
    counters were lost); an IPv6 connection (no such bit); UDP with an evil reply."""
    a = Conv(C4, S4(60), 40090)
    pk = [(True, a.client(SYN, options=SYN_OPTS, rf=True)),
          (False, a.server(SYN | ACK, options=MSS1460)),
          (True, a.client(ACK, rf=True))]
    for i in range(2):
        pk += [(True, a.client(ACK | PSH, b'data%d' % i, rf=True)),
               (False, a.server(ACK | PSH, b'resp%d' % i))]
    pk += a.close(rf=True)
    pk += Conv(C6, S6(60), 40091).handshake()
    pk += [(True, udp(C4, S4(61), 40092, 7, b'echo')),
           (False, udp(S4(61), C4, 7, 40092, b'echo', rf=True))]
    return pk


@scenario('udp_zero_checksum', ['basic', 'udp'],
          [{'sp': 40100, 'udp_zero_checksum_fwd': True, 'udp_zero_checksum_rev': False,
            'pkt_fwd': 1, 'pkt_rev': 1},
           {'sp': 40101, 'udp_zero_checksum_fwd': False, 'udp_zero_checksum_rev': None},
           {'sp': 40102, 'dip': S6(70), 'udp_zero_checksum_fwd': True,
            'udp_zero_checksum_rev': False}])
def _udp_zero():
    """A zero-checksum datagram with a normal reply, a normal datagram without reply, and
    an IPv6 zero-checksum datagram (illegal in IPv6, still recorded)."""
    return [(True, udp(C4, S4(70), 40100, 7, b'zero', zero_checksum=True)),
            (False, udp(S4(70), C4, 7, 40100, b'zero')),
            (True, udp(C4, S4(70), 40101, 7, b'normal')),
            (True, udp(C6, S6(70), 40102, 7, b'zero6', zero_checksum=True)),
            (False, udp(S6(70), C6, 7, 40102, b'zero6'))]


def _dns_wire():
    import dns.message
    import dns.rrset
    query = dns.message.make_query('www.example.com', 'A', id=4711)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text('www.example.com.', 300, 'IN', 'A',
                                               '198.18.80.80'))
    return query.to_wire(), response.to_wire()


@scenario('dns', ['basic', 'tcp', 'udp', 'dns'],
          [{'sp': 40110, 'proto': 17, 'dns_response_valid': True, 'pkt_rev': 1},
           {'sp': 40111, 'dip': S6(80), 'dns_response_valid': False, 'pkt_rev': 1},
           {'sp': 40112, 'proto': 6, 'dns_response_valid': True, 'tcp_connected': True},
           {'sp': 40113, 'proto': 17, 'dns_response_valid': False, 'pkt_rev': 0}])
def _dns():
    """DNS over UDP answered (v4), answered with garbage (v6), unanswered; DNS over TCP
    with the two-byte length prefix."""
    q, r = _dns_wire()
    pk = [(True, udp(C4, S4(80), 40110, 53, q)), (False, udp(S4(80), C4, 53, 40110, r)),
          (True, udp(C6, S6(80), 40111, 53, q)),
          (False, udp(S6(80), C6, 53, 40111, b'\x12\x67\x81' + b'\xff' * 20)),
          (True, udp(C4, S4(81), 40113, 53, q))]
    t = Conv(C4, S4(80), 40112, dport=53)
    pk += t.handshake() + [(True, t.client(ACK | PSH, struct.pack('!H', len(q)) + q)),
                           (False, t.server(ACK | PSH, struct.pack('!H', len(r)) + r)),
                           (True, t.client(ACK))] + t.close()
    return pk


def _fragmented(src, dst, sport, payload, ident):
    """A UDP datagram as two IP fragments (first carries the UDP header)."""
    dg = udp_datagram(src, dst, sport, 9, payload)
    cut = 64
    if ':' not in src:
        return [ipv4(src, dst, 17, dg[:cut], ident=ident, df=False, mf=True),
                ipv4(src, dst, 17, dg[cut:], ident=ident, df=False, frag=cut)]
    frag = [struct.pack('!BBHI', 17, 0, 1, ident) + dg[:cut],
            struct.pack('!BBHI', 17, 0, cut, ident) + dg[cut:]]
    return [ipv6(src, dst, 44, f) for f in frag]


@scenario('fragments', ['basic', 'udp'],
          [{'sp': 40120, 'proto': 17, 'dip': S4(90), 'pkt_fwd': 2, 'oct_fwd': 148},
           {'sp': 40121, 'proto': 17, 'dip': S6(90), 'pkt_fwd': 2, 'oct_fwd': 204}])
def _fragments():
    """Fragmented UDP datagrams over IPv4 and IPv6 (fragment header); the first fragment
    carries the ports, the second has none but belongs to the same flow (issue #144)."""
    return ([(True, p) for p in _fragmented(C4, S4(90), 40120, b'f' * 100, 77)]
            + [(True, p) for p in _fragmented(C6, S6(90), 40121, b'g' * 100, 78)])


@scenario('ipv6_ext_headers', ['basic', 'tcp'],
          [{'sp': 40130, 'proto': 6, 'tcp_connected': True, 'fwd_fin': True,
            'rev_fin': True}])
def _ipv6_ext():
    """An IPv6 TCP connection whose client packets carry hop-by-hop and destination
    options headers (the transport header must be found behind them, issue #264)."""
    c = Conv(C6, S6(100), 40130)
    pk = c.handshake() + c.close()
    out = []
    for outbound, p in pk:
        if outbound:
            ext = (struct.pack('!BB', 60, 0) + b'\x01\x04\x00\x00\x00\x00'     # hop-by-hop
                   + struct.pack('!BB', 6, 0) + b'\x01\x04\x00\x00\x00\x00')  # dest opts
            body = ext + p[40:]
            p = struct.pack('!IHBB', struct.unpack('!I', p[:4])[0], len(body), 0,
                            p[7]) + p[8:40] + body
        out.append((outbound, p))
    return out


def _link_conns(base):
    a = Conv(C4, S4(base), 40140 + base % 10)
    b = Conv(C6, S6(base), 40150 + base % 10)
    return a.handshake() + a.exchange() + a.close() + b.handshake() + b.close()


def _link_expect(base):
    return [{'sp': 40140 + base % 10, 'dip': S4(base), 'tcp_connected': True,
             'fwd_fin': True, 'rev_fin': True, 'pkt_fwd': 6, 'pkt_rev': 3},
            {'sp': 40150 + base % 10, 'dip': S6(base), 'tcp_connected': True,
             'fwd_fin': True, 'rev_fin': True, 'pkt_fwd': 4, 'pkt_rev': 2}]


for _name, _link, _fmt, _base in (('vlan', 'vlan', 'pcap', 111),
                                  ('qinq', 'qinq', 'pcap', 112),
                                  ('sll', 'sll', 'pcap', 113),
                                  ('sll2', 'sll2', 'pcap', 114),
                                  ('rawip', 'raw', 'pcap', 115),
                                  ('rawip12', 'raw12', 'pcap', 116),
                                  ('loopback_null', 'null', 'pcap', 117),
                                  ('pcapng', 'ether', 'pcapng', 118)):
    scenario(_name, ['basic', 'tcp'], _link_expect(_base), link=_link, fmt=_fmt,
             description='IPv4 and IPv6 connections over link type/format %s/%s'
                         % (_link, _fmt))(lambda _b=_base: _link_conns(_b))


@scenario('malformed', ['basic', 'tcp', 'tfo', 'mss'],
          [{'sp': 40160, 'tcp_connected': True, 'pkt_fwd': 2, 'pkt_rev': 1}])
def _malformed():
    """One good handshake between broken packets: an ARP frame, a truncated IPv4 header,
    IHL < 5, a TCP data offset < 5, a TCP header cut by the snap length, an IPv6 header cut
    short, an unknown IP version. Only the good flow may appear."""
    c = Conv(C4, S4(120), 40160)
    good = c.handshake()
    bad = Conv(C4, S4(121), 40161).client(SYN, options=SYN_OPTS)
    arp = b'\xff' * 6 + MAC_A + b'\x08\x06' + bytes(28)
    ihl = bytearray(bad)
    ihl[0] = 0x44
    doff = bytearray(bad)
    doff[20 + 12] = 0x20
    v6 = Conv(C6, S6(121), 40162).client(SYN)
    v7 = bytearray(bad)
    v7[0] = 0x75
    return [('frame', arp), (True, bad[:14]), (True, bytes(ihl)), (True, bytes(doff)),
            ('cut', bad[:30]), good[0], good[1], (True, v6[:30]), (True, bytes(v7)),
            good[2]]


@scenario('timers', ['basic', 'tcp', 'udp'],
          [{'sp': 40170, 'proto': 17, 'pkt_fwd': 1, 'pkt_rev': 1, 'last': T0 + 0.02},
           {'sp': 40170, 'proto': 17, 'pkt_fwd': 1, 'pkt_rev': 0},
           {'sp': 40171, 'fwd_fin': True, 'rev_fin': True, 'pkt_fwd': 4, 'pkt_rev': 2},
           {'sp': 40171, 'pkt_fwd': 1, 'pkt_rev': 0, 'fwd_syn_flags': None}])
def _timers():
    """Packet-clock timers: a UDP flow idle for 40 s (> 30 s idle timeout) is emitted and a
    later datagram of the same 5-tuple starts a new record; a closed TCP connection still
    absorbs an ACK 2 s after its FINs (5 s expiry window) but not one 20 s later."""
    clock = Clock()
    out = [(clock.next(), True, udp(C4, S4(130), 40170, 7, b'a')),
           (clock.next(), False, udp(S4(130), C4, 7, 40170, b'a'))]
    c = Conv(C4, S4(131), 40171)
    out += [(clock.next(), o, p) for o, p in c.handshake() + c.close()[:2]]
    clock.skip(2)
    out.append((clock.next(), True, c.client(ACK)))
    clock.skip(20)
    out.append((clock.next(), True, c.client(ACK)))
    clock.skip(40)
    out.append((clock.next(), True, udp(C4, S4(130), 40170, 7, b'b')))
    return out


@scenario('tcp_port_reuse', ['basic', 'tcp'],
          [{'sp': 40180, 'pkt_fwd': 6, 'pkt_rev': 3, 'tcp_connected': True, 'fwd_fin': True,
            'rev_fin': True, 'first': T0 + 0.01},
           {'sp': 40180, 'pkt_fwd': 8, 'pkt_rev': 4, 'tcp_connected': True, 'fwd_fin': True,
            'rev_fin': True, 'first': T0 + 1.1},
           {'sp': 40181, 'pkt_fwd': 1, 'pkt_rev': 1, 'rev_rst': True, 'rev_syn_flags': None,
            'tcp_connected': False},
           {'sp': 40181, 'pkt_fwd': 4, 'pkt_rev': 2, 'rev_rst': False, 'tcp_connected': True},
           {'sp': 40182, 'dip': S6(140), 'pkt_fwd': 2, 'pkt_rev': 0, 'fwd_syn_flags': SYN,
            'tcp_connected': False},
           {'sp': 40182, 'dip': S6(140), 'pkt_fwd': 4, 'pkt_rev': 2, 'tcp_connected': True},
           {'sp': 40183, 'pkt_fwd': 3, 'pkt_rev': 1, 'tcp_connected': True}])
def _port_reuse():
    """A local port reused for the same target before the first connection's flow was
    emitted: after a FIN exchange (40180, 1 s later, within the 5 s expiry), after a refusing
    RST (40181), after a SYN that timed out unanswered (40182, IPv6: the flow is still active)
    — the new SYN's other initial sequence number starts a new record each time — and a SYN
    retransmission with the same number, which stays in its flow (40183)."""
    clock = Clock()
    out = []

    def add(pairs):
        out.extend((clock.next(), o, p) for o, p in pairs)

    first, second = Conv(C4, S4(140), 40180), Conv(C4, S4(140), 40180, cseq=2000000)
    add(first.handshake() + first.exchange() + first.close())
    clock.skip(1)
    add(second.handshake() + second.exchange() + second.exchange() + second.close())
    refused, again = Conv(C4, S4(140), 40181), Conv(C4, S4(140), 40181, cseq=3000000)
    add([(True, refused.client(SYN, options=SYN_OPTS)),
         (False, refused.server(RST | ACK, seq=0))])
    clock.skip(0.5)
    add(again.handshake() + again.close())
    lost, retry = Conv(C6, S6(140), 40182), Conv(C6, S6(140), 40182, cseq=4000000)
    add([(True, lost.client(SYN, options=SYN_OPTS))])
    clock.skip(1)
    add([(True, lost.client(SYN, options=SYN_OPTS, seq=1000))])
    clock.skip(3)
    add(retry.handshake() + retry.close())
    slow = Conv(C4, S4(140), 40183)
    syn = slow.handshake()
    add(syn[:1])
    clock.skip(1)
    add([(True, slow.client(SYN, options=SYN_OPTS, seq=1000))] + syn[1:])
    return out


# ---------------------------------------------------------------------------- building


def frames_for(name, spec):
    """Link-layer frames ``[(time, bytes[, orig_len])]`` of a crafted scenario."""
    built = spec['build']()
    if built and len(built[0]) == 2:
        built = timed(built)
    linktype, encap = _link_for(spec['link'])
    frames = []
    for ts, outbound, pkt in built:
        if outbound == 'frame':
            frames.append((ts, pkt))
        elif outbound == 'cut':
            frame = encap(pkt, True)
            frames.append((ts, frame, len(frame) + 40))
        else:
            pad = b'\xa5' if name == 'dscp' else b'\x00'
            frames.append((ts, encap(pkt, outbound) if encap is not ether
                           else ether(pkt, pad=pad, outbound=outbound)))
    return linktype, frames


def _link_for(link):
    if link == 'vlan':
        return 1, lambda p, o: ether(p, vlans=[(0x8100, 100)], outbound=o)
    if link == 'qinq':
        return 1, lambda p, o: ether(p, vlans=[(0x88A8, 20), (0x8100, 100)], outbound=o)
    return LINKS[link]


def pcap_name(name, spec):
    return name + ('.pcapng' if spec['fmt'] == 'pcapng' else '.pcap')


def write_crafted(names=None, outdir=HERE):
    """Write the crafted pcaps (all, or those in ``names``) into ``outdir``."""
    for name, spec in SCENARIOS.items():
        if names and name not in names:
            continue
        linktype, frames = frames_for(name, spec)
        path = Path(outdir) / pcap_name(name, spec)
        if spec['fmt'] == 'pcapng':
            write_pcapng(path, linktype, [f[:2] for f in frames])
        else:
            write_pcap(path, linktype, frames)
        print('wrote', path.name, len(frames), 'packets', file=sys.stderr)


# ============================================================================ records


def canonical(rec):
    return json.dumps(rec, sort_keys=True)


STATS_KEYS = ('packets', 'short', 'nonip', 'malformed', 'flows', 'ignored', 'chain_errors',
              'icmp_linked', 'fragments', 'syn_restarts')


def observe(path, chains):
    """Run ``chains`` over the pcap at ``path`` with the real Observer.

    Returns ``(records, counters)``; counters are the Observer's stats (:data:`STATS_KEYS`).
    """
    from pathspider.observer.chains import observer_for
    observer = observer_for('pcap:' + str(path), chains)
    records = list(observer.flows())
    stats = observer.stats()
    return records, {k: stats[k] for k in STATS_KEYS}


def matches(rec, partial):
    return all(k in rec and rec[k] == v for k, v in partial.items())


def check_expectations(name, records, expect):
    """Each hand-written partial record must match exactly one record; returns problems."""
    problems = []
    for partial in expect:
        n = sum(1 for r in records if matches(r, partial))
        if n != 1:
            problems.append('%s: %d records match %s' % (name, n, partial))
    return problems


def write_records(manifest):
    """Write ``<pcap>.jsonl`` for every pcap of the manifest, and ``stats.json``."""
    problems = []
    all_stats = {}
    for fname, entry in sorted(manifest.items()):
        path = HERE / fname
        if not path.exists():
            problems.append('%s: missing (run with --capture as root?)' % fname)
            continue
        records, stats = observe(path, entry['chains'])
        problems += check_expectations(fname, records, entry['expect'])
        if stats['chain_errors']:
            problems.append('%s: %d chain errors' % (fname, stats['chain_errors']))
        all_stats[fname] = stats
        lines = sorted(canonical(r) for r in records)
        (HERE / (fname + '.jsonl')).write_text(''.join(line + '\n' for line in lines))
        print('records', fname, len(lines), file=sys.stderr)
    (HERE / 'stats.json').write_text(json.dumps(all_stats, indent=1, sort_keys=True) + '\n')
    return problems


def crafted_manifest():
    return {pcap_name(n, s): {'chains': s['chains'], 'expect': s['expect'],
                              'description': s['description'], 'kind': 'crafted'}
            for n, s in SCENARIOS.items()}


# ============================================================================ real captures
#
# Layout: namespaces <prefix>-c (client) and <prefix>-s (server), veth pair c0 <-> s0.
# Client 198.19.254.1 / 2001:db8:ffff::1, server 198.19.254.2 / 2001:db8:ffff::2.

RC4, RS4 = '198.19.254.1', '198.19.254.2'
RC6, RS6 = '2001:db8:ffff::1', '2001:db8:ffff::2'
CAPTURE_FILTER = 'tcp or udp or icmp or (icmp6 and ip6[40] < 128)'

REAL = {
    'real_tcp.pcap': {
        'chains': ['basic', 'tcp', 'ecn', 'ecn_split', 'dscp', 'mss', 'evil', 'icmp'],
        'description': 'Real Linux TCP between two namespaces: ECN negotiated with data '
                       '(v4, v6), DSCP AF11 set with IP_TOS/IPV6_TCLASS, a refused '
                       'connection (RST), a half-closed connection.',
        'expect': [
            {'dip': RS4, 'dp': 8080, 'tcp_connected': True, 'fwd_syn_flags': SYN | ECE | CWR,
             'rev_syn_flags': SYN | ACK | ECE, 'fwd_ez': True, 'rev_ez': True,
             'fwd_fin': True, 'rev_fin': True, 'mss_value_fwd': 1460},
            {'dip': RS6, 'dp': 8080, 'tcp_connected': True, 'fwd_ez': True, 'rev_ez': True,
             'fwd_syn_dscp': 10, 'fwd_data_dscp': 10, 'mss_value_fwd': 1440},
            {'dip': RS4, 'dp': 8081, 'rev_rst': True, 'tcp_connected': False},
            {'dip': RS4, 'dp': 8082, 'tcp_connected': True, 'fwd_fin': True,
             'rev_fin': False}]},
    'real_tfo.pcap': {
        'chains': ['basic', 'tcp', 'tfo'],
        'description': 'Real Linux TCP Fast Open (net.ipv4.tcp_fastopen=3 in both '
                       'namespaces): a cookie request, then data on SYN, over IPv4.',
        'expect': [
            {'dip': RS4, 'tfo_synkind': 34, 'tfo_synclen': 0, 'tfo_ackkind': 34,
             'tfo_ackclen': 8},
            {'dip': RS4, 'tfo_synkind': 34, 'tfo_synclen': 8, 'tfo_dlen': 16}]},
    'real_udp.pcap': {
        'chains': ['basic', 'udp', 'dns', 'icmp', 'tcp'],
        'description': 'Real UDP: DNS queries answered by a dnspython server over UDP (v4, '
                       'v6) and TCP, a datagram to a closed port answered by ICMP/ICMPv6 '
                       'port unreachable, a zero-checksum datagram (SO_NO_CHECK).',
        'expect': [
            {'dip': RS4, 'dp': 5353, 'proto': 17, 'dns_response_valid': True},
            {'dip': RS6, 'dp': 5353, 'proto': 17, 'dns_response_valid': True},
            {'dip': RS4, 'dp': 5353, 'proto': 6, 'dns_response_valid': True},
            {'dip': RS4, 'dp': 9999, 'icmp_unreachable': True},
            {'dip': RS6, 'dp': 9999, 'icmp_unreachable': True},
            {'dip': RS4, 'dp': 7777, 'udp_zero_checksum_fwd': True}]},
}


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def in_ns(ns, *cmd):
    return ['ip', 'netns', 'exec', ns, *cmd]


class Namespaces:
    """Two namespaces joined by a veth pair; deleted on exit, also after errors."""

    def __init__(self):
        self.prefix = 'psgold%d' % os.getpid()
        self.client, self.server = self.prefix + '-c', self.prefix + '-s'

    def __enter__(self):
        try:
            sh('ip', 'netns', 'add', self.client)
            sh('ip', 'netns', 'add', self.server)
            sh('ip', '-n', self.client, 'link', 'add', 'c0', 'type', 'veth', 'peer', 'name',
               's0', 'netns', self.server)
            for ns, dev, a4, a6 in ((self.client, 'c0', RC4, RC6),
                                    (self.server, 's0', RS4, RS6)):
                sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
                sh('ip', '-n', ns, 'addr', 'add', a4 + '/24', 'dev', dev)
                sh('ip', '-n', ns, 'addr', 'add', a6 + '/64', 'dev', dev, 'nodad')
                sh('ip', '-n', ns, 'link', 'set', dev, 'up')
                for key, value in (('net.ipv4.tcp_ecn', '1'), ('net.ipv4.tcp_fastopen', '3'),
                                   ('net.ipv4.tcp_fastopen_blackhole_timeout_sec', '0')):
                    subprocess.run(in_ns(ns, 'sysctl', '-qw', '%s=%s' % (key, value)),
                                   check=False, capture_output=True)
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        for ns in (self.client, self.server):
            subprocess.run(['ip', 'netns', 'del', ns], check=False, capture_output=True)


def helper(ns, *args, **kw):
    """Start this script in namespace ``ns`` in a helper role."""
    return subprocess.Popen(in_ns(ns, sys.executable, str(Path(__file__).resolve()), *args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw)


def wait_line(proc, expect, timeout=10):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().strip() if ready else ''
    if line != expect:
        proc.kill()
        raise RuntimeError('helper did not say %r (said %r)' % (expect, line))


def capture_real(name, client_role, outdir=HERE):
    """Capture one real pcap: server helper, capture helper, client helper in turn."""
    with Namespaces() as ns:
        server = helper(ns.server, '--role', 'server')
        capture = helper(ns.client, '--role', 'capture', 'c0', str(Path(outdir) / name))
        try:
            wait_line(server, 'ready')
            wait_line(capture, 'ready')
            client = subprocess.run(in_ns(ns.client, sys.executable,
                                          str(Path(__file__).resolve()), '--role',
                                          client_role),
                                    capture_output=True, text=True, timeout=60)
            if client.returncode:
                raise RuntimeError('client %s failed: %s' % (client_role, client.stderr))
            capture.stdin.write('stop\n')
            capture.stdin.flush()
            wait_line(capture, 'done', timeout=15)
        finally:
            for proc in (server, capture):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    print('captured', name, file=sys.stderr)


# ---------------------------------------------------------------------------- helper roles


def role_capture(iface, out):
    """Capture on ``iface`` into ``out`` until "stop" arrives on stdin (bounded: 60 s)."""
    import pcapy
    cap = pcapy.create(iface)
    cap.set_snaplen(65535)
    cap.set_promisc(0)
    cap.set_timeout(10)
    cap.activate()
    cap.setfilter(CAPTURE_FILTER)
    cap.setnonblock(1)
    dumper = cap.dump_open(out)
    print('ready', flush=True)
    deadline = time.monotonic() + 60
    stopping = None
    fd = cap.getfd()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd, sys.stdin], [], [], 0.2)
        while True:
            hdr, data = cap.next()
            if hdr is None or not data:
                break
            dumper.dump(hdr, data)
        if sys.stdin in ready and stopping is None:
            sys.stdin.readline()
            stopping = time.monotonic() + 0.5     # let in-flight packets arrive
        if stopping is not None and time.monotonic() > stopping:
            break
    dumper.close()
    print('done', flush=True)


def role_server():
    """Listeners: TCP 8080 (echo request, reply, close), 8082 (never closes its side),
    DNS (dnspython) on UDP+TCP 5353, UDP 7777 sink. Runs until SIGTERM (bounded 120 s)."""
    import dns.message
    import dns.rrset
    import threading

    def answer(wire):
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, 'IN', 'A',
                                            '198.18.80.80'))
        return r.to_wire()

    socks = []
    for fam, host in ((socket.AF_INET, RS4), (socket.AF_INET6, RS6)):
        for port in (8080, 8082):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if port == 8080:
                s.setsockopt(socket.IPPROTO_TCP, 23, 16)      # TCP_FASTOPEN queue
            s.bind((host, port))
            s.listen(16)
            socks.append(('tcp%d' % port, s))
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((host, 5353))
        socks.append(('dnsu', u))
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((host, 5353))
        t.listen(4)
        socks.append(('dnst', t))
        k = socket.socket(fam, socket.SOCK_DGRAM)
        k.bind((host, 7777))
        socks.append(('sink', k))
    held = []

    def serve_tcp(conn, kind):
        conn.settimeout(10)
        try:
            if kind == 'dnst':
                n = struct.unpack('!H', conn.recv(2))[0]
                r = answer(conn.recv(n))
                conn.sendall(struct.pack('!H', len(r)) + r)
                conn.recv(1)
                conn.close()
                return
            data = conn.recv(4096)
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(data) + data)
            if kind == 'tcp8082':
                held.append(conn)        # half-closed: the client closes, we never do
                return
            conn.recv(1)
            conn.close()
        except OSError:
            conn.close()

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print('ready', flush=True)
    deadline = time.monotonic() + 120
    by_fd = {s.fileno(): (k, s) for k, s in socks}
    while time.monotonic() < deadline:
        ready, _, _ = select.select(list(by_fd), [], [], 1)
        for fd in ready:
            kind, s = by_fd[fd]
            if kind == 'dnsu':
                wire, peer = s.recvfrom(4096)
                s.sendto(answer(wire), peer)
            elif kind == 'sink':
                s.recvfrom(4096)
            else:
                conn, _ = s.accept()
                threading.Thread(target=serve_tcp, args=(conn, kind), daemon=True).start()


def _tcp_client(fam, host, port, request, tos=None, close=True):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    if tos is not None:
        if fam == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        s.close()
        return
    s.sendall(request)
    _read_head(s)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5 if close else 0.3)     # half-close: the server never sends its FIN
    try:
        while s.recv(4096):
            pass
    except socket.timeout:
        pass
    s.close()


def _read_head(s):
    """Read until the end of the HTTP reply head (or the peer's FIN)."""
    got = b''
    while b'\r\n\r\n' not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk


def role_client_tcp():
    req = b'GET / HTTP/1.1\r\nHost: target\r\n\r\n'
    _tcp_client(socket.AF_INET, RS4, 8080, req)
    _tcp_client(socket.AF_INET6, RS6, 8080, req, tos=10 << 2)
    _tcp_client(socket.AF_INET, RS4, 8081, req)
    _tcp_client(socket.AF_INET, RS4, 8082, req, close=False)
    time.sleep(0.3)     # let the last ACKs cross before the capture stops (bounded, once)


def role_client_tfo():
    req = b'GET / HTTP/1.0\r\n'
    assert len(req) == 16
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.sendto(req, socket.MSG_FASTOPEN, (RS4, 8080))     # blocking: connects, sends
        s.settimeout(5)
        _read_head(s)
        s.shutdown(socket.SHUT_WR)
        try:
            s.recv(4096)
        except socket.timeout:
            pass
        s.close()
    time.sleep(0.3)


def role_client_udp():
    import dns.message
    import dns.query
    q = dns.message.make_query('www.example.com', 'A')
    dns.query.udp(q, RS4, port=5353, timeout=5)
    dns.query.udp(q, RS6, port=5353, timeout=5)
    dns.query.tcp(q, RS4, port=5353, timeout=5)
    for fam, host in ((socket.AF_INET, RS4), (socket.AF_INET6, RS6)):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((host, 9999))
        s.send(b'closed port')
        try:
            s.recv(100)
        except (ConnectionRefusedError, socket.timeout):
            pass
        s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, 11, 1)        # SO_NO_CHECK: zero UDP checksum
    s.sendto(b'zero checksum', (RS4, 7777))
    s.close()
    time.sleep(0.3)


ROLES = {'server': role_server, 'client_tcp': role_client_tcp,
         'client_tfo': role_client_tfo, 'client_udp': role_client_udp}
REAL_CLIENT = {'real_tcp.pcap': 'client_tcp', 'real_tfo.pcap': 'client_tfo',
               'real_udp.pcap': 'client_udp'}


# ============================================================================ main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--capture', action='store_true',
                        help='also capture the real_*.pcap files (root, namespaces)')
    parser.add_argument('--records', action='store_true',
                        help='only recompute the expected records of existing pcaps')
    parser.add_argument('--role', help=argparse.SUPPRESS)
    parser.add_argument('rest', nargs='*', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == 'capture':
        role_capture(*args.rest)
        return 0
    if args.role:
        ROLES[args.role]()
        return 0
    sys.path.insert(0, str(HERE.parents[2]))
    if not args.records:
        write_crafted()
        if args.capture:
            if os.geteuid() != 0:
                parser.error('--capture needs root (network namespaces)')
            for name, role in REAL_CLIENT.items():
                capture_real(name, role)
    manifest = crafted_manifest()
    manifest.update({k: dict(v, kind='real') for k, v in REAL.items()})
    (HERE / 'manifest.json').write_text(json.dumps(manifest, indent=1, sort_keys=True) + '\n')
    problems = write_records(manifest)
    for p in problems:
        print('EXPECTATION FAILED:', p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
