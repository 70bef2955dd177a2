#!/usr/bin/env python3
"""Observer throughput: packets/s over a generated pcap, next to a bare pcapy-ng read loop.

Generates (once, cached under /tmp) an Ethernet pcap of ~200k packets in ~20k TCP flows, half
IPv4 and half IPv6, one flow in four ECN-marked (ECT(0) on data, ECE/CWR on the SYN), with
flows interleaved over ~60 s so that expiry and idle timers fire during the replay. Then
reports, in the same run:

* ``bare``: a pcapy-ng ``next_batch`` loop over the file that unpacks every packet's metadata
  and slices its bytes (the floor any Observer pays);
* ``full``: ``Observer.flows()`` with basic_flow + basic_count + the TCP chain (tcp_setup,
  tcp_handshake, tcp_complete) + the ECN chain (ecn_setup, ecn_code);
* ``basic``: basic_flow + basic_count only; ``none``: no chain functions at all;
* ``plugin``: ``full`` plus one plugin function written in Python in the ip4/ip6 chains (it
  reads ``ip.ttl`` and counts in the record), as a measurement plugin adds its own.

The meter line says whether the compiled meter ran (see setup.py) and the Python version.

Usage: ``python benchmarks/observer.py [--flows N] [--repeat R] [--configs full,basic,...]
[--profile]``. Figures are packets per second of CPU time (``time.process_time``), best of
``--repeat`` interleaved runs, so other load on the machine disturbs them little (on a
shared virtual machine they still vary by +-5 %: compare runs made side by side).
``--profile`` prints the top of a cProfile of one full observer run (compiled functions do
not show in it). Targets (issue 11): compiled, full >= 1.5M packets/s, basic >= 2M,
plugin >= 800k.
"""

import argparse
import cProfile
import os
import pstats
import random
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "data", "core"))
import make_pcaps as mk  # noqa: E402  (the struct packet crafter of the test captures)

import pcapy  # noqa: E402

from pathspider.observer import Observer, basic_count, basic_flow  # noqa: E402

from pathspider.observer import meter_mode  # noqa: E402
from pathspider.observer.ecn import ecn_code, ecn_setup  # noqa: E402
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup  # noqa: E402

PCAP = "/tmp/pathspider-bench-observer-%d.pcap"


def flow_packets(i, v6, ecn):
    """Ten packets of one TCP connection (handshake, two requests, FIN exchange)."""
    if v6:
        c = "2001:db8:1::%x" % (i % 60000 + 1)
        s = "2001:db8:100::%x" % (i % 250 + 1)
        mkp, kw = mk.tcp6, "tc"
    else:
        c = "198.18.%d.%d" % (i // 250 % 64, i % 250 + 1)
        s = "198.18.64.%d" % (i % 250 + 1)
        mkp, kw = mk.tcp4, "tos"
    sp, dp = 10000 + i % 50000, 80
    ect = {kw: 2 if ecn else 0}
    syn = mk.SYN | (mk.ECE | mk.CWR if ecn else 0)
    sa = mk.SYN | mk.ACK | (mk.ECE if ecn else 0)
    data = b"x" * 100
    return [
        mkp(c, s, sp, dp, syn, seq=1),
        mkp(s, c, dp, sp, sa, seq=9, ack=2),
        mkp(c, s, sp, dp, mk.ACK, seq=2, ack=10),
        mkp(c, s, sp, dp, mk.PSH | mk.ACK, seq=2, ack=10, payload=data, **ect),
        mkp(s, c, dp, sp, mk.PSH | mk.ACK, seq=10, ack=102, payload=data * 4, **ect),
        mkp(c, s, sp, dp, mk.ACK, seq=102, ack=410, **ect),
        mkp(s, c, dp, sp, mk.PSH | mk.ACK, seq=410, ack=102, payload=data, **ect),
        mkp(c, s, sp, dp, mk.FIN | mk.ACK, seq=102, ack=510, **ect),
        mkp(s, c, dp, sp, mk.FIN | mk.ACK, seq=510, ack=103, **ect),
        mkp(c, s, sp, dp, mk.ACK, seq=103, ack=511),
    ]


def generate(path, nflows, seed=1):
    """Write the benchmark pcap: flows start over ~60 s, their packets 1-50 ms apart."""
    rnd = random.Random(seed)
    events = []
    t0 = 1_700_000_000.0
    for i in range(nflows):
        start = t0 + 60.0 * i / nflows
        t = start
        for p in flow_packets(i, v6=i % 2 == 1, ecn=i % 4 < 2):
            events.append((t, mk.eth(p)))
            t += rnd.uniform(0.001, 0.05)
    events.sort(key=lambda e: e[0])
    mk.write_pcap(path, events, 1)
    return len(events)


# CPU time of this process: the figures stay comparable on a machine shared with other work.
clock = time.process_time


def bare_loop(path):
    """pcapy-ng floor: read every batch, unpack every packet's metadata, slice its bytes."""
    unpack = struct.Struct("=IIII").iter_unpack
    cap = pcapy.open_offline(path)
    n = 0
    t = clock()
    while True:
        pkts, meta = cap.next_batch(1024)
        if not meta:
            break
        for sec, usec, off, caplen in unpack(meta):
            pkts[off:off + caplen]
            n += 1
    return n, clock() - t


def ttl_seen(rec, ip, rev):
    """A plugin's own ip4/ip6 chain function, in Python: the lowest TTL per direction."""
    key = "rev_ttl" if rev else "fwd_ttl"
    ttl = ip.ttl
    if ttl < rec.get(key, 256):
        rec[key] = ttl
    return True


FULL = dict(new_flow_chain=[basic_flow, tcp_setup, ecn_setup],
            ip4_chain=[basic_count, ecn_code], ip6_chain=[basic_count, ecn_code],
            tcp_chain=[tcp_handshake, tcp_complete])
CONFIGS = {
    "full": FULL,
    "basic": dict(new_flow_chain=[basic_flow], ip4_chain=[basic_count],
                  ip6_chain=[basic_count]),
    "none": dict(),
    "plugin": dict(FULL, ip4_chain=[basic_count, ecn_code, ttl_seen],
                   ip6_chain=[basic_count, ecn_code, ttl_seen]),
}
LABELS = {"full": "observer: basic + tcp + ecn chains", "basic": "observer: basic chains",
          "none": "observer: no chains", "plugin": "observer: full + a Python function"}
TARGETS = {"full": 1_500_000, "basic": 2_000_000, "plugin": 800_000}


def observer_run(path, config="full"):
    obs = Observer(path, **CONFIGS[config])
    t = clock()
    nrec = sum(1 for _ in obs.flows())
    dt = clock() - t
    return obs.stats()["packets"], nrec, dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--configs", default="full,basic,none",
                    help="chain sets to measure (%s)" % ", ".join(CONFIGS))
    args = ap.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    for config in args.configs:
        if config not in CONFIGS:
            ap.error("unknown config %r (choose from %s)" % (config, ", ".join(CONFIGS)))

    path = PCAP % args.flows
    if not os.path.exists(path):
        t = time.perf_counter()
        n = generate(path, args.flows)
        print("generated %s: %d packets, %d flows in %.1f s" % (
            path, n, args.flows, time.perf_counter() - t))
    print("meter: %s; python %s" % (meter_mode(), sys.version.split()[0]))

    best_bare = 0
    best = dict.fromkeys(args.configs, 0)
    for _ in range(args.repeat):            # interleaved, best of N: robust to other load
        n, dt = bare_loop(path)
        best_bare = max(best_bare, n / dt)
        for config in args.configs:
            n, nrec, dt = observer_run(path, config)
            best[config] = max(best[config], n / dt)
    print("packets/s (CPU time, best of %d; %d packets, %d flows):" % (args.repeat, n, nrec))
    print("  bare pcapy-ng next_batch loop      %10.0f" % best_bare)
    for config in args.configs:
        rate = best[config]
        target = TARGETS.get(config)
        print("  %-34s %10.0f  (%4.0f ns/packet)%s" % (
            LABELS[config], rate, 1e9 / rate,
            "" if target is None else "  target %d: %s" % (
                target, "met" if rate >= target else "NOT met")))

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        observer_run(path)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
