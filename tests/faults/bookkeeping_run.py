"""Helpers for the progress, metadata and resume tests: real ``pathspider ecn`` runs in the
lab's client namespace over a target file, started in the background so a test can stop them
(SIGINT, SIGKILL) at a chosen moment, and the comparison of record sets."""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time

from pathspider.lab import netns, plan

#: Impairment classes whose targets answer (no blackhole: a run never waits for a timeout).
ANSWERING = [c for c in plan.CLASS_NAMES if c != "blackhole"]


def target_rows(lab, count, duplicates=0):
    """``count`` lab targets over the answering classes, both families, with the first
    ``duplicates`` rows listed a second time at the end (a target listed twice)."""
    rows = lab.targets(count, ANSWERING, "both")
    return rows + [list(row) for row in rows[:duplicates]]


def write_rows(path, rows):
    path.write_text("".join(",".join(str(c) for c in row) + "\n" for row in rows))
    return path


class Run:
    """One ``pathspider ecn`` run in the client namespace (stderr to a file)."""

    def __init__(self, lab, tmp_path, infile, output, *extra, name="run", timeout=3,
                 plugin=("ecn",), stderr=None):
        self.stderr_path = tmp_path / f"{name}.stderr"
        argv = [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "-w", "50",
                "--input", str(infile), "--output", str(output), *extra, *plugin,
                "--timeout", str(timeout)]
        self._stderr = stderr if stderr is not None else open(self.stderr_path, "w")
        self.proc = subprocess.Popen(netns.command(lab.client_netns, argv),
                                     stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     env=lab.client_env())

    def stop(self, signum, after):
        """Send ``signum`` ``after`` seconds from now (if the run is still going)."""
        try:
            self.proc.wait(after)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signum)
        return self

    def wait(self, timeout=120):
        try:
            status = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if hasattr(self._stderr, "close"):
                self._stderr.close()
        return 128 - status if status < 0 else status

    def stderr(self):
        return self.stderr_path.read_text()


def run_to_end(lab, tmp_path, infile, output, *extra, name="run", **kwargs):
    """A run that must complete; returns its stderr."""
    run = Run(lab, tmp_path, infile, output, *extra, name=name, **kwargs)
    status = run.wait()
    assert status == 0, f"{name} exited {status}:\n{run.stderr()[-3000:]}"
    return run.stderr()


def wait_for_lines(path, least, timeout=30):
    """Wait (bounded) until ``path`` holds at least ``least`` newline characters."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as stream:
                if stream.read().count(b"\n") >= least:
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return False


def wait_measuring(run, least=1, timeout=60):
    """Wait (bounded) until the run's progress lines (``--progress-interval``) say that at
    least ``least`` jobs are done; fails if the run ends first."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"progress: ([\d,]+) ")
    while time.monotonic() < deadline:
        done = [int(m.group(1).replace(",", "")) for m in pattern.finditer(run.stderr())]
        if done and done[-1] >= least:
            return done[-1]
        assert run.proc.poll() is None, f"the run ended early:\n{run.stderr()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {least} jobs done after {timeout} s")


def records(path):
    """The records of an output; fails on a torn or invalid line."""
    text = open(path).read()
    assert text == "" or text.endswith("\n"), "the output ends in a torn line"
    return [json.loads(line) for line in text.splitlines()]


def record_set(path):
    """Multiset of (target, config) of a flows output: what must match between runs
    (timing fields and ports differ from run to run)."""
    return collections.Counter((r["dip"], r["dp"], r["host"], r["rank"], r["config"])
                               for r in records(path))


def job_set(path):
    """Multiset of (target, configs of its records) of a jobs output."""
    return collections.Counter(
        (r["dip"], r["dp"], r["domain"], r["rank"],
         tuple(sorted(f["config"] for f in r["flow_results"])))
        for r in records(path))


def metadata(path):
    with open(path) as stream:
        return json.load(stream)


def restore_client(lab):
    """Put back what a SIGKILLed run left changed in the client namespace."""
    netns.run(lab.client_netns, [sys.executable, "-m", "pathspider.run", "restore"],
              check=False, env=lab.client_env())


SIGINT, SIGKILL = signal.SIGINT, signal.SIGKILL


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
