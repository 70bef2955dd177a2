"""Running ``pathspider ecn`` in the lab's client namespace and hurting it on purpose.

A :class:`FaultRun` starts the real command line (``python -m pathspider.run``) inside the lab
client namespace with its target list fed through a FIFO the test controls, so the run can be
caught while it reads, while it measures, or while it drains after the end of its input. It
then checks what every ending must leave behind (:meth:`FaultRun.check_ending`): each output
line valid JSON, both records of every job that has records (a job's records are written both
or neither), a summary line and no traceback on stderr, no Observer process left.
"""
import array
import collections
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import termios
import time

from pathspider.lab import netns, plan

SUMMARY = re.compile(r"(done|stopped \((?P<reason>.*?)\)): (?P<jobs>\d+) jobs from (?P<lines>\d+) "
                     r"lines .*?, (?:\d+ job lines with )?(?P<records>\d+) records written")
NOT_STARTED = re.compile(r"(\d+) queued jobs were not started")


def rows(lab, classes, hosts):
    """Target rows: ``hosts`` hosts of each class, IPv4 and IPv6."""
    return lab.targets(len(classes) * hosts * 2, classes, "both")


def csv_lines(targets):
    return "".join(",".join(str(c) for c in row) + "\n" for row in targets)


class FaultRun:
    """One run of ``pathspider ecn`` in the lab client, fed through a FIFO."""

    def __init__(self, lab, tmp_path, timeout=5, workers=32, output=None, extra=(),
                 plugin=("ecn",)):
        self.lab = lab
        self.fifo = tmp_path / "targets.fifo"
        os.mkfifo(self.fifo)
        self.output = output or tmp_path / "results.ndjson"
        self.stderr_path = tmp_path / "stderr.log"
        argv = [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "-w",
                str(workers), "--input", str(self.fifo), "--output", str(self.output),
                *extra, *plugin, "--timeout", str(timeout)]
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(netns.command(lab.client_netns, argv),
                                     stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     env=lab.client_env())
        self._writer = os.open(self.fifo, os.O_WRONLY)      # blocks until pathspider opens it
        self.last_signal = None
        self.children = set()

    # ---- driving the run --------------------------------------------------------------------

    def feed(self, targets):
        os.write(self._writer, csv_lines(targets).encode())

    def wait_consumed(self, settle=0.5, timeout=30):
        """Wait until pathspider has read everything fed so far (the FIFO holds nothing
        unread), then ``settle`` seconds more for the workers to start those jobs."""
        deadline = time.monotonic() + timeout
        unread = array.array("i", [0])
        while True:
            fcntl.ioctl(self._writer, termios.FIONREAD, unread)
            if not unread[0]:
                break
            assert time.monotonic() < deadline, "the run does not read its input"
            assert self.proc.poll() is None, f"the run ended early:\n{self.stderr()[-3000:]}"
            time.sleep(0.02)
        time.sleep(settle)

    def end_input(self):
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None

    def signal(self, signum, times=1, gap=0.3):
        """Send ``signum`` ``times`` times to the main process, remembering its children."""
        self.children |= _children(self.proc.pid)
        for i in range(times):
            if i:
                time.sleep(gap)
            self.proc.send_signal(signum)
        self.last_signal = time.monotonic()

    def wait(self, timeout=60):
        """Wait for the run to end; returns (exit status as a shell reports it, seconds since
        the last signal). A run that had already finished its work when a late signal killed
        it shows 128+N, as a run that exited with 128+N does."""
        self.children |= _children(self.proc.pid)
        try:
            status = self.proc.wait(timeout)
        finally:
            self.end_input()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._stderr.close()
        since = time.monotonic() - self.last_signal if self.last_signal else None
        return (128 - status if status < 0 else status), since

    # ---- what an ending leaves --------------------------------------------------------------

    def record_lines(self):
        try:
            with open(self.output, "rb") as out:
                return out.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def records(self):
        with open(self.output) as out:
            text = out.read()
        assert text == "" or text.endswith("\n"), "the output ends in a torn line"
        return [json.loads(line) for line in text.splitlines()]

    def stderr(self):
        return self.stderr_path.read_text()

    def summary(self):
        match = SUMMARY.search(self.stderr())
        assert match, f"no summary line on stderr:\n{self.stderr()[-3000:]}"
        not_started = NOT_STARTED.search(self.stderr())
        return {"jobs": int(match["jobs"]), "records": int(match["records"]),
                "reason": match["reason"],
                "not_started": int(not_started.group(1)) if not_started else 0}

    def check_ending(self, job_lines=False):
        """The invariants of every ending; returns (records, summary). With ``job_lines``
        (``--format jobs``) each line is a job whose records must be its two connections',
        unless the line says it is ``incomplete`` (an abandoned merger's leftovers)."""
        records = self.records()
        if job_lines:
            for line in records:
                configs = sorted(rec["config"] for rec in line["flow_results"])
                assert line.get("incomplete") or configs == [0, 1], line
            written = sum(len(line["flow_results"]) for line in records)
        else:
            jobs = collections.defaultdict(list)
            for rec in records:
                jobs[(rec["dip"], rec["dp"], rec["host"], rec["rank"])].append(rec["config"])
            incomplete = {k: v for k, v in jobs.items() if sorted(v) != [0, 1]}
            assert not incomplete, f"jobs without exactly both records: {incomplete}"
            written = len(records)
        err = self.stderr()
        assert "Traceback" not in err, err[-4000:]
        summary = self.summary()
        assert summary["records"] == written, (summary, written)
        alive = [pid for pid in self.children if _running(pid)]
        assert not alive, f"processes of the run still running: {alive}"
        return records, summary


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def _running(pid):
    """True if ``pid`` exists and is not a zombie (waiting to be reaped by its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=5):
    """Wait (bounded) until none of ``pids`` is running; returns those still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if _running(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _running(pid)]


SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP}
