"""Signals while ``--locate`` holds jobs for their traces: a first signal lets the traces in
flight finish (every traced job written with its ``locate``), a second one stops them (the
held jobs are written with ``"aborted": true``); either way every started job is written
whole, the exit status is 128+N and nothing of the run keeps running."""
import signal

import pytest

from fault_run import FaultRun, rows
from pathspider.lab import plan

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
