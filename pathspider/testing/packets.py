"""Packets and pcap files for chain unit tests: build packets, write a pcap, observe it.

A chain function's unit test needs packets with exactly the fields it reads, in a capture,
run through the Observer. This module gives the three steps:

1. **Build** IPv4/IPv6 packets with TCP, UDP or ICMP and correct checksums:
   :func:`tcp4`, :func:`tcp6`, :func:`udp4`, :func:`udp6`, :func:`icmp4`, :func:`icmp6`
   (whole packets), or nest the parts yourself: :func:`tcp` / :func:`udp` / :func:`icmp` in
   :func:`ip4` / :func:`ip6`, optionally in an Ethernet frame (:func:`eth`). TCP options come
   from :func:`options`. What a chain test usually needs:

   ===========================  ==========================================================
   TCP flags                    ``flags=SYN | ECE | CWR`` (``FIN SYN RST PSH ACK URG ECE
                                CWR`` are exported)
   ToS / traffic class          ``tos=`` (IPv4 TOS byte) / ``tc=`` (IPv6), DSCP << 2 | ECN
   IPv4 reserved ("evil") bit   ``evil=True`` (or ``flags=IP4_RF`` on :func:`ip4`)
   TCP options                  ``options=options(mss=1460, sack_ok=True, wscale=7,
                                timestamps=(1, 0), tfo_cookie=b"")``
   payload                      ``payload=b"..."``
   UDP checksum zero            ``csum=0`` (:func:`udp4`, :func:`udp6`, :func:`udp`)
   sequence numbers, TTL...     ``seq=``, ``ack=``, ``window=`` (TCP); ``ttl=``,
                                ``ident=`` (IPv4); ``hlim=`` (IPv6)
   ===========================  ==========================================================

2. **Write** them to a pcap file with timestamps: :func:`write_pcap` takes ``(timestamp,
   packet)`` pairs; packets are raw IP unless you pass ``linktype=LINKTYPE_ETHERNET`` and
   :func:`eth` frames.

3. **Observe**: :func:`observe` runs an :class:`~pathspider.observer.meter.Observer` with the
   chain functions you choose over the file and returns its flow records (dicts).

Example, an ECN chain test::

    from pathspider.observer.basic import basic_count, basic_flow
    from pathspider.observer.ecn import ecn_code, ecn_setup
    from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup
    from pathspider.testing.packets import (ACK, CWR, ECE, SYN, observe, options, tcp4,
                                            write_pcap)

    C, S = "198.18.0.2", "198.18.64.1"          # lab / documentation addresses only

    def test_ecn_negotiated(tmp_path):
        pcap = write_pcap(tmp_path / "ecn.pcap", [
            (1.0, tcp4(C, S, 40000, 80, SYN | ECE | CWR, options=options(mss=1460))),
            (1.1, tcp4(S, C, 80, 40000, SYN | ACK | ECE, seq=5000, ack=1001)),
            (1.2, tcp4(C, S, 40000, 80, ACK, seq=1001, ack=5001)),
            (1.3, tcp4(C, S, 40000, 80, ACK, tos=0x02, seq=1001, ack=5001, payload=b"GET")),
        ])
        [rec] = observe(pcap, new_flow_chain=[basic_flow, tcp_setup, ecn_setup],
                        ip4_chain=[basic_count, ecn_code],
                        tcp_chain=[tcp_handshake, tcp_complete])
        assert rec["tcp_connected"] and rec["fwd_syn_flags"] == SYN | ECE | CWR
        assert rec["fwd_ez"] and not rec["rev_ez"]      # ECT(0) seen client -> server only

The builders are pathspider's only packet builder (:mod:`pathspider.lab.craft`, which the lab
uses to send hand-made packets), re-exported here with the pcap writer and the Observer
runner. Use only the lab's documentation and benchmarking addresses (198.18.0.0/15,
2001:db8::/32) in tests. No root is needed.
"""
import os
import struct

from pathspider.lab.craft import (ACK, CWR, ECE, FIN, IP4_DF, IP4_MF, IP4_RF, MAC_CLIENT,
                                  MAC_SERVER, PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PROTO_UDP,
                                  PSH, RST, SYN, URG, checksum, eth, icmp, icmp4, icmp6, ip4,
                                  ip6, options, tcp, tcp4, tcp6, udp, udp4, udp6)
from pathspider.observer.basic import basic_flow
from pathspider.observer.meter import Observer

__all__ = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "IP4_RF", "IP4_DF",
           "IP4_MF", "MAC_CLIENT", "MAC_SERVER", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "PROTO_ICMP6",
           "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "checksum", "options", "tcp", "udp", "icmp",
           "ip4", "ip6", "tcp4", "tcp6", "udp4", "udp6", "icmp4", "icmp6", "eth",
           "write_pcap", "observe"]

#: pcap link types: Ethernet frames, or bare IPv4/IPv6 packets.
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def write_pcap(path, packets, linktype=LINKTYPE_RAW, snaplen=65535, nano=False):
    """Write a classic pcap file; returns ``path``.

    ``packets``: ``(timestamp, bytes)`` pairs (timestamp in seconds, a float), or
    ``(timestamp, bytes, wire_length)`` for a packet captured shorter than it was. The
    bytes are IP packets for ``LINKTYPE_RAW`` (the default), Ethernet frames for
    ``LINKTYPE_ETHERNET``. Timestamps are stored in microseconds, or nanoseconds with
    ``nano``. Packets longer than ``snaplen`` are stored cut to it.
    """
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                              snaplen, linktype))
        for item in packets:
            stamp, data = item[0], bytes(item[1])
            wire = item[2] if len(item) > 2 else len(data)
            data = data[:snaplen]
            sec = int(stamp)
            frac = round((stamp - sec) * (1e9 if nano else 1e6))
            out.write(struct.pack("<IIII", sec, frac, len(data), wire))
            out.write(data)
    return path


def observe(pcap, new_flow_chain=(basic_flow,), **chains):
    """Run an Observer over the pcap file ``pcap``; its flow records, in emission order.

    ``new_flow_chain`` defaults to :func:`~pathspider.observer.basic.basic_flow` (addresses,
    ports, protocol); the other chains and settings are the Observer's keyword arguments:
    ``ip4_chain``, ``ip6_chain``, ``icmp4_chain``, ``icmp6_chain``, ``tcp_chain``,
    ``udp_chain``, ``l4_chain``, ``idle_timeout``, ``expiry_timeout``. Flows still open at
    the end of the file are flushed, so every flow gives one record.
    """
    observer = Observer(f"pcap:{os.fspath(pcap)}", new_flow_chain=list(new_flow_chain),
                        **{key: list(value) if key.endswith("_chain") else value
                           for key, value in chains.items()})
    return list(observer.flows())
