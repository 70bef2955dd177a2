"""Faults other than signals, on a real run in the lab: the Observer killed, the capture
interface going down, the main process SIGKILLed (the next run repairs), a second run in the
same namespace."""
import os
import signal
import subprocess
import sys
import time

import pytest

from fault_run import FaultRun, rows, wait_gone
from pathspider.lab import netns, plan

pytestmark = pytest.mark.root

CAPTURE, PEER = "psfault0", "psfault1"


def test_a_killed_observer_ends_the_run_with_its_records(lab_client_state, tmp_path):
    lab = lab_client_state
    run = FaultRun(lab, tmp_path)
    run.feed(rows(lab, ["clean"], 5))
    run.feed(rows(lab, ["blackhole"], 5))
    run.wait_consumed()
    observer = run.children | _children_now(run)
    assert observer, "no Observer process found"
    for pid in observer:
        os.kill(pid, signal.SIGKILL)
    status, _ = run.wait(30)
    records, summary = run.check_ending()
    assert status == 1
    assert "the Observer failed" in run.stderr() and "SIGKILL" in run.stderr()
    assert len(records) >= 20 and summary["reason"].startswith("failed")


def test_the_capture_interface_going_down_ends_the_run(lab_client_state, tmp_path):
    """Capture on a veth of the client namespace made for the test, then take it down."""
    lab = lab_client_state
    netns.run(lab.client_netns, ["ip", "link", "add", CAPTURE, "type", "veth", "peer", "name",
                                 PEER])
    try:
        for name in (CAPTURE, PEER):
            netns.run(lab.client_netns, ["ip", "link", "set", name, "up"])
        run = FaultRun(lab, tmp_path, extra=("-i", CAPTURE))
        run.feed(rows(lab, ["clean"], 5))
        run.wait_consumed()
        netns.run(lab.client_netns, ["ip", "link", "set", CAPTURE, "down"])
        status, _ = run.wait(30)
        records, _ = run.check_ending()
    finally:
        netns.run(lab.client_netns, ["ip", "link", "del", CAPTURE], check=False)
    assert status == 1
    assert "The interface went down" in run.stderr()
    assert len(records) >= 20


def test_after_a_sigkill_the_next_run_restores_the_state_first(lab_client_state, tmp_path):
    lab = lab_client_state
    original = _tcp_ecn(lab)
    first = FaultRun(lab, _mkdir(tmp_path / "first"))
    first.feed(rows(lab, ["clean"], 10))
    first.feed(rows(lab, ["blackhole"], 10))
    first.wait_consumed()
    observer = _children_now(first)
    first.proc.send_signal(signal.SIGKILL)
    first.wait(10)
    assert wait_gone(observer) == [], "the Observer outlived its parent"
    second = FaultRun(lab, _mkdir(tmp_path / "second"))
    second.feed(rows(lab, ["clean"], 2))
    second.end_input()
    status, _ = second.wait(60)
    second.check_ending()
    assert status == 0, second.stderr()[-3000:]
    assert "restored system state left by a pathspider run" in second.stderr()
    assert _tcp_ecn(lab) == original


def test_a_second_run_in_the_namespace_is_refused_in_one_line(lab_client_state, tmp_path):
    lab = lab_client_state
    first = FaultRun(lab, _mkdir(tmp_path / "first"))
    first.feed(rows(lab, ["clean"], 2))
    first.wait_consumed()
    second = lab.exec_in_client(
        [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "ecn"],
        input="", capture_output=True, text=True, timeout=60)
    first.end_input()
    status, _ = first.wait(60)
    first.check_ending()
    assert status == 0
    assert second.returncode == 1
    assert f"another pathspider run (pid {first.proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr


def _children_now(run):
    found = set()
    try:
        with open(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children") as f:
            found = {int(p) for p in f.read().split()}
    except OSError:
        pass
    return found


def _tcp_ecn(lab):
    return netns.run(lab.client_netns, ["cat", "/proc/sys/net/ipv4/tcp_ecn"]).stdout.strip()


def _mkdir(path):
    path.mkdir()
    return path


def test_a_killed_lab_exec_stops_its_run_cleanly(lab_client_state, tmp_path):
    """`pathspider lab exec -- pathspider ...` killed with SIGKILL: the run gets SIGTERM (it
    dies with its parent), finishes its started jobs and restores the client namespace."""
    lab = lab_client_state
    fifo = tmp_path / "targets.fifo"
    os.mkfifo(fifo)
    output, log = tmp_path / "results.ndjson", tmp_path / "stderr.log"
    argv = [sys.executable, "-m", "pathspider.run", "lab", "--name", lab.name, "exec", "--",
            sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "--input",
            str(fifo), "--output", str(output), "ecn", "--timeout", "3"]
    with open(log, "w") as err:
        lab_exec = subprocess.Popen(argv, stderr=err)
    # opened read-write, which does not block: a run that fails before opening its input
    # must not hang the test
    with open(os.open(fifo, os.O_RDWR), "w") as feed:
        feed.write("".join(",".join(map(str, r)) + "\n" for r in rows(lab, ["clean"], 3)))
        feed.flush()
        run = None
        for _ in range(400):                    # the run is lab exec's child
            run = _descendant_running("pathspider.run -i", lab_exec.pid)
            if run and _catches(run, signal.SIGTERM):
                break                           # exec'd and holding stop signals from now on
            time.sleep(0.05)
        assert run and _catches(run, signal.SIGTERM), "the measurement did not start"
        lab_exec.kill()
        lab_exec.wait()
        assert wait_gone([run], timeout=20) == [], "the run outlived lab exec"
    text = log.read_text()
    assert "stopped (SIGTERM)" in text and "Traceback" not in text, text[-3000:]
    lines = output.read_text().splitlines()
    assert all(line.startswith("{") for line in lines)


def _descendant_running(needle, pid):
    """The PID of a descendant of ``pid`` whose command line contains ``needle``."""
    for child in _children_of(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            if needle in command and " exec -- " not in command:    # not lab exec before exec
                return child
        except OSError:
            continue
        found = _descendant_running(needle, child)
        if found:
            return found
    return None


def _catches(pid, signum):
    """True if process ``pid`` has a handler for ``signum`` (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def _children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
