"""Signals on the output and plugin modes added for PATHspider 2: ``--format jobs`` and a
forging plugin (``evilbit``). Each ending keeps the invariants of the 1.0 mode: every finished
job written whole, 128+N, the client namespace restored (``lab_client_state``), no process left.
"""
import signal

import pytest

from fault_run import FaultRun, rows

pytestmark = pytest.mark.root

CLEAN, SILENT = 5, 10
TIMEOUT = 4


def measuring(lab, tmp_path, **kwargs):
    """A run with its quick jobs done and its silent ones in flight."""
    run = FaultRun(lab, tmp_path, timeout=TIMEOUT, **kwargs)
    run.feed(rows(lab, ["clean"], CLEAN))
    run.feed(rows(lab, ["blackhole"], SILENT))
    run.wait_consumed()
    return run


def test_jobs_format_one_signal_writes_every_started_job_whole(lab_client_state, tmp_path):
    run = measuring(lab_client_state, tmp_path, extra=("--format", "jobs"))
    run.signal(signal.SIGINT)
    status, _ = run.wait()
    lines, summary = run.check_ending(job_lines=True)
    assert status == 130, run.stderr()[-3000:]
    assert len(lines) == 2 * CLEAN + 2 * SILENT
    assert not any(line.get("incomplete") for line in lines)
    assert all(line["conditions"][0].startswith("ecn.connectivity.") for line in lines)


def test_jobs_format_second_signal_keeps_what_was_finished(lab_client_state, tmp_path):
    run = measuring(lab_client_state, tmp_path, extra=("--format", "jobs"))
    run.signal(signal.SIGTERM, times=2)
    status, since = run.wait()
    lines, summary = run.check_ending(job_lines=True)
    assert status == 143, run.stderr()[-3000:]
    complete = [line for line in lines if not line.get("incomplete")]
    assert len(complete) >= 2 * CLEAN           # the quick jobs had finished
    assert since < 6


def test_forging_plugin_one_signal_finishes_its_jobs(lab_client_state, tmp_path):
    run = measuring(lab_client_state, tmp_path, plugin=("evilbit", "--connect", "tcpsyn"))
    run.signal(signal.SIGINT)
    status, _ = run.wait()
    records, summary = run.check_ending()
    assert status == 130, run.stderr()[-3000:]
    assert len(records) == 2 * (2 * CLEAN + 2 * SILENT)
