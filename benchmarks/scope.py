"""Scope filter benchmark: the cost per target of the default blocklist and of user lists.

Classifies ``--targets`` random addresses (a quarter IPv6) against the default blocklist plus
a ``--blocklist`` of ``--cidrs`` random CIDRs and an ``--allowlist`` of as many, through
:meth:`ScopeFilter.admit` exactly as the run's feeder calls it (job lists in, job lists out).
Nothing is sent anywhere: addresses are only classified. Prints the time to read the lists
and build the interval maps, and the CPU time per target, best of ``--repeat``.

    .venv/bin/python benchmarks/scope.py [--targets 1000000] [--cidrs 5000] [--repeat 3]

Target: a 1M-target list against thousands of CIDRs costs well under a microsecond per target
(a sorted-interval search: one bisect per target, not a scan of the lists).
"""

import argparse
import ipaddress
import logging
import os
import random
import tempfile
import time

from pathspider.engine.scope import build_filter


def random_cidrs(rnd, count, v6_share=0.25):
    lines = []
    for _ in range(count):
        if rnd.random() < v6_share:
            length = rnd.choice([32, 40, 48, 56, 64])
            net = ipaddress.IPv6Network((rnd.getrandbits(length) << (128 - length), length))
        else:
            length = rnd.choice([8, 12, 16, 20, 24, 28, 32])
            net = ipaddress.IPv4Network((rnd.getrandbits(length) << (32 - length), length))
        lines.append(f"{net}\n")
    return "".join(lines)


def random_jobs(rnd, count, v6_share=0.25):
    jobs = []
    for i in range(count):
        if rnd.random() < v6_share:
            ip = str(ipaddress.IPv6Address(rnd.getrandbits(128)))
        else:
            ip = str(ipaddress.IPv4Address(rnd.getrandbits(32)))
        jobs.append([ip, 80, "", str(i)])
    return jobs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1_000_000)
    parser.add_argument("--cidrs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)        # one warning per kind: not what is measured
    rnd = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        block, allow = os.path.join(tmp, "block.txt"), os.path.join(tmp, "allow.txt")
        with open(block, "w") as f:
            f.write(random_cidrs(rnd, args.cidrs))
        with open(allow, "w") as f:
            f.write("0.0.0.0/1\n128.0.0.0/1\n2000::/3\n" + random_cidrs(rnd, args.cidrs))
        jobs = random_jobs(rnd, args.targets)
        cases = {"default blocklist only": {},
                 f"+ --blocklist of {args.cidrs} CIDRs": {"blocklists": [block]},
                 f"+ --blocklist and --allowlist of {args.cidrs} CIDRs each":
                     {"blocklists": [block], "allowlists": [allow]}}
        for name, options in cases.items():
            started = time.perf_counter()
            scope = build_filter(**options)
            built = time.perf_counter() - started
            best = None
            for _ in range(args.repeat):
                scope = build_filter(**options)
                started = time.process_time()
                admitted = sum(1 for _ in scope.admit(iter(jobs)))
                cpu = time.process_time() - started
                best = cpu if best is None else min(best, cpu)
            segments = len(scope._maps[4].starts) + len(scope._maps[6].starts)
            print(f"{name}: built in {built * 1000:.1f} ms ({segments} segments); "
                  f"{args.targets} targets in {best:.2f} s CPU = "
                  f"{best / args.targets * 1e9:.0f} ns per target; {admitted} admitted, "
                  f"{scope.skipped_total} skipped")


if __name__ == "__main__":
    main()
