"""Signal soak: real ``ecn`` runs on the lab, stopped by signals at random moments.

For each pattern of {INT, INT×2, TERM, TERM×2, HUP} and each of ``--rounds`` random timings
(default 20), a run over quick and silent lab targets (fed through a FIFO, so the run may be
reading, measuring or draining) gets its signal(s) after a random delay. Counted per pattern:

* hangs: the run ended more than 10 s after its last signal (or not at all);
* corrupt: an output line that is not valid JSON, or a job with only one of its two records
  (a run that was not stopped at once must write a job's records both or neither);
* state left: the client namespace's sysctls or nftables ruleset differ afterwards, or the
  system-state journal is still there;
* wrong status: an exit status other than 128 + the signal (a run that completed before its
  signal arrived exits 0 with a "done" summary: counted apart, not a problem);
* tracebacks on stderr.

All must be 0. Run as root from the repository (about 4 minutes with the defaults):

    .venv/bin/python benchmarks/signal_soak.py [--rounds 20] [--lab pssoak] [--seed 1]

Brings the lab up and takes it down again (unless ``--keep-lab``).
"""
import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "faults"))

from fault_run import FaultRun, rows  # noqa: E402  (the fault-injection suite's run helper)

from pathspider.lab import Lab  # noqa: E402

PATTERNS = [("INT", 1), ("INT", 2), ("TERM", 1), ("TERM", 2), ("HUP", 1)]
HANG_SECONDS = 10.0


def one_run(lab, workdir, name, times, rng):
    """One run, stopped at a random moment; returns the set of problems seen."""
    problems = set()
    before = lab.client_snapshot()
    run = FaultRun(lab, workdir, timeout=3)
    run.feed(rows(lab, ["clean"], rng.randint(1, 5)))
    if rng.random() < 0.7:
        run.feed(rows(lab, ["blackhole"], rng.randint(1, 5)))
    if rng.random() < 0.5:
        run.end_input()
    time.sleep(rng.uniform(0.0, 4.0))
    signum = getattr(signal, "SIG" + name)
    run.signal(signum, times=times, gap=rng.uniform(0.05, 1.0))
    try:
        status, since = run.wait(HANG_SECONDS)
    except Exception:
        return {"hang"}
    if since is None or since > HANG_SECONDS:
        problems.add("hang")
    finished_first = status == 0 and "INFO pathspider.engine.coordinator: done:" in run.stderr()
    if finished_first:
        problems.add("done before the signal")       # counted, not a problem
    elif status != 128 + signum:
        problems.add("wrong status")
    try:
        run.check_ending()
    except AssertionError as exc:
        text = str(exc)
        problems.add("traceback" if "Traceback" in text else "corrupt")
    except ValueError:
        problems.add("corrupt")
    if lab.client_snapshot() != before:
        problems.add("state left")
        lab.restore_client(before)
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lab", default="pssoak")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-lab", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("signal_soak.py: run as root (the lab needs network namespaces)")
    rng = random.Random(args.seed)
    lab = Lab(args.lab)
    brought_up = lab.up()
    totals = {}
    try:
        for name, times in PATTERNS:
            counts = dict.fromkeys(("hang", "corrupt", "state left", "wrong status",
                                    "traceback", "done before the signal"), 0)
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    for problem in one_run(lab, Path(tmp), name, times, rng):
                        counts[problem] += 1
            label = f"{name}x{times}"
            totals[label] = counts
            print(f"{label:<8} runs {args.rounds:3d}  " + "  ".join(
                f"{k}: {v}" for k, v in counts.items()), flush=True)
    finally:
        if brought_up and not args.keep_lab:
            lab.down()
    bad = sum(v for counts in totals.values() for k, v in counts.items()
              if k != "done before the signal")
    print("all zero" if not bad else f"{bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
