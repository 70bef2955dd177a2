"""Signals while ``--locate`` holds jobs for their traces: a first signal lets the traces in
flight finish (every traced job written with its ``locate``), a second one stops them (the
held jobs are written with ``"aborted": true``); either way every started job is written
whole, the exit status is 128+N and nothing of the run keeps running."""
import json
import os
import signal
import subprocess
import sys

import pytest

from fault_run import FaultRun, csv_lines, rows, wait_gone
from pathspider.lab import netns, plan
from test_fault_run_failures import _children_now, _mkdir, _tcp_ecn

pytestmark = pytest.mark.root

DROPPED, SILENT = 6, 6
TIMEOUT = 4


def locating(lab, tmp_path, *locate_args):
    """A run with ECN-dropping targets (traced) and silent ones (offline, not traced) in
    flight."""
    run = FaultRun(lab, tmp_path, timeout=TIMEOUT,
                   plugin=("ecn", "--locate", *locate_args))
    run.feed(rows(lab, ["ecn-syn-drop"], DROPPED))
    run.feed(rows(lab, ["blackhole"], SILENT))
    run.wait_consumed(settle=1.5)       # the kernel's ECN fallback takes 1 s: then traced
    return run


def test_one_signal_lets_the_traces_finish(lab_client_state, tmp_path):
    run = locating(lab_client_state, tmp_path, "--locate-timeout", "2")
    run.signal(signal.SIGINT)
    status, _ = run.wait()
    records, _ = run.check_ending()
    assert status == 130, run.stderr()[-3000:]
    assert len(records) == 2 * (2 * DROPPED + 2 * SILENT)
    traced = [r for r in records if r.get("locate")]
    assert len(traced) == 2 * 2 * DROPPED, run.stderr()[-3000:]
    assert not any(r["locate"].get("aborted") for r in traced)
    assert all(r["locate"]["dropped_at"] is not None for r in traced)
    assert not any(r.get("locate") for r in records if plan.class_of(r["dip"]) == "blackhole")


def test_second_signal_stops_the_traces_and_loses_no_record(lab_client_state, tmp_path):
    # Long rounds: a trace still waiting when the second signal comes is cut short (the
    # held-job bookkeeping itself is tested in tests/engine/test_locating.py).
    run = locating(lab_client_state, tmp_path, "--locate-timeout", "30")
    run.signal(signal.SIGTERM, times=2)
    status, since = run.wait()
    records, _ = run.check_ending()
    assert status == 143, run.stderr()[-3000:]
    assert since < 10
    dropped = [r for r in records if r.get("locate") is not None]
    assert all(r["locate"].get("aborted") or r["locate"].get("dropped_at") is not None
               for r in dropped)


# ---- the other faults, with traces in flight ---------------------------------------------------

def test_a_killed_observer_ends_the_run_and_the_held_jobs_are_written(lab_client_state,
                                                                       tmp_path):
    run = locating(lab_client_state, tmp_path, "--locate-timeout", "2")
    observer = run.children | _children_now(run)
    assert observer, "no Observer process found"
    for pid in observer:
        os.kill(pid, signal.SIGKILL)
    status, _ = run.wait(60)
    records, summary = run.check_ending()       # every job whole, counts agree
    assert status == 1, run.stderr()[-3000:]
    assert "the Observer failed" in run.stderr()
    assert summary["reason"].startswith("failed")
    assert all(r["locate"].get("aborted") or r["locate"].get("dropped_at") is not None
               for r in records if r.get("locate"))


def test_after_a_sigkill_while_tracing_the_next_run_restores_the_state(lab_client_state,
                                                                        tmp_path):
    lab = lab_client_state
    original = _tcp_ecn(lab)
    first = locating(lab, _mkdir(tmp_path / "first"), "--locate-timeout", "5")
    observer = _children_now(first)
    first.proc.send_signal(signal.SIGKILL)
    first.wait(10)
    assert wait_gone(observer) == [], "the Observer outlived its parent"
    second = FaultRun(lab, _mkdir(tmp_path / "second"), timeout=TIMEOUT,
                      plugin=("ecn", "--locate"))
    second.feed(rows(lab, ["ecn-syn-drop"], 2))
    second.end_input()
    status, _ = second.wait(60)
    records, _ = second.check_ending()
    assert status == 0, second.stderr()[-3000:]
    assert "restored system state left by a pathspider run" in second.stderr()
    assert _tcp_ecn(lab) == original
    assert all(r["locate"]["dropped_at"] is not None for r in records)


def test_a_second_locating_run_in_the_namespace_is_refused(lab_client_state, tmp_path):
    lab = lab_client_state
    first = locating(lab, tmp_path, "--locate-timeout", "2")
    second = lab.exec_in_client(
        [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "ecn", "--locate"],
        input="", capture_output=True, text=True, timeout=60)
    first.end_input()
    status, _ = first.wait(60)
    records, _ = first.check_ending()
    assert status == 0, first.stderr()[-3000:]
    assert second.returncode == 1 and "another pathspider run" in second.stderr
    assert len([r for r in records if r.get("locate")]) == 2 * 2 * DROPPED


def test_a_closed_pipe_with_traces_in_flight_ends_quietly(lab_client_state, tmp_path):
    """The reader goes away while jobs are held for their traces: the run ends with 141, the
    tracer's late records go nowhere without hanging the end."""
    lab = lab_client_state
    original = _tcp_ecn(lab)
    fifo = tmp_path / "targets.fifo"
    os.mkfifo(fifo)
    argv = netns.command(lab.client_netns, [sys.executable, "-m", "pathspider.run", "-i",
                                            plan.CLIENT_IFACE, "--input", str(fifo), "ecn",
                                            "--timeout", "2", "--locate"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=lab.client_env())
    with open(fifo, "w") as feed:
        feed.write(csv_lines(rows(lab, ["ecn-syn-drop"], 10)))
        feed.flush()
        first = proc.stdout.readline()
        proc.stdout.close()
        feed.write(csv_lines(rows(lab, ["ecn-bleach"], 10)))
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert b'"locate"' in first
    assert proc.returncode == 141, err[-3000:]
    assert "Traceback" not in err and "closed by its reader" in err
    assert _tcp_ecn(lab) == original


def test_a_full_disk_with_traces_in_flight_keeps_whole_records(lab_client_state, tmp_path):
    lab = lab_client_state
    original = _tcp_ecn(lab)
    targets = tmp_path / "targets.csv"
    targets.write_text(csv_lines(rows(lab, ["ecn-syn-drop", "ecn-bleach"], 20)))
    full = tmp_path / "full"
    full.mkdir()
    script = (f"mount -t tmpfs -o size=16k pathspider-test {full} && "
              f"{sys.executable} -m pathspider.run -i {plan.CLIENT_IFACE} --input {targets} "
              f"--output {full}/results.ndjson ecn --timeout 2 --locate; status=$?; "
              f"cp {full}/results.ndjson {tmp_path}/kept.ndjson; exit $status")
    proc = subprocess.run(netns.command(lab.client_netns, ["unshare", "--mount",
                                                            "--propagation", "private",
                                                            "sh", "-c", script]),
                          capture_output=True, text=True, timeout=120, env=lab.client_env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    kept = (tmp_path / "kept.ndjson").read_text()
    assert kept.endswith("\n") and kept.count("\n") > 0
    for line in kept.splitlines():
        assert "locate" in json.loads(line)
    assert _tcp_ecn(lab) == original
