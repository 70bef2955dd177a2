"""``--resume`` on real lab runs: a run of a few hundred targets (some listed twice) stopped by
SIGINT or killed with SIGKILL mid-run, then resumed, ends with the same records as an
uninterrupted run of the same list: the same targets, the same count per target and config,
nothing twice (compared by target and config, not by timing fields). Also: an output damaged
by hand (a record missing, a torn last line), job lines, and the misuses."""
import shutil

import pytest

from bookkeeping_run import (SIGINT, SIGKILL, Run, job_set, metadata, record_set,
                             restore_client, run_to_end, target_rows, wait_for_lines,
                             wait_measuring, write_rows)

pytestmark = pytest.mark.root

COUNT, DUPLICATES = 300, 20


@pytest.fixture(scope="module")
def reference(lab, tmp_path_factory):
    """The target list and the outputs of uninterrupted runs over it (flows and jobs)."""
    tmp = tmp_path_factory.mktemp("reference")
    infile = write_rows(tmp / "targets.csv", target_rows(lab, COUNT, DUPLICATES))
    flows, jobs = tmp / "flows.ndjson", tmp / "jobs.ndjson"
    run_to_end(lab, tmp, infile, flows, name="flows")
    run_to_end(lab, tmp, infile, jobs, "--format", "jobs", name="jobs")
    expected = record_set(flows)
    assert sum(expected.values()) == 2 * (COUNT + DUPLICATES)
    assert max(expected.values()) == 2                  # the targets listed twice
    return infile, flows, jobs


def interrupted(lab, tmp_path, infile, out, signum, *extra, rate="100"):
    """A run stopped with ``signum`` once it has done some of its jobs (and, for SIGKILL,
    written some records); returns its exit status."""
    run = Run(lab, tmp_path, infile, out, "--rate", rate, "--progress-interval", "0.2",
              *extra, name="interrupted")
    if signum == SIGKILL:
        assert wait_for_lines(out, 20), run.stderr()[-3000:]
    else:
        wait_measuring(run, 60)
    run.proc.send_signal(signum)
    return run.wait()


def resumed(lab, tmp_path, infile, out, *extra):
    return run_to_end(lab, tmp_path, infile, out, "--resume", *extra, name="resumed")


def test_resume_after_sigint(lab_client_state, tmp_path, reference):
    infile, flows, _ = reference
    out, meta = tmp_path / "out.ndjson", tmp_path / "meta.json"
    status = interrupted(lab_client_state, tmp_path, infile, out, SIGINT, "--metadata", str(meta))
    assert status == 130
    first = sum(record_set(out).values())
    assert 0 < first < 2 * (COUNT + DUPLICATES)
    err = resumed(lab_client_state, tmp_path, infile, out, "--metadata", str(meta))
    assert "--resume: " in err and "complete targets" in err
    assert record_set(out) == record_set(flows)
    doc = metadata(meta)
    assert doc["status"] == "ended" and doc["outcome"]["ended"] == "done"
    assert [s["outcome"]["ended"] for s in doc["segments"]] == ["stopped", "done"]
    assert doc["segments"][0]["outcome"]["reason"] == "SIGINT"
    again = doc["segments"][1]["resumed"]
    assert again["records_kept"] == first and again["partial_records_removed"] == 0
    assert again["targets_skipped"] == first // 2
    assert doc["records_in_output"] == 2 * (COUNT + DUPLICATES)


def test_resume_after_sigkill(lab_client_state, tmp_path, reference):
    infile, flows, _ = reference
    out, meta = tmp_path / "out.ndjson", tmp_path / "meta.json"
    try:
        status = interrupted(lab_client_state, tmp_path, infile, out, SIGKILL,
                             "--metadata", str(meta), rate="60")
        assert status == 128 + 9
        assert metadata(meta)["status"] == "running"          # the start version
        err = resumed(lab_client_state, tmp_path, infile, out, "--metadata", str(meta))
    finally:
        restore_client(lab_client_state)
    assert record_set(out) == record_set(flows)
    # the killed run's journal is dealt with by the resumed run: restored if the kill caught
    # configuration 1 in force, else found already back (configuration 0 is the lab's value)
    assert ("restored system state left by a pathspider run" in err
            or "removed the journal of a pathspider run that ended without restoring" in err)
    doc = metadata(meta)
    assert doc["status"] == "ended" and len(doc["segments"]) == 2
    assert doc["segments"][0]["ended"] is None and doc["segments"][1]["outcome"]["ended"] == "done"


def test_resume_of_a_damaged_output(lab_client_state, tmp_path, reference):
    """One record of a job removed and a torn line at the end, as a SIGKILL between two
    writes leaves them: that job is measured again, every other one is kept."""
    infile, flows, _ = reference
    out, meta = tmp_path / "out.ndjson", tmp_path / "meta.json"
    lines = flows.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:10] + lines[11:]) + lines[10][:30])
    err = resumed(lab_client_state, tmp_path, infile, out, "--metadata", str(meta))
    assert record_set(out) == record_set(flows)
    again = metadata(meta)["segments"][0]["resumed"]
    assert again["partial_records_removed"] == 1 and again["torn_bytes_removed"] == 30
    assert again["targets_skipped"] == COUNT + DUPLICATES - 1
    assert f"--resume: {COUNT + DUPLICATES - 1} jobs skipped" in err
    assert metadata(meta)["earlier_segments"].startswith("unknown")


def test_resume_of_job_lines_after_sigint(lab_client_state, tmp_path, reference):
    infile, _, jobs = reference
    out = tmp_path / "out.ndjson"
    status = interrupted(lab_client_state, tmp_path, infile, out, SIGINT, "--format", "jobs")
    assert status == 130
    assert 0 < sum(job_set(out).values()) < COUNT + DUPLICATES
    resumed(lab_client_state, tmp_path, infile, out, "--format", "jobs")
    assert job_set(out) == job_set(jobs)


def test_resume_of_a_complete_output_measures_nothing(lab_client_state, tmp_path, reference):
    infile, flows, _ = reference
    out = tmp_path / "out.ndjson"
    shutil.copy(flows, out)
    before = out.read_bytes()
    err = resumed(lab_client_state, tmp_path, infile, out)
    assert out.read_bytes() == before
    assert f"--resume: {COUNT + DUPLICATES} jobs skipped" in err


def test_resume_without_an_output_is_a_fresh_run(lab_client_state, tmp_path, reference):
    infile, flows, _ = reference
    out = tmp_path / "new.ndjson"
    err = resumed(lab_client_state, tmp_path, infile, out)
    assert f"--resume: {out} does not exist; starting a fresh run" in err
    assert record_set(out) == record_set(flows)


def test_resume_with_the_other_format_is_refused(lab_client_state, tmp_path, reference):
    infile, flows, _ = reference
    out = tmp_path / "out.ndjson"
    shutil.copy(flows, out)
    run = Run(lab_client_state, tmp_path, infile, out, "--resume", "--format", "jobs")
    assert run.wait() == 1
    assert "resume with the --format it was written in" in run.stderr()
    assert out.read_bytes() == flows.read_bytes()


def test_resume_to_standard_output_is_refused(lab_client_state, tmp_path, reference):
    infile, _, _ = reference
    run = Run(lab_client_state, tmp_path, infile, "-", "--resume")
    assert run.wait() == 1
    err = run.stderr()
    assert "--resume needs a named --output file" in err and "Traceback" not in err
