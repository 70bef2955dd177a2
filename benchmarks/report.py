"""Benchmark of ``pathspider report`` and ``export --pto`` on a large results file: time and peak
memory (the largest resident set of the command's process).

    python benchmarks/report.py [--records 1000000] [--dir /tmp]

It writes an ecn results file of ``--records`` records (two per target, spread over the lab's
classes and both IP versions), then runs each command on it as a separate process. The
memory should stay flat as ``--records`` grows: both stream and keep only counts.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def write_results(path, records):
    """An ecn results file of ``records`` flows records (two per target)."""
    with open(path, "w") as out:
        for n in range(records // 2):
            cls = 64 + n % 13
            dip = f"198.18.{cls}.{1 + n % 250}" if n % 2 else f"2001:db8:100:{n % 13}000::{n % 250 + 1:x}"
            for config in (0, 1):
                out.write(json.dumps({
                    "dip": dip, "dp": 80, "host": "", "rank": str(n + 1), "config": config,
                    "sip": "2001:db8:0:1::2" if ":" in dip else "198.18.0.2", "observed": True,
                    "connstate": True, "tcp_connected": True,
                    "rev_syn_flags": 0x52 if config else 0x12, "rev_ez": bool(config),
                    "rev_eo": False, "rev_ce": False, "ecn_fallback": cls == 66,
                    "tstart": "2024-05-01 12:00:00.5", "tstop": "2024-05-01 12:00:01"}) + "\n")


def measure(argv):
    """``(seconds, peak resident MiB)`` of a command run as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as where:
        results = os.path.join(where, "ecn.ndjson")
        write_results(results, args.records)
        size = os.path.getsize(results) / 2**20
        base = [sys.executable, "-m", "pathspider.run"]
        for name, argv in (
                ("report", base + ["report", "--plugin", "ecn", results, "-o",
                                   os.path.join(where, "r.html")]),
                ("export --pto", base + ["export", "--pto", "--plugin", "ecn", results, "-o",
                                         os.path.join(where, "o.ndjson")])):
            seconds, peak = measure(argv)
            print(f"{name}: {args.records} records ({size:.0f} MiB): {seconds:.1f} s, "
                  f"{args.records / seconds:.0f} records/s, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
