"""Progress pieces that need no run (pathspider.engine.progress): counting failed connections,
the input's lines, the rate, the text of a line, and the ticker's log lines."""
import collections
import io
import logging
import threading

from pathspider.constants import Conn, Connection
from pathspider.engine.progress import Progress, Rate, Status, choose_mode, count_lines, \
    duration, failed_connections

Record = collections.namedtuple("Record", "ip spdr_state")


def counters(**changes):
    base = {"read": 0, "bad": 0, "reading_done": False, "skipped": 0, "done": 0, "discarded": 0,
            "plugin_errors": 0, "failed_connections": 0, "drops": 0, "records": 0}
    base.update(changes)
    return base


def test_failed_connections_reads_every_kind_of_result():
    results = [Record("a", 0), Record("b", 1), Record("c", 2), Record("d", 3),
               {"spdr_state": 2}, {"other": 1},
               Connection(None, 1, Conn.TIMEOUT, ""), Connection(None, 1, Conn.OK, ""),
               object()]
    assert failed_connections(results) == 4


def test_count_lines_of_a_regular_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\nb\nc")
    assert count_lines(str(path)) == 3
    path.write_bytes(b"a\nb\n")
    assert count_lines(str(path)) == 2
    assert count_lines(str(tmp_path / "missing")) is None
    assert count_lines("/dev/null") is None             # not a regular file


def test_count_lines_stops_when_asked(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"x\n" * 10)
    stop = threading.Event()
    stop.set()
    assert count_lines(str(path), stop) is None


def test_rate_over_a_window():
    rate = Rate(window=10)
    assert rate.add(0.0, 0) is None
    assert rate.add(1.0, 100) == 100
    assert rate.add(2.0, 300) == 150
    for t in range(3, 30):
        rate.add(float(t), 300 + (t - 2) * 10)
    assert abs(rate.add(30.0, 580) - 10) < 0.01        # old samples leave the window


def test_status_with_a_known_total():
    status = Status(counters(read=50, done=40, failed_connections=3, records=80), 100, 20.0)
    assert status.total == 100 and status.done == 40
    assert status.eta == 3.0
    text = status.text()
    assert "40 of 100 jobs (40 %)" in text and "20 jobs/s" in text and "ETA 3s" in text
    assert "3 connections failed" in text and "0 packets dropped by the capture" in text


def test_status_total_is_exact_once_the_list_is_read():
    status = Status(counters(read=90, bad=2, done=90, reading_done=True), 100, 10.0)
    assert status.total == 90 and status.eta == 0


def test_status_without_a_total_and_with_resumed_jobs():
    status = Status(counters(read=7, done=5, skipped=2, drops=None), None, None)
    assert status.total is None and status.eta is None
    text = status.text()
    assert text.startswith("7 jobs done") and "capture drops unknown" in text
    assert "2 jobs skipped (already in the output)" in text
    assert "skipped 2" in status.postfix()


def test_duration():
    assert duration(5) == "5s" and duration(185) == "3m 05s" and duration(7500) == "2h 05m"


def test_choose_mode():
    assert choose_mode(False) == "off"
    assert choose_mode(True, io.StringIO()) == "log"


def test_the_ticker_logs_and_stops(caplog):
    seen = threading.Event()
    state = counters(read=10, done=0)

    def look():
        state["done"] += 1
        if state["done"] >= 3:
            seen.set()
        return dict(state)

    with caplog.at_level(logging.INFO, logger="pathspider.engine.progress"):
        progress = Progress(look, "log", interval=0.1).start()
        assert seen.wait(5)
        progress.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) >= 2 and progress.lines_logged == len(lines)
    assert progress._thread is None


def test_the_ticker_ends_once_every_job_is_finished(caplog):
    """With the run's phase, the ticker shows the final state as soon as the jobs are finished
    (it waits on the run's condition, not a timer) and ends by itself."""
    from pathspider.engine.lifecycle import RunPhase

    phase = RunPhase()
    finished = {"now": False}
    state = counters(read=5, done=5, reading_done=True)
    with caplog.at_level(logging.INFO, logger="pathspider.engine.progress"):
        progress = Progress(lambda: dict(state), "log", interval=60, run_phase=phase,
                            jobs_finished=lambda: finished["now"]).start()
        with phase.cond:
            finished["now"] = True
            phase.cond.notify_all()
        progress._thread.join(5)
        assert not progress._thread.is_alive()
        progress.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) == 1 and lines[0].startswith("progress: 5 of 5 jobs (100 %), ")
    phase.close()


def test_stop_wakes_a_ticker_waiting_on_the_run():
    from pathspider.engine.lifecycle import RunPhase

    phase = RunPhase()
    progress = Progress(lambda: counters(), "log", interval=600, run_phase=phase,
                        jobs_finished=lambda: False).start()
    thread = progress._thread
    progress.stop()
    assert not thread.is_alive()
    phase.close()
