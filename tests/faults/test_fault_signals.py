"""Signals at every phase of a real run on the lab: each ending writes every finished job's
records, restores the client's system state, and ends within its bound with 128+N."""
import signal

import pytest

from fault_run import SIGNALS, FaultRun, rows

pytestmark = pytest.mark.root

CLEAN, SILENT = 5, 10           # hosts per class, both families: 10 quick and 20 silent jobs
TIMEOUT = 4                     # seconds a silent job waits for its SYN+ACK


def start(lab, tmp_path, phase):
    """A run caught in ``phase``: quick jobs done, silent jobs (if any) still in flight."""
    run = FaultRun(lab, tmp_path, timeout=TIMEOUT)
    run.feed(rows(lab, ["clean"], CLEAN))
    if phase != "reading":
        run.feed(rows(lab, ["blackhole"], SILENT))
    run.wait_consumed()
    if phase == "draining":
        run.end_input()
    return run


@pytest.mark.parametrize("phase", ["reading", "measuring", "draining"])
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_one_signal_finishes_the_started_jobs(lab_client_state, tmp_path, name, phase):
    run = start(lab_client_state, tmp_path, phase)
    run.signal(SIGNALS[name])
    status, since = run.wait()
    records, summary = run.check_ending()
    assert status == 128 + SIGNALS[name], run.stderr()[-3000:]
    assert summary["reason"] == signal.Signals(SIGNALS[name]).name
    finished = summary["jobs"] - summary["not_started"]
    assert len(records) == 2 * finished
    assert finished == 2 * CLEAN + (0 if phase == "reading" else 2 * SILENT)
    assert since < TIMEOUT + 6          # the silent jobs time out, the Observer flushes


@pytest.mark.parametrize("phase", ["reading", "measuring", "draining"])
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_two_signals_abandon_the_jobs_in_flight(lab_client_state, tmp_path, name, phase):
    run = start(lab_client_state, tmp_path, phase)
    run.signal(SIGNALS[name], times=2)
    status, since = run.wait()
    records, summary = run.check_ending()
    assert status == 128 + SIGNALS[name], run.stderr()[-3000:]
    assert len(records) >= 2 * 2 * CLEAN        # every job finished before stays written
    assert len(records) <= 2 * summary["jobs"]
    assert since < 6, f"took {since:.1f} s after the second signal"


def test_a_third_signal_stops_at_once(lab_client_state, tmp_path):
    run = start(lab_client_state, tmp_path, "measuring")
    run.signal(signal.SIGINT, times=3, gap=0.1)
    status, since = run.wait()
    assert status == 130
    assert "Traceback" not in run.stderr()
    assert since < 6
    run.records()                               # whole lines only
