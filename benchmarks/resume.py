"""Progress, run metadata and ``--resume`` on a large ``ecn`` lab run (issue 13).

"A 20k-target ecn lab run shows progress, writes metadata, and an interrupted 20k run resumed
gives the same record set as an uninterrupted one." This script runs, in the lab's client
namespace, through the real command line:

1. an uninterrupted run of ``--count`` targets (default 20,000: the lab's answering classes,
   both families, the list repeated with new ranks as ``benchmarks/e2e.py --repeat`` does, so
   every row is a distinct target) with ``--metadata`` and progress log lines every
   ``--interval`` seconds; it reports the progress lines and what the metadata says;
2. for each ``--interrupt`` (``sigint``, ``sigkill`` or both): the same list, paced at
   ``--rate`` jobs/s (so that jobs are still queued), stopped once a ``--at`` share of its jobs
   is done (SIGINT) or once that share of its records is written (SIGKILL), then
   ``--resume``d (unpaced) with the same ``--output`` and ``--metadata``; it checks that
   the final record set equals the uninterrupted run's: the same multiset of (target, config),
   nothing twice, nothing missing (timing fields and ports differ from run to run and are not
   compared).
3. ``--overhead N``: N interleaved pairs of runs with progress lines every second and with
   ``--no-progress``, to show that progress costs nothing measurable (jobs/s as the summary
   line reports it; the machine's other tenants move it by +-15 %).

    .venv/bin/python benchmarks/resume.py [--lab psbench] [--count 20000] [--workers 100]
        [--interrupt sigint,sigkill] [--at 0.4] [--rate 2000] [--interval 2] [--overhead 0]
        [--keep-lab] [--json FILE]

Needs root; brings the lab up (and down again unless it was up before or --keep-lab is
given). Exit status 0 when every check holds, 1 otherwise.
"""
import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pathspider.lab import Lab, netns, plan

ANSWERING = [c for c in plan.CLASS_NAMES if c != "blackhole"]
PROGRESS = re.compile(r"progress: ([\d,]+) (?:of ([\d,]+) )?jobs")
SUMMARY = re.compile(r"(done|stopped \([^)]*\)): .*? in ([0-9.]+) s \(([0-9]+) jobs/s\)")


def make_rows(lab, count):
    """``count`` distinct targets: the lab's answering classes, both families, repeated with
    new ranks once the lab's addresses run out."""
    per_round = len(ANSWERING) * 2 * len(plan.HOSTS)
    base = lab.targets(min(count, per_round), ANSWERING, "both")
    rows = []
    while len(rows) < count:
        rows.extend(list(row) for row in base[:count - len(rows)])
    for rank, row in enumerate(rows, 1):
        row[3] = str(rank)
    return rows


def pathspider(lab, infile, output, *extra, workers=100):
    argv = [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "-w", str(workers),
            "--input", str(infile), "--output", str(output), *extra, "ecn", "--timeout", "3"]
    return netns.command(lab.client_netns, argv)


def run_to_end(lab, infile, output, *extra, workers=100):
    """Run pathspider to its end; (exit status, stderr, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(pathspider(lab, infile, output, *extra, workers=workers),
                          capture_output=True, text=True, env=lab.client_env(), timeout=1800)
    return proc.returncode, proc.stderr, time.monotonic() - started


def interrupted(lab, infile, output, errfile, signum, share, total, *extra, workers=100):
    """A run stopped with ``signum`` once ``share`` of its jobs are done (SIGINT: by its
    progress lines) or ``share`` of its records are written (SIGKILL); its exit status."""
    with open(errfile, "w") as err:
        proc = subprocess.Popen(pathspider(lab, infile, output, *extra, workers=workers),
                                stdout=subprocess.DEVNULL, stderr=err, env=lab.client_env())
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if _reached(signum, errfile, output, share, total):
                proc.send_signal(signum)
                break
            time.sleep(0.05)
        try:
            return proc.wait(600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _reached(signum, errfile, output, share, total):
    if signum == signal.SIGKILL:
        try:
            with open(output, "rb") as stream:
                return stream.read().count(b"\n") >= share * 2 * total
        except FileNotFoundError:
            return False
    done = [int(m.group(1).replace(",", "")) for m in PROGRESS.finditer(Path(errfile).read_text())]
    return bool(done) and done[-1] >= share * total


def record_set(path):
    """Multiset of (dip, dp, host, rank, config); also whether every line was whole JSON."""
    text = Path(path).read_text()
    records = [json.loads(line) for line in text.splitlines()]
    return collections.Counter((r["dip"], r["dp"], r["host"], r["rank"], r["config"])
                               for r in records), text.endswith("\n") or not text


def compare(expected, got):
    missing = expected - got
    extra = got - expected
    return {"equal": expected == got, "records": sum(got.values()),
            "missing": sum(missing.values()), "extra": sum(extra.values()),
            "duplicates": sum(n - 1 for n in got.values() if n > 1)}


def summary_of(stderr):
    match = SUMMARY.search(stderr)
    return {"ended": match.group(1), "run_s": float(match.group(2)),
            "jobs_per_s": int(match.group(3))} if match else None


def progress_lines(stderr):
    return [line.split("progress: ", 1)[1] for line in stderr.splitlines() if "progress: " in line]


def uninterrupted(lab, infile, work, args, count):
    out, meta = work / "full.ndjson", work / "full-meta.json"
    status, err, wall = run_to_end(lab, infile, out, "--metadata", str(meta),
                                   "--progress-interval", str(args.interval),
                                   workers=args.workers)
    doc = json.loads(meta.read_text())
    lines = progress_lines(err)
    figures = {"exit_status": status, "wall_s": round(wall, 2), "summary": summary_of(err),
               "progress_lines": len(lines), "first_progress": lines[:1],
               "last_progress": lines[-1:],
               "metadata": {"status": doc["status"], "outcome": doc["outcome"],
                            "records_in_output": doc["records_in_output"],
                            "counters": {k: v for k, v in doc["segments"][0]["counters"].items()
                                         if k != "observer"},
                            "sysctls_before": doc["segments"][0]["system_state"]["before"],
                            "sysctls_after": doc["segments"][0]["system_state"]["after"],
                            "changed": doc["segments"][0]["system_state"]["changed"]}}
    ok = (status == 0 and doc["status"] == "ended" and doc["outcome"]["ended"] == "done"
          and doc["records_in_output"] == 2 * count and len(lines) >= 1)
    return out, figures, ok


def interrupt_and_resume(lab, infile, work, name, args, count, expected):
    signum = {"sigint": signal.SIGINT, "sigkill": signal.SIGKILL}[name]
    out, meta, errfile = work / f"{name}.ndjson", work / f"{name}-meta.json", work / f"{name}.err"
    first = interrupted(lab, infile, out, errfile, signum, args.at, count, "--metadata", str(meta),
                        "--progress-interval", "0.2", "--rate", str(args.rate),
                        workers=args.workers)
    before, whole = record_set(out) if out.exists() else (collections.Counter(), True)
    if name == "sigkill":
        subprocess.run(netns.command(lab.client_netns, [sys.executable, "-m", "pathspider.run",
                                                        "restore"]), capture_output=True)
    status, err, wall = run_to_end(lab, infile, out, "--resume", "--metadata", str(meta),
                                   "--progress-interval", str(args.interval),
                                   workers=args.workers)
    got, _ = record_set(out)
    doc = json.loads(meta.read_text())
    result = compare(expected, got)
    figures = {"interrupted_exit_status": 128 - first if first < 0 else first,
               "records_before_resume": sum(before.values()),
               "last_line_was_whole": whole,
               "resumed": doc["segments"][-1]["resumed"], "resume_exit_status": status,
               "resume_wall_s": round(wall, 2), "resume_summary": summary_of(err),
               "segments": [{"outcome": s["outcome"], "ended": s["ended"]}
                            for s in doc["segments"]],
               "final": result}
    ok = result["equal"] and status == 0 and len(doc["segments"]) == 2
    return figures, ok


def overhead(lab, infile, work, pairs, workers):
    rates = {"progress": [], "no-progress": []}
    for _ in range(pairs):
        for mode, extra in (("progress", ("--progress-interval", "1")),
                            ("no-progress", ("--no-progress",))):
            status, err, _ = run_to_end(lab, infile, work / f"o-{mode}.ndjson", *extra,
                                        workers=workers)
            summary = summary_of(err)
            if status == 0 and summary:
                rates[mode].append(summary["jobs_per_s"])
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default=os.environ.get("PATHSPIDER_BENCH_LAB", "psbench"))
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--interrupt", default="sigint,sigkill")
    parser.add_argument("--at", type=float, default=0.4,
                        help="share of the jobs (SIGINT) or records (SIGKILL) done when the "
                             "run is interrupted (default 0.4)")
    parser.add_argument("--rate", type=float, default=2000,
                        help="--rate of the interrupted runs (default 2000 jobs/s, about what "
                             "the lab sustains): without it every job of the list has started "
                             "within seconds, and a SIGINT at 40 %% of the jobs done would "
                             "find none left to drop")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between progress lines (default 2)")
    parser.add_argument("--overhead", type=int, default=0, metavar="PAIRS")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)

    lab = Lab(args.lab)
    was_up = lab.is_up()
    lab.up()
    report, ok = {"count": args.count}, True
    try:
        with tempfile.TemporaryDirectory(prefix="psresume-") as tmp:
            work = Path(tmp)
            infile = work / "targets.csv"
            infile.write_text("".join(",".join(map(str, r)) + "\n"
                                      for r in make_rows(lab, args.count)))
            full, report["uninterrupted"], good = uninterrupted(lab, infile, work, args,
                                                                args.count)
            ok &= good
            expected, _ = record_set(full)
            for name in [n.strip() for n in args.interrupt.split(",") if n.strip()]:
                report[name], good = interrupt_and_resume(lab, infile, work, name, args,
                                                          args.count, expected)
                ok &= good
            if args.overhead:
                report["overhead_jobs_per_s"] = overhead(lab, infile, work, args.overhead,
                                                         args.workers)
    finally:
        if not was_up and not args.keep_lab:
            lab.down()
    report["all_checks_hold"] = bool(ok)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
