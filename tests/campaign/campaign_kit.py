"""Helpers for the campaign tests: agents and submitters as real processes, their logs
followed by a reader thread so that a test can block (bounded) until a line appears."""
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from pathspider.campaign.localbroker import LocalBroker


class LoggedProcess:
    """A subprocess whose stderr lines are collected; :meth:`wait_for` blocks on them."""

    def __init__(self, argv, env=None, name="process"):
        self.name = name
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, text=True,
                                     errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)                 # end of output
            self._cond.notify_all()

    def count(self, needle):
        with self._cond:
            return sum(1 for line in self.lines if line is not None and needle in line)

    def wait_for(self, needle, timeout=60, times=1):
        """Block until ``needle`` appeared in ``times`` lines; fail after ``timeout`` s or
        when the process ended first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count_locked(needle) < times:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{self.name}: {needle!r} not seen within {timeout} s:\n" \
                    + self.tail()
                assert None not in self.lines, f"{self.name} ended before {needle!r}:\n" \
                    + self.tail()
                self._cond.wait(remaining)

    def count_locked(self, needle):
        return sum(1 for line in self.lines if line is not None and needle in line)

    def tail(self, count=30):
        return "\n".join(line for line in self.lines[-count:] if line is not None)

    def wait(self, timeout=120):
        status = self.proc.wait(timeout)
        self._reader.join(5)
        return status

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stop the process by its PID (``sig``, then SIGKILL after ``timeout`` s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(5)


def pathspider(*args):
    return [sys.executable, "-m", "pathspider.run", *args]


def start_agent(lab, vantage, url, visibility_timeout=15, workers=16):
    """A real agent of lab vantage ``vantage`` on the host, measuring in its namespace."""
    argv = pathspider("-v", "campaign", "agent", "--vantage", vantage, "--netns",
                      lab.vantage_netns(vantage), "--broker", url, "--visibility-timeout",
                      str(visibility_timeout), "-w", str(workers))
    agent = LoggedProcess(argv, env=lab.vantage_env(vantage), name=f"agent {vantage}")
    agent.wait_for(" ready.", timeout=60)
    return agent


def read_vantage_records(cdir, vantage):
    """Every record stored for ``vantage`` in the campaign directory ``cdir``."""
    directory = os.path.join(cdir, "records", vantage)
    records = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".ndjson") and not name.startswith("."):
            with open(os.path.join(directory, name)) as stream:
                records += [json.loads(line) for line in stream if line.strip()]
    return records


def assert_complete(cdir, vantages, targets, per_target=2):
    """Every vantage has exactly one record per target and config: none lost, none twice."""
    for vantage in vantages:
        records = read_vantage_records(cdir, vantage)
        seen = collections.Counter((r["dip"], r["dp"], r["config"]) for r in records)
        twice = [key for key, n in seen.items() if n > 1]
        assert not twice, f"{vantage}: records stored twice: {twice[:5]}"
        want = {(row[0], int(row[1]), c) for row in targets for c in range(per_target)}
        assert set(seen) == want, (f"{vantage}: missing {sorted(want - set(seen))[:5]}, "
                                   f"unexpected {sorted(set(seen) - want)[:5]}")
        assert all(r["vantage"] == vantage for r in records)


@pytest.fixture(scope="module")
def broker():
    """A private broker (Debian's redis-server on 127.0.0.1, random port and password), stopped
    by its PID at teardown; its ``url`` carries the password."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run scripts/install.sh", pytrace=False)
    local = LocalBroker()
    local.start()
    try:
        yield local
    finally:
        local.stop()
