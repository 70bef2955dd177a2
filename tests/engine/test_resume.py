"""The output scanner and resume plan of ``--resume`` (pathspider.engine.resume): what counts
as complete, partial or torn, how duplicates in the target list are handled, and that the
cleaned file keeps exactly the complete targets' records."""
import json
import os

import pytest

from pathspider.engine.resume import ResumeError, job_key, scan_output

T1 = ["198.18.64.1", 80, "a.lab", "1"]
T2 = ["198.18.65.1", 80, "b.lab", "2"]
T3 = ["2001:db8:100::1", 80, "c.lab", "3"]


def flow(job, config, **extra):
    ip, port, host, rank = job
    return {"dip": ip, "dp": port, "host": host, "rank": rank, "config": config, **extra}


def job_line(job, records=2, **extra):
    ip, port, host, rank = job
    return {"dip": ip, "dp": port, "domain": host, "rank": rank,
            "flow_results": [{"config": c} for c in range(records)], **extra}


def write(path, records, tail=b""):
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)
    return str(path)


def lines(path):
    return [json.loads(line) for line in open(path)]


def test_complete_targets_are_skipped_and_partial_ones_measured_again(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T2, 0), flow(T1, 1)])
    plan = scan_output(path, "flows").plan(2)
    assert (plan.targets, plan.kept, plan.dropped) == (1, 2, 1)
    left = list(plan.skip_measured([T1, T2, T3]))
    assert left == [T2, T3] and plan.skipped == 1
    assert plan.apply() == "rewritten"
    assert lines(path) == [flow(T1, 0), flow(T1, 1)]        # T2's lone record is gone


def test_a_torn_last_line_is_cut_and_its_target_measured_again(tmp_path):
    torn = json.dumps(flow(T2, 1)).encode()[:25]
    path = write(tmp_path / "out", [flow(T1, 0), flow(T1, 1), flow(T2, 0)], tail=torn)
    scan = scan_output(path, "flows")
    assert scan.torn == len(torn)
    plan = scan.plan(2)
    assert plan.dropped == 1                                # T2's record without its pair
    plan.apply()
    assert open(path, "rb").read().endswith(b"\n")
    assert lines(path) == [flow(T1, 0), flow(T1, 1)]


def test_only_a_torn_tail_is_truncated_in_place(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T1, 1)], tail=b'{"dip": "198.')
    inode = os.stat(path).st_ino
    plan = scan_output(path, "flows").plan(2)
    assert plan.apply() == "truncated"
    assert os.stat(path).st_ino == inode
    assert lines(path) == [flow(T1, 0), flow(T1, 1)]


def test_a_clean_output_is_left_alone(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T1, 1)])
    before = os.stat(path)
    assert scan_output(path, "flows").plan(2).apply() == "unchanged"
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns


def test_rewrite_keeps_mode_and_is_a_new_file_renamed_over_the_old(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T1, 1), flow(T2, 1)])
    os.chmod(path, 0o600)
    scan_output(path, "flows").plan(2).apply()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out"]     # no temporary file left


def test_a_target_listed_twice_counts_occurrences(tmp_path):
    # Two complete occurrences of T1 and a third with one record; the list names T1 three times.
    records = [flow(T1, 0), flow(T1, 1), flow(T1, 1), flow(T1, 0), flow(T1, 0)]
    path = write(tmp_path / "out", records)
    plan = scan_output(path, "flows").plan(2)
    assert plan.complete and plan.kept == 4 and plan.dropped == 1
    assert list(plan.skip_measured([T1, T2, T1, T1])) == [T2, T1]
    plan.apply()
    assert sorted(r["config"] for r in lines(path)) == [0, 0, 1, 1]


def test_two_records_of_the_same_config_are_not_a_complete_target(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T1, 0)])
    plan = scan_output(path, "flows").plan(2)
    assert plan.targets == 0 and plan.dropped == 2
    assert list(plan.skip_measured([T1, T1])) == [T1, T1]


def test_one_connection_per_job(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T2, 0)])
    plan = scan_output(path, "flows").plan(1)
    assert list(plan.skip_measured([T1, T2, T3])) == [T3]


def test_addresses_match_in_canonical_form(tmp_path):
    record = flow(["2001:DB8:100:0:0:0:0:1", 80, "c.lab", "3"], 0)
    path = write(tmp_path / "out", [record, {**record, "config": 1}])
    plan = scan_output(path, "flows").plan(2)
    assert list(plan.skip_measured([T3])) == []


def test_records_without_host_and_rank_match_on_address_and_port(tmp_path):
    path = write(tmp_path / "out", [{"dip": T1[0], "dp": 80, "config": 0},
                                    {"dip": T1[0], "dp": 80, "config": 1}])
    scan = scan_output(path, "flows")
    assert not scan.full_keys
    assert list(scan.plan(2).skip_measured([T1, T2])) == [T2]


def test_records_without_config_are_counted_per_connection(tmp_path):
    path = write(tmp_path / "out", [{"dip": T1[0], "dp": 80, "host": "a.lab", "rank": "1"}] * 3)
    scan = scan_output(path, "flows")
    assert not scan.by_config
    plan = scan.plan(2)
    assert (plan.targets, plan.kept, plan.dropped) == (1, 2, 1)


def test_job_lines_incomplete_ones_are_measured_again(tmp_path):
    path = write(tmp_path / "out", [job_line(T1), job_line(T2, 1, incomplete=True),
                                    job_line(T3)], tail=b'{"dip": "19')
    plan = scan_output(path, "jobs").plan(2)
    assert (plan.targets, plan.kept, plan.dropped) == (2, 2, 1)
    assert list(plan.skip_measured([T1, T2, T3])) == [T2]
    plan.apply()
    assert [r["dip"] for r in lines(path)] == [T1[0], T3[0]]


def test_job_lines_of_ndjson_input_match_its_jobs(tmp_path):
    # job lines carry the input's fields as read: an integer rank, a name in capitals
    path = write(tmp_path / "out", [{"dip": T1[0], "dp": "80", "domain": "A.Lab", "rank": 1,
                                     "flow_results": []}])
    plan = scan_output(path, "jobs").plan(2)
    assert list(plan.skip_measured([T1])) == []


@pytest.mark.parametrize("content, needle", [
    (b"not json\n", "is not a JSON record"),
    (b'{"dip": "198.18.64.1", "dp": 80, "flow_results": []}\n', "--format jobs"),
    (b'{"dp": 80, "config": 0}\n', "does not name its target"),
    (b'[1, 2]\n', "is not a JSON record"),
])
def test_a_file_that_is_not_this_output_is_refused(tmp_path, content, needle):
    path = tmp_path / "out"
    path.write_bytes(content)
    with pytest.raises(ResumeError, match=needle):
        scan_output(str(path), "flows")


def test_flows_output_resumed_as_jobs_is_refused(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0)])
    with pytest.raises(ResumeError, match="--format flows"):
        scan_output(path, "jobs")


def test_an_empty_output_keeps_nothing(tmp_path):
    path = write(tmp_path / "out", [])
    plan = scan_output(path, "flows").plan(2)
    assert plan.apply() == "unchanged" and list(plan.skip_measured([T1])) == [T1]


def test_job_key_matches_the_record_key():
    assert job_key(T1) == job_key(list(T1))
    assert job_key(T1) != job_key(T2)
    assert job_key(T1, full=False) == job_key(T1[:2] + ["x", "9"], full=False)


def test_unmatched_counts_complete_targets_not_in_the_list(tmp_path):
    path = write(tmp_path / "out", [flow(T1, 0), flow(T1, 1), flow(T2, 0), flow(T2, 1)])
    plan = scan_output(path, "flows").plan(2)
    assert list(plan.skip_measured([T1])) == []
    assert plan.unmatched() == 1
