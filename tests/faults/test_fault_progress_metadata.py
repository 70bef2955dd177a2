"""Progress and run metadata on real lab runs: progress log lines when stderr is not a
terminal, the live line on a terminal, and the metadata file after a run that completed,
one stopped by SIGINT, one killed with SIGKILL and one whose output failed."""
import fcntl
import os
import pty
import re
import select
import struct
import termios
import time

import pytest

from bookkeeping_run import (SIGINT, SIGKILL, Run, metadata, restore_client, run_to_end,
                             target_rows, wait_measuring, write_rows)
from pathspider.lab import plan

pytestmark = pytest.mark.root

PROGRESS = re.compile(r"progress: ([\d,]+) of ([\d,]+) jobs \((\d+) %\), ([\d,]+) jobs/s")


def test_progress_lines_when_stderr_is_not_a_terminal(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 300))
    err = run_to_end(lab_client_state, tmp_path, infile, tmp_path / "out",
                     "--rate", "150", "--progress-interval", "0.5")
    found = [m for m in PROGRESS.finditer(err)]
    assert len(found) >= 2, err[-3000:]
    done = [int(m.group(1).replace(",", "")) for m in found]
    assert all(int(m.group(2).replace(",", "")) == 300 for m in found)
    assert done == sorted(done) and 0 < done[-1] <= 300
    assert "packets dropped by the capture" in err and "connections failed" in err


def test_no_progress_shows_only_the_summary(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 100))
    err = run_to_end(lab_client_state, tmp_path, infile, tmp_path / "out",
                     "--rate", "100", "--progress-interval", "0.2", "--no-progress")
    assert "progress:" not in err and "done: 100 jobs" in err


def test_a_live_line_on_a_terminal(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 300))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    run = Run(lab_client_state, tmp_path, infile, tmp_path / "out", "--rate", "150",
              stderr=slave)
    os.close(slave)
    screen = _read_until_closed(master, timeout=60)
    assert run.wait() == 0, screen[-3000:]
    text = screen.decode(errors="replace")
    assert "\r" in text
    assert re.search(r"ecn: +\d+%\|.*\| [\d,]+/300 jobs", text), text[-2000:]
    assert "done: 300 jobs" in text                     # log lines still reach the terminal
    assert "progress:" not in text                      # no log lines: the live line instead


def _read_until_closed(fd, timeout):
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:                                 # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    return bytes(out)


def test_metadata_of_a_completed_run(lab_client_state, tmp_path):
    rows = target_rows(lab_client_state, 120)
    infile = write_rows(tmp_path / "t.csv", rows)
    out, meta = tmp_path / "out", tmp_path / "meta.json"
    run_to_end(lab_client_state, tmp_path, infile, out, "--metadata", str(meta))
    doc = metadata(meta)
    lines = out.read_text().count("\n")
    assert doc["status"] == "ended" and doc["pathspider_metadata"] == 1
    assert doc["outcome"] == {"ended": "done", "reason": None, "exit_status": 0}
    assert doc["plugin"] == {"name": "ecn", "class": "pathspider.plugins.ecn.ECN"}
    assert doc["options"]["timeout"] == 3.0 and doc["options"]["workers"] == 50
    assert "spider" not in doc["options"]
    assert doc["tool"]["version"] and doc["vantage"]["kernel"] == os.uname().release
    assert f"{plan.CLIENT_V4}/24" in doc["vantage"]["interface"]["addresses"]
    assert f"{plan.CLIENT_V6}/64" in doc["vantage"]["interface"]["addresses"]
    assert doc["records_in_output"] == lines == 2 * len(rows)
    [segment] = doc["segments"]
    counters = segment["counters"]
    assert counters["jobs_read"] == len(rows) and counters["jobs_completed"] == len(rows)
    assert counters["lines_written"] == lines and counters["plugin_errors"] == 0
    assert counters["capture_drops"] == 0 and counters["bad_rows"] == 0
    state = segment["system_state"]
    assert state["before"]["sysctls"] == state["after"]["sysctls"]
    assert any(e["name"] == "net.ipv4.tcp_ecn" for e in state["changed"])
    assert segment["started"] <= segment["ended"]


def test_metadata_after_sigint(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 400))
    meta = tmp_path / "meta.json"
    run = Run(lab_client_state, tmp_path, infile, tmp_path / "out", "--rate", "100",
              "--metadata", str(meta), "--progress-interval", "0.2")
    wait_measuring(run, 50)
    run.proc.send_signal(SIGINT)
    assert run.wait() == 130
    doc = metadata(meta)
    assert doc["status"] == "ended"
    assert doc["outcome"] == {"ended": "stopped", "reason": "SIGINT", "exit_status": 130}
    counters = doc["segments"][0]["counters"]
    assert 0 < counters["jobs_completed"] < 400
    assert doc["records_in_output"] == (tmp_path / "out").read_text().count("\n")


def test_metadata_after_sigkill_is_the_start_version(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 400))
    meta = tmp_path / "meta.json"
    run = Run(lab_client_state, tmp_path, infile, tmp_path / "out", "--rate", "100",
              "--metadata", str(meta), "--progress-interval", "0.2")
    try:
        wait_measuring(run, 50)
        run.proc.send_signal(SIGKILL)
        assert run.wait() == 128 + 9
        doc = metadata(meta)
        assert doc["status"] == "running" and doc["outcome"] is None
        [segment] = doc["segments"]
        assert segment["ended"] is None and segment["counters"] is None
        assert segment["system_state"]["before"]["sysctls"]["net.ipv4.tcp_ecn"] is not None
        assert segment["connections_per_job"] == 2        # written once it measured
    finally:
        restore_client(lab_client_state)


def test_metadata_after_the_output_failed(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 60))
    meta = tmp_path / "meta.json"
    run = Run(lab_client_state, tmp_path, infile, "/dev/full", "--metadata", str(meta))
    assert run.wait() == 1
    doc = metadata(meta)
    assert doc["outcome"]["ended"] == "failed" and doc["outcome"]["exit_status"] == 1
    assert "No space left on device" in doc["outcome"]["reason"]


@pytest.mark.parametrize("target", ["input", "output"])
def test_metadata_may_not_be_the_input_or_output(lab_client_state, tmp_path, target):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 4))
    out = tmp_path / "out"
    out.write_text('{"earlier": "results"}\n')
    before = infile.read_text()
    path = infile if target == "input" else out
    run = Run(lab_client_state, tmp_path, infile, out, "--metadata", str(path))
    assert run.wait() == 1
    err = run.stderr()
    assert f"--metadata {path} is the --{target} file" in err and "Traceback" not in err
    assert infile.read_text() == before
    assert out.read_text() == '{"earlier": "results"}\n'     # refused before it was opened


def test_metadata_will_not_overwrite_a_foreign_file(lab_client_state, tmp_path):
    infile = write_rows(tmp_path / "t.csv", target_rows(lab_client_state, 4))
    notes = tmp_path / "notes.txt"
    notes.write_text("not metadata")
    run = Run(lab_client_state, tmp_path, infile, tmp_path / "out", "--metadata", str(notes))
    assert run.wait() == 1
    assert "not pathspider run metadata" in run.stderr()
    assert notes.read_text() == "not metadata"
