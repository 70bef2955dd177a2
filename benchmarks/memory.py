"""Memory benchmark: RSS of every process of a run, from 10k to 1M streamed targets.

Runs ``pathspider`` through the real command line in the lab's client namespace
(``pathspider lab exec``), with ``ecn`` (real connections and capture) and with ``noop`` (a
benchmark-only plugin in ``benchmarks/plugins`` that makes no connection and uses the dummy
Observer: the engine alone), over a target list streamed into its standard input: the lab's
answering targets (~6,000: 254 hosts per class and family) repeated with ranks counting up,
generated on the fly, never held in memory or on disk. Records go to a pipe that is counted
and discarded.

Every ``--interval`` seconds (0.5) the benchmark reads ``VmRSS`` and ``VmHWM`` from
``/proc/<pid>/status`` of every process of the run (found through the process tree: the main
process, and the Observer child it forks). At the end it prints, per run and per process,
the peak (the largest ``VmHWM`` sampled), the sampled RSS at every tenth of the run's records
(the curve), and the exact peak of the largest process (``ru_maxrss`` of the run's processes,
from a small wrapper that waits for them: it also covers the last half second before they
exit, where sampling cannot look). ``--smaps`` adds the Observer's and the main process's
``/proc/<pid>/smaps_rollup`` (anonymous heap vs. mapped capture buffer) at their peak sample.

    .venv/bin/python benchmarks/memory.py [--lab NAME] [--plugin noop|ecn|both]
        [--counts 10000,100000,300000,1000000] [--workers 100] [--interval 0.5]
        [--keep-lab] [--smaps]

Target (issue 13): every process of a run at most 150 MB RSS from 10k to 1M targets at 100
workers, for ``noop`` and for ``ecn`` on the lab. Each run is bounded in time (``--max-seconds``,
default 60 s plus 1 s per 5,000 ``noop`` targets or per 1,000 ``ecn`` targets); a run that
exceeds it is stopped (SIGTERM, then SIGKILL) and reported as such. ``ecn`` on the lab does
~2,500 jobs/s, so 1M ``ecn`` targets take about 7 minutes. Needs root; brings the lab up (and
down again unless it was up before or ``--keep-lab`` is given).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pathspider.lab import Lab, plan

HERE = Path(__file__).resolve().parent
PLUGIN_TREE = HERE / "plugins"
ANSWERING = [c for c in plan.CLASS_NAMES if c != "blackhole"]

#: Runs the measured command and writes the peak RSS (kB) of the largest process it waited
#: for (the main process, and through it the Observer child).
RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "status = subprocess.call(sys.argv[2:])\n"
               "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "open(sys.argv[1], 'w').write(str(u.ru_maxrss))\n"
               "sys.exit(status)\n")

#: --plugin: the pathspider arguments after the global options.
PLUGINS = {"noop": ["noop"], "ecn": ["ecn", "--timeout", "5"]}

_OBSERVED = re.compile(rb'"observed": ?true')


# ---- targets, streamed -------------------------------------------------------------------------

def base_rows(lab):
    """Every answering lab target once, both families: ``(ip, port, host)``."""
    rows = lab.targets(254 * len(ANSWERING) * 2, ANSWERING, "both", plan.HTTP_PORT)
    return [(ip, port, host) for ip, port, host, _ in rows]


def stream_targets(pipe, rows, count, fed):
    """Write ``count`` CSV lines (``rows`` repeated, ranks 1..count) to ``pipe`` in chunks;
    ``fed[0]`` counts the lines written. A closed pipe (the run ended early) stops it."""
    n = len(rows)
    try:
        rank = 0
        while rank < count:
            upto = min(count, rank + 2000)
            chunk = "".join(f"{rows[i % n][0]},{rows[i % n][1]},{rows[i % n][2]},{i + 1}\n"
                            for i in range(rank, upto))
            pipe.write(chunk.encode())
            rank = fed[0] = upto
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def count_records(pipe, counts):
    """Count the lines and observed records the run writes, keeping none of them."""
    carry = b""
    while True:
        chunk = pipe.read(1 << 20)
        if not chunk:
            break
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        whole, carry = data[:cut], data[cut:]
        counts["records"] += whole.count(b"\n")
        counts["observed"] += len(_OBSERVED.findall(whole))


# ---- processes ---------------------------------------------------------------------------------

def children_map():
    """ppid -> [pid] for every process on the machine."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def run_processes(root):
    """``{role: pid}`` of the run under ``root`` (the wrapper): ``main`` is the pathspider
    process, ``observer`` its child (forked, or spawned with ``PATHSPIDER_MP_START=spawn``,
    which also starts multiprocessing's ``resource_tracker``), other children by pid."""
    tree = children_map()
    roles = {}
    for pid in tree.get(root, []):
        if b"pathspider.run" in cmdline(pid):
            roles["main"] = pid
            for child in sorted(tree.get(pid, [])):
                if any(b"resource_tracker" in arg for arg in cmdline(child)):
                    roles["resource_tracker"] = child
                elif "observer" not in roles:
                    roles["observer"] = child
                else:
                    roles[f"child{child}"] = child
    return roles


def memory_of(pid):
    """``(VmRSS, VmHWM, threads)`` (kB, kB, count), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return (int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]),
                int(fields["Threads"]))
    except (KeyError, ValueError):
        return None


def smaps_rollup(pid):
    """Anonymous and file-backed RSS (kB) from ``/proc/<pid>/smaps_rollup``."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for key in ("Rss", "Anonymous", "Shared_Clean", "Shared_Dirty", "Private_Dirty"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if m:
            out[key.lower()] = int(m.group(1))
    return out


class Sampler(threading.Thread):
    """Samples every process of the run every ``interval`` seconds until told to stop."""

    def __init__(self, root, interval, counts, fed, smaps):
        super().__init__(name="sampler", daemon=True)
        self.root, self.interval, self.counts, self.fed = root, interval, counts, fed
        self.smaps = smaps
        self.stop = threading.Event()
        self.samples = []               # (t, fed, records, {role: (rss, hwm)})
        self.peak_smaps = {}            # role -> (rss, smaps_rollup) at its largest sample
        self.pids = {}

    def run(self):
        t0 = time.monotonic()
        while True:
            roles = run_processes(self.root)
            self.pids.update(roles)
            mem = {}
            for role, pid in roles.items():
                m = memory_of(pid)
                if m is not None:
                    mem[role] = m
                    if self.smaps and m[0] > self.peak_smaps.get(role, (0, None))[0]:
                        self.peak_smaps[role] = (m[0], smaps_rollup(pid))
            self.samples.append((round(time.monotonic() - t0, 2), self.fed[0],
                                 self.counts["records"], mem))
            if self.stop.wait(self.interval):
                return


# ---- one run -----------------------------------------------------------------------------------

def run(lab, plugin, rows, count, workers, interval, max_seconds, smaps=False):
    """Measure ``plugin`` over ``count`` streamed targets; return the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="psmem-") as tmp:
        rssfile = Path(tmp) / "rss"
        argv = [sys.executable, "-m", "pathspider.run", "lab", "--name", lab.name, "exec", "--",
                sys.executable, "-c", RSS_WRAPPER, str(rssfile),
                sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE,
                "-w", str(workers), *PLUGINS[plugin]]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(PLUGIN_TREE), os.environ.get("PYTHONPATH")) if p))
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        counts, fed = {"records": 0, "observed": 0}, [0]
        threads = [threading.Thread(target=stream_targets, args=(proc.stdin, rows, count, fed),
                                    daemon=True),
                   threading.Thread(target=count_records, args=(proc.stdout, counts),
                                    daemon=True)]
        log = []
        threads.append(threading.Thread(target=lambda: log.append(proc.stderr.read()),
                                        daemon=True))
        wrapper = wrapper_pid(proc.pid)
        sampler = Sampler(wrapper, interval, counts, fed, smaps)
        sampler.start()
        for t in threads:
            t.start()
        timed_out = wait_bounded(proc, max_seconds)
        wall = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
        for t in threads:
            t.join(10)
        exact = int(rssfile.read_text()) if rssfile.exists() else None
    return figures(plugin, count, proc.returncode, timed_out, wall, counts, sampler, exact,
                   (log[0] if log else b"").decode(errors="replace"))


def wrapper_pid(lab_exec_pid, timeout=10.0):
    """The pid of the RSS wrapper, once ``lab exec`` has started it (its only child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children_map().get(lab_exec_pid, []):
            if b"-c" in cmdline(pid):
                return pid
        time.sleep(0.02)
    raise SystemExit("lab exec did not start the run")


def wait_bounded(proc, max_seconds):
    """Wait for the run; past ``max_seconds`` stop it (SIGTERM, SIGKILL). True if it timed out."""
    try:
        proc.wait(max_seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)        # lab exec passes it on to the run
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return True


def figures(plugin, count, status, timed_out, wall, counts, sampler, exact_kb, log):
    """The run's figures: outcome, jobs/s, and per process its peak and its curve."""
    reported = re.search(r"in ([0-9.]+) s \(([0-9]+) jobs/s\)", log)
    out = {"plugin": plugin, "targets": count, "status": status, "timed_out": timed_out,
           "wall_s": round(wall, 1),
           "jobs_per_s_run": int(reported.group(2)) if reported else None,
           "records": counts["records"], "records_expected": 2 * count,
           "observed_share": round(counts["observed"] / max(1, counts["records"]), 4),
           "largest_process_peak_mb": round(exact_kb / 1024, 1) if exact_kb else None}
    for role in sorted({r for *_, mem in sampler.samples for r in mem}):
        series = [(t, rec, mem[role][0]) for t, _, rec, mem in sampler.samples if role in mem]
        peak_hwm = max(mem[role][1] for *_, mem in sampler.samples if role in mem)
        out[role] = {"peak_mb": round(peak_hwm / 1024, 1),
                     "threads_max": max(mem[role][2] for *_, mem in sampler.samples
                                        if role in mem),
                     "curve_mb": curve(series, 2 * count)}
        if role in sampler.peak_smaps:
            out[role]["smaps_at_peak_kb"] = sampler.peak_smaps[role][1]
    if status != 0 and not timed_out:
        out["log_tail"] = log[-1500:]
    return out


def curve(series, expected):
    """Sampled RSS (MB) when the run had written 10 %, 20 % ... 100 % of its records, and the
    last sample: ``[[percent, seconds, MB], ...]``."""
    points, step = [], 1
    for t, rec, rss in series:
        while step <= 10 and rec >= expected * step / 10:
            points.append([step * 10, t, round(rss / 1024, 1)])
            step += 1
    if series:
        t, rec, rss = series[-1]
        points.append(["end", t, round(rss / 1024, 1)])
    return points


def print_run(result):
    """One summary line and the curve per process."""
    head = {k: v for k, v in result.items() if not isinstance(v, dict)}
    print(f"run: {json.dumps(head)}", flush=True)
    for role in ("main", "observer"):
        if role in result:
            r = result[role]
            print(f"  {role:>8} peak {r['peak_mb']:6.1f} MB, {r['threads_max']:4} threads; "
                  "curve (% of records, s, MB): "
                  + " ".join(f"{p}:{m}" for p, _, m in r["curve_mb"]), flush=True)
            if "smaps_at_peak_kb" in r:
                print(f"  {role:>8} smaps at peak (kB): {json.dumps(r['smaps_at_peak_kb'])}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default=os.environ.get("PATHSPIDER_LAB_NAME") or "psbench")
    parser.add_argument("--plugin", choices=["noop", "ecn", "both"], default="both")
    parser.add_argument("--counts", default="10000,100000,300000,1000000",
                        help="target counts to run, comma-separated")
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop a run after this long (default: by plugin and count)")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--smaps", action="store_true",
                        help="also read smaps_rollup at each process's largest sample")
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    args = parser.parse_args(argv)

    lab = Lab(args.lab)
    was_up = lab.is_up()
    lab.up()
    results = []
    try:
        rows = base_rows(lab)
        plugins = ["noop", "ecn"] if args.plugin == "both" else [args.plugin]
        for plugin in plugins:
            for count in (int(c) for c in args.counts.split(",")):
                limit = args.max_seconds or 60 + count / (5000 if plugin == "noop" else 1000)
                result = run(lab, plugin, rows, count, args.workers, args.interval, limit,
                             args.smaps)
                print_run(result)
                results.append(result)
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        if not (was_up or args.keep_lab):
            lab.down()


if __name__ == "__main__":
    main()
