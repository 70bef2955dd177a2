"""The target list reader: streamed, validating, with line numbers in warnings."""
import logging

import pytest

from pathspider.engine.targets import BadTarget, TargetStats, canonical_ip, parse_port, read_targets


def test_good_rows_become_1_0_jobs():
    jobs = list(read_targets(["198.18.64.1,80,host.example,1\n",
                              "2001:DB8::0:1,443,h6,2\n"]))
    assert jobs == [["198.18.64.1", 80, "host.example", "1"],
                    ["2001:db8::1", 443, "h6", "2"]]


def test_blank_and_comment_lines_are_ignored():
    stats = TargetStats()
    jobs = list(read_targets(["\n", "# comment\n", "198.18.64.1,80,h,1\n", " , \n"], stats))
    assert len(jobs) == 1 and stats.bad == 0


def test_missing_hostname_and_rank_become_empty():
    assert list(read_targets(["198.18.64.1,80\n"])) == [["198.18.64.1", 80, "", ""]]


@pytest.mark.parametrize("line,reason", [
    ("198.18.64.1,http,h,1", "port is not an integer"),
    ("198.18.64.1,0,h,1", "out of range"),
    ("198.18.64.1,70000,h,1", "out of range"),
    ("not-an-ip,80,h,1", "not an IP address"),
    ("198.18.64.300,80,h,1", "not an IP address"),
    ("198.18.64.1", "too few columns"),
])
def test_bad_rows_are_warned_with_line_number_and_skipped(line, reason, caplog):
    stats = TargetStats()
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.targets"):
        jobs = list(read_targets(["198.18.64.1,80,a,1\n", line + "\n", "198.18.64.2,80,b,2\n"],
                                 stats, source="targets.csv"))
    assert [job[2] for job in jobs] == ["a", "b"]
    assert stats.bad == 1 and stats.jobs == 2
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "targets.csv line 2" in message and reason in message


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


def test_helpers_raise_clear_errors():
    with pytest.raises(BadTarget, match="not an IP"):
        canonical_ip("example.com")
    assert canonical_ip("[2001:db8::2]") == "2001:db8::2"
    assert parse_port(" 8080 ") == 8080
