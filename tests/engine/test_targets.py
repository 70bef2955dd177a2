"""The target list reader: line by line, validating, with line numbers in warnings."""
import io
import logging
import os
import re
import threading
import time
import tracemalloc

import pytest

from pathspider.engine.targets import (MAX_LINE, BadTarget, TargetStats, canonical_ip,
                                       parse_port, read_lines, read_targets)

GOOD_A = "198.18.64.1,80,a,1\n"
GOOD_B = "198.18.64.2,80,b,2\n"


def read_logged(lines, caplog, source="targets.csv"):
    """Jobs, stats and warning messages of reading ``lines``."""
    stats = TargetStats()
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.targets"):
        jobs = list(read_targets(lines, stats, source=source))
    return jobs, stats, [r.getMessage() for r in caplog.records]


def test_good_rows_become_1_0_jobs():
    jobs = list(read_targets(["198.18.64.1,80,host.example,1\n",
                              "2001:DB8::0:1,443,h6,2\n"]))
    assert jobs == [["198.18.64.1", 80, "host.example", "1"],
                    ["2001:db8::1", 443, "h6", "2"]]


def test_blank_and_comment_lines_are_ignored():
    stats = TargetStats()
    jobs = list(read_targets(["\n", "# comment\n", "198.18.64.1,80,h,1\n", " , \n"], stats))
    assert len(jobs) == 1 and stats.bad == 0 and stats.lines == 4


def test_missing_hostname_and_rank_become_empty():
    assert list(read_targets(["198.18.64.1,80\n"])) == [["198.18.64.1", 80, "", ""]]


@pytest.mark.parametrize("line,reason", [
    ("198.18.64.1,http,h,1", "port is not an integer"),
    ("198.18.64.1,8_0,h,1", "port is not an integer"),
    ("198.18.64.1,+80,h,1", "port is not an integer"),
    ("198.18.64.1,\u0668\u0660,h,1", "port is not an integer"),  # Arabic-Indic 80
    ("198.18.64.1,8 0,h,1", "port is not an integer"),
    ("198.18.64.1,,h,1", "port is not an integer"),
    ("198.18.64.1,0,h,1", "out of range"),
    ("198.18.64.1,70000,h,1", "out of range"),
    ("198.18.64.1,000000080,h,1", "out of range"),
    ("not-an-ip,80,h,1", "not an IP address"),
    ("198.18.64.300,80,h,1", "not an IP address"),
    ("fe80::1%eth0,80,h,1", "not an IP address"),
    ("198.18.64.1", "too few columns"),
    ("198.18.64.1,80,a b,1", "contains a space"),
    ("198.18.64.1,80,h:8080,1", "contains ':'"),
    ("198.18.64.1,80,h/x,1", "contains '/'"),
    ("198.18.64.1,80,u@h,1", "contains '@'"),
    ("198.18.64.1,80,a..b,1", "empty label"),
    ("198.18.64.1,80,h\x00,1", "control character"),
    ("198.18.64.1,80,h\rX-Injected: 1,1", "carriage return inside the line"),
    ('198.18.64.1,80,"h\rX: 1",1', "carriage return inside the line"),
    ("198.18.64.1,80,h,1\x1b[2J", "rank"),
    ('198.18.64.1,80,"h"x,1', "malformed quoting"),
    ('198.18.64.1,80,"h,1', "malformed quoting"),
    (b"198.18.64.1,80,h\xff,1", "not valid UTF-8 (byte 0xff at offset 16)"),
    (b"x" * (MAX_LINE + 1), f"longer than {MAX_LINE} bytes"),
])
def test_bad_rows_are_warned_with_line_number_and_skipped(line, reason, caplog):
    newline = b"\n" if isinstance(line, bytes) else "\n"
    lines = [GOOD_A, line + newline, GOOD_B]
    if isinstance(line, bytes):
        lines = [GOOD_A.encode(), line + newline, GOOD_B.encode()]
    jobs, stats, messages = read_logged(lines, caplog)
    assert [job[2] for job in jobs] == ["a", "b"]
    assert stats.bad == 1 and stats.jobs == 2 and stats.lines == 3
    assert len(messages) == 1
    assert "targets.csv line 2 skipped: " in messages[0] and reason in messages[0]


def test_warnings_show_fields_escaped_and_short(caplog):
    _, _, messages = read_logged(["198.18.64.1,80,\x1b]0;" + "x" * 5000 + ",1\n"], caplog)
    assert len(messages) == 1 and "\x1b" not in messages[0] and len(messages[0]) < 200


def test_a_line_of_exactly_max_line_bytes_is_read(caplog):
    line = "198.18.64.1,80,h,"
    line += "1" * (MAX_LINE - len(line))
    jobs, stats, _ = read_logged([line + "\n", GOOD_A], caplog)
    assert len(jobs) == 2 and stats.bad == 0


def test_utf8_bom_at_the_start_is_dropped(caplog):
    jobs, stats, messages = read_logged(["\ufeff" + GOOD_A, "\ufeff" + GOOD_B], caplog)
    assert jobs == [["198.18.64.1", 80, "a", "1"]]  # a BOM later is not special
    assert stats.bad == 1 and "line 2 skipped: not an IP address" in messages[0]


def test_bom_split_over_reads_is_dropped():
    assert list(read_lines([b"\xef", b"\xbb", b"\xbf1", b"9\n"])) == [(1, "19")]


def test_crlf_line_ends():
    jobs = list(read_targets(["198.18.64.1,80,a,1\r\n", "198.18.64.2,80\r\n",
                              "198.18.64.3,80,c,3\r"]))
    assert jobs == [["198.18.64.1", 80, "a", "1"], ["198.18.64.2", 80, "", ""],
                    ["198.18.64.3", 80, "c", "3"]]


def test_quotes_within_a_line():
    jobs = list(read_targets(['"198.18.64.1","80","a.example","1"\n',
                              '198.18.64.2,"443",,"7"\n']))
    assert jobs == [["198.18.64.1", 80, "a.example", "1"], ["198.18.64.2", 443, "", "7"]]


def test_a_stray_quote_does_not_swallow_the_next_lines(caplog):
    lines = [GOOD_A, '198.18.64.9,80,"open,9\n', GOOD_B, '"198.18.64.3,80,c,3\n',
             "198.18.64.4,80,d,4\n"]
    jobs, stats, messages = read_logged(lines, caplog)
    assert [job[2] for job in jobs] == ["a", "b", "d"]
    assert stats.bad == 2
    assert ["line 2" in messages[0], "line 4" in messages[1]] == [True, True]


def test_quoted_newline_cannot_inject_a_header(caplog):
    """1.0 read a quoted CR/LF into the hostname and sent it in the Host header."""
    lines = ['198.18.64.1,80,"a.example\r\n', 'X-Injected: yes\r\n', '\r\n',
             'GET /evil HTTP/1.1",1\r\n']
    jobs, stats, messages = read_logged(lines, caplog)
    assert jobs == [] and stats.bad == 3
    assert [int(re.search(r"line (\d+)", m).group(1)) for m in messages] == [1, 2, 4]


def test_70000_byte_line_then_a_good_line(caplog):
    jobs, stats, messages = read_logged(["198.18.64.9,80," + "h" * 70_000 + ",9\n", GOOD_A],
                                        caplog)
    assert jobs == [["198.18.64.1", 80, "a", "1"]]
    assert stats.bad == 1
    assert messages == [f"targets.csv line 1 skipped: longer than {MAX_LINE} bytes"]


def test_over_long_line_split_over_many_reads_counts_as_one_line(caplog):
    pieces = [b"198.18.64.9,80,"] + [b"h" * 10_000] * 30 + [b"\n", GOOD_A.encode()]
    jobs, stats, messages = read_logged(pieces, caplog)
    assert len(jobs) == 1 and stats.lines == 2 and stats.bad == 1
    assert "line 1 skipped" in messages[0]


def test_non_utf8_line_then_a_good_line(caplog):
    jobs, stats, messages = read_logged([b"198.18.64.9,80,caf\xe9,9\n", GOOD_A.encode()],
                                        caplog)
    assert jobs == [["198.18.64.1", 80, "a", "1"]]
    assert "line 1 skipped: not valid UTF-8" in messages[0]


def test_lone_surrogate_in_text_input_is_a_bad_row(caplog):
    jobs, stats, messages = read_logged(["198.18.64.9,80,\udcff,9\n", GOOD_A], caplog)
    assert len(jobs) == 1 and "line 1 skipped: not valid UTF-8" in messages[0]


def test_ipv4_mapped_address_is_normalised_with_a_warning(caplog):
    jobs, stats, messages = read_logged(["::ffff:198.18.64.1,80,a,1\n",
                                         "[::FFFF:C612:4002],80,b,2\n",
                                         "::ffff:0:0:1,80,c,3\n"], caplog)
    assert jobs == [["198.18.64.1", 80, "a", "1"], ["198.18.64.2", 80, "b", "2"],
                    ["::ffff:0:0:1", 80, "c", "3"]]  # the last one is not a mapped address
    assert stats.bad == 0 and len(messages) == 2
    assert "targets.csv line 1" in messages[0] and "IPv4-mapped" in messages[0]
    assert "targets.csv line 2" in messages[1]


def test_hostnames_are_normalised_to_lower_case_a_labels():
    jobs = list(read_targets(["198.18.64.1,80,Bücher.Example,1\n",
                              "198.18.64.2,80, WWW.Example.ORG. ,2\n",
                              "198.18.64.3,80,_sip.example,3\n"]))
    assert [job[2] for job in jobs] == ["xn--bcher-kva.example", "www.example.org",
                                        "_sip.example"]


def test_lines_need_not_come_one_per_piece():
    pieces = ["198.18.64.1,8", "0,a,1\n198.18.64.2,", "80,b,2\n\n198.18.64.3,80"]
    assert [job[:2] for job in read_targets(pieces)] == [["198.18.64.1", 80],
                                                         ["198.18.64.2", 80],
                                                         ["198.18.64.3", 80]]


def test_reading_from_a_pipe_descriptor():
    rfd, wfd = os.pipe()
    data = "".join(f"198.18.{i // 250}.{i % 250 + 1},80,h{i}.example,{i}\n"
                   for i in range(5000)).encode()
    writer = threading.Thread(target=lambda: (os.write(wfd, data), os.close(wfd)))
    writer.start()
    try:
        jobs = list(read_targets(rfd))
    finally:
        writer.join()
        os.close(rfd)
    assert len(jobs) == 5000 and jobs[-1] == ["198.18.19.250", 80, "h4999.example", "4999"]


def test_reading_from_binary_and_text_file_objects(tmp_path):
    data = ("\ufeff" + GOOD_A + "198.18.64.2,80,b,2").encode()
    assert [j[2] for j in read_targets(io.BytesIO(data))] == ["a", "b"]
    path = tmp_path / "targets.csv"
    path.write_bytes(data)
    with open(path, "rb") as binary:
        assert [j[2] for j in read_targets(binary)] == ["a", "b"]
    with open(path, encoding="utf-8", newline="") as text:  # as 1.0's job_feeder passes it
        assert [j[2] for j in read_targets(text)] == ["a", "b"]


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_file_objects_on_a_pipe_give_lines_as_they_come(mode):
    """A pipe or terminal opened as a file: the first job comes without waiting for 64 KiB."""
    rfd, wfd = os.pipe()
    os.write(wfd, GOOD_A.encode())
    stream = open(rfd, mode, **({} if mode == "rb" else {"encoding": "utf-8", "newline": ""}))
    first = []
    thread = threading.Thread(target=lambda: first.append(next(read_targets(stream))),
                              daemon=True)
    try:
        thread.start()
        thread.join(2)
        assert first == [["198.18.64.1", 80, "a", "1"]]
    finally:
        os.close(wfd)
        thread.join(2)
        stream.close()


def test_reading_is_streamed():
    """Jobs are produced one by one: a huge list is never read ahead."""
    pulled = []

    def lines():
        for i in range(10_000_000):
            pulled.append(i)
            yield f"198.18.64.{i % 250 + 1},80,h,{i}\n"

    reader = read_targets(lines())
    first = [next(reader) for _ in range(5)]
    assert len(first) == 5 and len(pulled) <= 6


def test_wake_fd_stops_a_reader_blocked_on_a_silent_pipe():
    rfd, wfd = os.pipe()
    wake_r, wake_w = os.pipe()
    os.write(wfd, GOOD_A.encode())
    jobs, got_one = [], threading.Event()

    def consume():
        for job in read_targets(rfd, wake_fd=wake_r):
            jobs.append(job)
            got_one.set()

    thread = threading.Thread(target=consume, daemon=True)
    try:
        thread.start()
        assert got_one.wait(5)
        time.sleep(0.1)  # the reader is now blocked waiting for more input
        assert thread.is_alive()
        started = time.monotonic()
        os.write(wake_w, b"x")
        thread.join(1)
        assert not thread.is_alive() and time.monotonic() - started < 1
        assert jobs == [["198.18.64.1", 80, "a", "1"]]
        assert os.get_blocking(rfd)  # the input descriptor was left blocking
    finally:
        for fd in (rfd, wfd, wake_r, wake_w):
            os.close(fd)


def test_wake_fd_stops_an_iterable_before_the_next_piece():
    wake_r, wake_w = os.pipe()
    try:
        reader = read_targets(iter([GOOD_A, GOOD_B]), wake_fd=wake_r)
        assert next(reader)[2] == "a"
        os.write(wake_w, b"x")
        assert list(reader) == []
    finally:
        os.close(wake_r)
        os.close(wake_w)


def test_dev_zero_is_read_in_bounded_memory_until_woken(caplog):
    """/dev/zero is one line that never ends: one warning, then bytes skipped, not kept."""
    zero = os.open("/dev/zero", os.O_RDONLY)
    wake_r, wake_w = os.pipe()
    stats = TargetStats()
    jobs = []
    thread = threading.Thread(target=lambda: jobs.extend(read_targets(zero, stats,
                                                                      wake_fd=wake_r)),
                              daemon=True)
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pathspider.engine.targets"):
            thread.start()
            deadline = time.monotonic() + 20
            while stats.bytes < 10_000_000 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.write(wake_w, b"x")
            thread.join(2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for fd in (zero, wake_r, wake_w):
            os.close(fd)
    assert not thread.is_alive() and stats.bytes >= 10_000_000
    assert peak < 1_000_000, peak
    assert jobs == [] and stats.bad == 1 and stats.lines == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"input line 1 skipped: longer than {MAX_LINE} bytes"]


def test_a_10_mb_file_of_zero_bytes_is_one_bad_line_in_bounded_memory(tmp_path):
    path = tmp_path / "zeros"
    with open(path, "wb") as out:
        for _ in range(10):
            out.write(bytes(1_000_000))
        out.write(b"\n" + GOOD_A.encode())
    fd = os.open(path, os.O_RDONLY)
    stats = TargetStats()
    tracemalloc.start()
    try:
        jobs = list(read_targets(fd, stats))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(fd)
    assert jobs == [["198.18.64.1", 80, "a", "1"]] and stats.bad == 1 and stats.lines == 2
    assert peak < 1_000_000, peak


def test_helpers_raise_clear_errors():
    with pytest.raises(BadTarget, match="not an IP"):
        canonical_ip("example.com")
    assert canonical_ip("[2001:db8::2]") == "2001:db8::2"
    assert parse_port(" 8080 ") == 8080
    with pytest.raises(BadTarget, match="not an integer"):
        parse_port("8_0")
