"""Scope and politeness through the real command line on loopback: the default blocklist
skips loopback targets (nothing is sent, the summary says how many and why), ``--allowlist``
and ``--blocklist`` files, bad files refused before anything starts, and ``--rate`` pacing
(and not delaying Ctrl-C). Plugins here capture nothing (dummy observer)."""
import json
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time

import pytest

from test_cli import CLITEST_PLUGIN, PATHSPIDER, REPO, plugin_tree, run

# Records when each job's first connect started (wall clock) and sends nothing.
STAMP_PLUGIN = textwrap.dedent('''
    import collections, time
    from pathspider.base import DesynchronizedSpider, PluggableSpider, NO_FLOW
    from pathspider.observer.dummy import Observer

    Rec = collections.namedtuple("Rec", ["ip", "port", "rank", "config", "started"])

    class Stamp(DesynchronizedSpider, PluggableSpider):
        def connect(self, job, pcs, config):
            return time.time()
        def post_connect(self, job, conn, pcs, config):
            return Rec(job[0], 0, job[3], config, conn)
        def create_observer(self):
            return Observer()
        def merge(self, flow, res):
            return dict(res._asdict())
        @staticmethod
        def register_args(subparsers):
            subparsers.add_parser("stamp", help="records start times").set_defaults(spider=Stamp)
''')


class CountingListener:
    """A loopback listener that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self._accepted = 0
        self._marker = None
        self._marked = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            if peer[1] == self._marker:
                self._marked.set()
            else:
                self._accepted += 1
            conn.close()

    @property
    def accepted(self):
        """Connections made so far: a marker connection of our own goes through the accept
        queue (first in, first out) after every earlier one."""
        marker = socket.socket()
        marker.bind(("127.0.0.1", 0))
        self._marker = marker.getsockname()[1]
        self._marked.clear()
        marker.connect(("127.0.0.1", self.port))
        assert self._marked.wait(10)
        marker.close()
        return self._accepted

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)        # wakes the blocked accept
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def counting():
    listener = CountingListener()
    yield listener
    listener.close()


@pytest.fixture
def clitest(tmp_path):
    return plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)


def summary_line(stderr):
    return [line for line in stderr.splitlines() if "pathspider.engine.coordinator" in line
            and (" done: " in line or " stopped " in line)][-1]


def test_loopback_without_allow_measures_nothing_and_says_why(clitest, counting):
    targets = "".join(f"127.0.0.{i},{counting.port},h,{i}\n" for i in range(1, 6))
    targets += f"::1,{counting.port},h,6\n10.0.0.1,{counting.port},h,7\n"
    proc = run(["-i", "lo", "-w", "4", "clitest"], pythonpath=[clitest], stdin=targets)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and counting.accepted == 0
    line = summary_line(proc.stderr)
    assert "7 jobs from 7 lines" in line
    assert "7 targets out of scope not measured: 5 Loopback, 1 Loopback Address, " \
           "1 Private-Use" in line
    warnings = [w for w in proc.stderr.splitlines() if "pathspider.engine.scope" in w]
    assert len(warnings) == 3                       # one per kind, not one per target
    assert "not measuring 127.0.0.1: it is Loopback space (RFC 1122" in warnings[0]
    assert "--allow" in warnings[0]


def test_allow_measures_loopback_with_one_warning(clitest, counting):
    proc = run(["-i", "lo", "--allow", "clitest"], pythonpath=[clitest],
               stdin=f"127.0.0.1,{counting.port},h,1\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2 and counting.accepted == 2
    assert proc.stderr.count("--allow: the default blocklist is lifted") == 1
    assert "out of scope" not in summary_line(proc.stderr)


def test_allowlist_and_blocklist_files(clitest, counting, tmp_path):
    allow = tmp_path / "allow.txt"
    allow.write_text("# measure these only\n127.0.0.0/29\n")
    block = tmp_path / "block.txt"
    block.write_text("127.0.0.4/30   # not these\n")
    targets = "".join(f"127.0.0.{i},{counting.port},h,{i}\n" for i in range(1, 11))
    proc = run(["-i", "lo", "--allowlist", str(allow), "--blocklist", str(block), "clitest"],
               pythonpath=[clitest], stdin=targets)
    assert proc.returncode == 0, proc.stderr
    ranks = sorted({json.loads(line)["rank"] for line in proc.stdout.splitlines()}, key=int)
    assert ranks == ["1", "2", "3"]
    assert counting.accepted == 2           # it listens on 127.0.0.1: .2 and .3 are refused
    line = summary_line(proc.stderr)
    assert "7 targets out of scope not measured: 4 --blocklist, 3 Loopback" in line


@pytest.mark.parametrize("content, message", [
    ("127.0.0.0/8\n10.1.0.0/8\n", "line 2: '10.1.0.0/8' is not a network in CIDR notation "
                                  "(did you mean 10.0.0.0/8?)"),
    ("127.0.0.1/32\n\x00\x01junk\n", "line 2: "),
])
@pytest.mark.parametrize("option", ["--blocklist", "--allowlist"])
def test_a_bad_file_refuses_the_run_in_one_line(clitest, counting, tmp_path, option, content,
                                                message):
    path = tmp_path / "list.txt"
    path.write_text(content)
    proc = run(["-i", "lo", "--allow", option, str(path), "clitest"], pythonpath=[clitest],
               stdin=f"127.0.0.1,{counting.port},h,1\n")
    assert proc.returncode == 1 and proc.stdout == "" and counting.accepted == 0
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"{path}, {message}" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_rate_is_a_usage_error(clitest):
    proc = run(["-i", "lo", "--rate", "0", "clitest"], pythonpath=[clitest])
    assert proc.returncode == 2 and "--rate" in proc.stderr and "above 0" in proc.stderr


def test_rate_paces_job_starts(tmp_path):
    """200 jobs at 100/s: the recorded start times span (200 - burst) / 100 s at least, and
    no window holds more than the burst plus the rate's share; a loose upper bound only
    (a loaded machine can only be slower)."""
    tree = plugin_tree(tmp_path / "tp", "stamp", STAMP_PLUGIN)
    targets = "".join(f"127.0.0.1,{1000 + i},h,{i}\n" for i in range(200))
    started = time.monotonic()
    proc = run(["-i", "lo", "--allow", "-w", "20", "--rate", "100", "stamp"],
               pythonpath=[tree], stdin=targets)
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    starts = sorted(r["started"] for r in records if r["config"] == 0)
    assert len(starts) == 200
    burst = 5                                       # 50 ms worth at 100/s
    assert starts[-1] - starts[0] >= (200 - burst) / 100 - 0.02
    for i in range(len(starts)):
        for j in range(i + 1, len(starts), 7):
            # a job's connect starts a little after its token: allow 20 ms of jitter
            assert j - i + 1 <= burst + 100 * (starts[j] - starts[i] + 0.02) + 1, (i, j)
    assert wall < 60


def test_ctrl_c_is_not_delayed_by_a_slow_rate(clitest, counting, tmp_path):
    """At 0.01 jobs/s the next job is 100 s away: SIGINT still ends the run at once."""
    (tmp_path / "in.csv").write_text(
        "".join(f"127.0.0.1,{counting.port},h,{i}\n" for i in range(5)))
    env = dict(os.environ, PYTHONPATH=f"{clitest}{os.pathsep}{REPO}")
    proc = subprocess.Popen(PATHSPIDER + ["-i", "lo", "--allow", "--rate", "0.01", "--input",
                                          str(tmp_path / "in.csv"), "clitest"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()              # the first job (the burst) is done
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.startswith("{") and proc.returncode == 130, err
    assert "2 records written" in summary_line(err)     # only the first job's two
    assert took < 30, took                          # not the 100 s the bucket would wait
    assert "stopped (SIGINT)" in summary_line(err)

