"""ndjson target lists (PATHspider 2.0 jobs): good lines, bad lines, hostile lines."""
import copy
import json
import logging
import pickle

import pytest

from pathspider.engine.targets import (MAX_DEPTH, MAX_LINE, Job, TargetStats, job_fields,
                                       read_targets)

GOOD_A = '{"dip": "198.18.64.1", "dp": 80, "domain": "a", "rank": 1}\n'
GOOD_B = '{"dip": "198.18.64.2", "dp": 80, "domain": "b", "rank": 2}\n'


def read_logged(lines, caplog, input_format="auto"):
    stats = TargetStats()
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.targets"):
        jobs = list(read_targets(lines, stats, source="jobs.ndjson",
                                 input_format=input_format))
    return jobs, stats, [r.getMessage() for r in caplog.records]


def test_good_lines_become_1_0_jobs_carrying_their_fields():
    line = {"dip": "2001:DB8::0:1", "dp": 443, "domain": "Host.Example", "rank": 7,
            "info": {"asn": [64496, "x"]}, "dip_asn": 64496, "note": "é ✓"}
    [job] = read_targets([json.dumps(line, ensure_ascii=False) + "\n"])
    assert job == ["2001:db8::1", 443, "host.example", "7"]     # validated, canonical
    assert isinstance(job, list) and isinstance(job, Job)
    assert job.fields == line                                   # as read, extras included
    assert job[0] == "2001:db8::1" and len(job) == 4
    assert job_fields(job) == line and job_fields(job) is not job.fields


def test_optional_fields_and_string_port():
    jobs = list(read_targets(['{"dip": "198.18.64.1", "dp": "80"}\n',
                              '{"dip": "198.18.64.2", "dp": 80, "domain": null, '
                              '"rank": "r1"}\n']))
    assert jobs == [["198.18.64.1", 80, "", ""], ["198.18.64.2", 80, "", "r1"]]


def test_csv_jobs_have_the_2_0_field_names():
    [job] = read_targets(["198.18.64.1,80,h.example,3\n"])
    assert type(job) is list
    assert job_fields(job) == {"dip": "198.18.64.1", "dp": 80, "domain": "h.example",
                               "rank": "3"}
    assert job_fields(["198.18.64.1", 80]) == {"dip": "198.18.64.1", "dp": 80, "domain": "",
                                               "rank": ""}


def test_format_is_told_from_the_first_significant_line(caplog):
    lines = ["\n", "# a comment\n", GOOD_A, "198.18.64.9,80,c,3\n", GOOD_B]
    jobs, stats, messages = read_logged(lines, caplog)
    assert [job[2] for job in jobs] == ["a", "b"]           # the CSV row is a bad ndjson line
    assert stats.bad == 1 and "line 4" in messages[0] and "not JSON" in messages[0]
    jobs, stats, _ = read_logged(["198.18.64.9,80,c,3\n", GOOD_A], caplog)
    assert [job[2] for job in jobs] == ["c"] and stats.bad == 1


def test_forced_formats(caplog):
    jobs, stats, _ = read_logged([GOOD_A], caplog, input_format="csv")
    assert jobs == [] and stats.bad == 1
    jobs, stats, _ = read_logged(["198.18.64.9,80,c,3\n", GOOD_A], caplog,
                                 input_format="ndjson")
    assert [job[2] for job in jobs] == ["a"] and stats.bad == 1
    with pytest.raises(ValueError):
        list(read_targets([GOOD_A], input_format="xml"))


def test_job_survives_copy_and_pickle():
    [job] = read_targets([GOOD_A])
    for clone in (copy.copy(job), copy.deepcopy(job), pickle.loads(pickle.dumps(job))):
        assert type(clone) is Job and clone == job and clone.fields == job.fields


def test_ipv4_mapped_address_becomes_ipv4_and_fields_stay_unchanged():
    [job] = read_targets(['{"dip": "::ffff:198.18.64.1", "dp": 80}\n'])
    assert job[0] == "198.18.64.1" and job.fields["dip"] == "::ffff:198.18.64.1"


@pytest.mark.parametrize("line,reason", [
    ('{"dp": 80}', "no 'dip'"),
    ('{"dip": 1, "dp": 80}', "no 'dip'"),
    ('{"dip": "not-an-ip", "dp": 80}', "not an IP address"),
    ('{"dip": "198.18.64.1"}', "no 'dp'"),
    ('{"dip": "198.18.64.1", "dp": 0}', "out of range"),
    ('{"dip": "198.18.64.1", "dp": 70000}', "out of range"),
    ('{"dip": "198.18.64.1", "dp": 80.0}', "not an integer"),
    ('{"dip": "198.18.64.1", "dp": true}', "not an integer"),
    ('{"dip": "198.18.64.1", "dp": "8_0"}', "port is not an integer"),
    ('{"dip": "198.18.64.1", "dp": 80, "domain": "a b"}', "contains a space"),
    ('{"dip": "198.18.64.1", "dp": 80, "domain": "h\\r\\nX-Injected: 1"}', "not a DNS name"),
    ('{"dip": "198.18.64.1", "dp": 80, "domain": 5}', "'domain' is not text"),
    ('{"dip": "198.18.64.1", "dp": 80, "rank": "1\\u001b[2J"}', "control character"),
    ('{"dip": "198.18.64.1", "dp": 80, "rank": 1.5}', "not text or an integer"),
    ('{"dip": "198.18.64.1", "dp": 80, "rank": [1]}', "not text or an integer"),
    ('[{"dip": "198.18.64.1", "dp": 80}]', "not an object"),
    ('"198.18.64.1"', "not an object"),
    ('null', "not an object"),
    ('{"dip": "198.18.64.1", "dp": 80', "not JSON"),
    ('{"dip": "198.18.64.1", "dp": 80} {}', "not JSON"),
    ("{'dip': '198.18.64.1', 'dp': 80}", "not JSON"),
])
def test_bad_lines_are_warned_with_line_number_and_skipped(line, reason, caplog):
    jobs, stats, messages = read_logged([GOOD_A, line + "\n", GOOD_B], caplog)
    assert [job[2] for job in jobs] == ["a", "b"]
    assert stats.bad == 1 and stats.jobs == 2 and stats.lines == 3
    assert len(messages) == 1 and messages[0].startswith("jobs.ndjson line 2 skipped")
    assert reason in messages[0], messages[0]


HOSTILE = [
    ('{"dip": "198.18.64.1", "dp": 80, "dip": "198.18.64.66"}', "duplicate key 'dip'"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": {"a": 1, "a": 2}}', "duplicate key 'a'"),
    ('{"dip": "198.18.64.1", "dp": 1' + "0" * 4000 + "}", "longer than"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": 1' + "0" * 100 + "}", "longer than"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": 1e999}', "out of range"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": -Infinity}', "not a JSON value"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": NaN}', "not a JSON value"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": ' + "[" * 20000 + "]" * 20000 + "}", "nested"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": ' + '{"a":' * 40 + "1" + "}" * 40 + "}",
     "nested"),
    ('{"dip": "198.18.64.1", "dp": 80, "x": "\\ud800"}', "lone surrogate"),
    ('{"dip": "198.18.64.1", "dp": 80, "\\udfff": 1}', "lone surrogate"),
]


@pytest.mark.parametrize("line,reason", HOSTILE)
def test_hostile_lines_are_bad_lines_not_crashes(line, reason, caplog):
    jobs, stats, messages = read_logged([GOOD_A, line + "\n", GOOD_B], caplog)
    assert [job[2] for job in jobs] == ["a", "b"] and stats.bad == 1
    assert reason in messages[0], messages[0]


def test_nesting_up_to_the_limit_is_fine():
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    [job] = read_targets(['{"dip": "198.18.64.1", "dp": 80, "x": ' + inner + "}\n"])
    assert job[0] == "198.18.64.1"


def test_over_long_line_is_one_bad_line(caplog):
    line = '{"dip": "198.18.64.1", "dp": 80, "x": "' + "y" * MAX_LINE + '"}\n'
    jobs, stats, messages = read_logged([GOOD_A, line, GOOD_B], caplog)
    assert len(jobs) == 2 and stats.bad == 1 and f"longer than {MAX_LINE}" in messages[0]


def test_blank_and_comment_lines_are_ignored_but_csv_blanks_are_not_json(caplog):
    jobs, stats, messages = read_logged([GOOD_A, "\n", "  # note\n", " , \n", GOOD_B], caplog)
    assert len(jobs) == 2 and stats.bad == 1 and "line 4" in messages[0]
