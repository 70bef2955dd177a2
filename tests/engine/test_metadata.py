"""Run metadata pieces that need no run (pathspider.engine.metadata): refusing a file name
that would destroy something, writing atomically, describing how a run ended."""
import argparse
import json
import os

import pytest

from pathspider.engine import metadata
from pathspider.engine.metadata import MetadataError, RunMetadata, check_path


def args(**changes):
    values = {"command": "ecn", "spider": None, "interface": "lo", "input": "t.csv",
              "output": "out.ndjson", "output_format": "flows", "workers": 4,
              "func": print}
    values.update(changes)
    return argparse.Namespace(**values)


def test_refuses_the_input_and_output_files(tmp_path):
    inp, out = tmp_path / "t.csv", tmp_path / "out"
    inp.write_text("198.18.64.1,80\n")
    out.write_text("")
    with pytest.raises(MetadataError, match="is the --input file"):
        check_path(str(inp), os.stat(inp), str(out))
    with pytest.raises(MetadataError, match="is the --output file"):
        check_path(str(out), os.stat(inp), str(out))
    # also when the output does not exist yet, and through another name
    with pytest.raises(MetadataError, match="is the --output file"):
        check_path(str(tmp_path / "." / "new"), None, str(tmp_path / "new"))


@pytest.mark.parametrize("name", ["-", "/dev/stdout", ""])
def test_refuses_what_is_not_a_file(name):
    with pytest.raises(MetadataError, match="must name a file"):
        check_path(name)


def test_refuses_a_missing_directory_and_a_foreign_file(tmp_path):
    with pytest.raises(MetadataError, match="does not exist"):
        check_path(str(tmp_path / "nowhere" / "m.json"))
    other = tmp_path / "notes.txt"
    other.write_text("precious")
    with pytest.raises(MetadataError, match="not pathspider run metadata"):
        check_path(str(other))
    assert other.read_text() == "precious"
    with pytest.raises(MetadataError, match="not a regular file"):
        check_path(str(tmp_path))


def test_accepts_a_new_an_empty_and_an_earlier_metadata_file(tmp_path):
    assert check_path(str(tmp_path / "m.json")) is None
    (tmp_path / "empty").write_text("")
    assert check_path(str(tmp_path / "empty")) is None
    (tmp_path / "old").write_text(json.dumps({"pathspider_metadata": 1, "segments": []}))
    assert check_path(str(tmp_path / "old"))["segments"] == []


def test_options_leave_internals_out():
    options = metadata.options(args(custom=object()))
    assert "spider" not in options and "func" not in options
    assert options["workers"] == 4 and options["custom"].startswith("<object")


def test_written_atomically_and_completed(tmp_path):
    path = tmp_path / "m.json"
    run = RunMetadata(str(path), args())
    run.started()
    first = json.loads(path.read_text())
    assert first["status"] == "running" and first["segments"][0]["ended"] is None
    assert first["plugin"]["name"] == "ecn" and first["vantage"]["kernel"]
    run.ended(130, "SIGINT", {"jobs_read": 3}, 6)
    last = json.loads(path.read_text())
    assert last["status"] == "ended" and last["records_in_output"] == 6
    assert last["outcome"] == {"ended": "stopped", "reason": "SIGINT", "exit_status": 130}
    assert last["segments"][0]["system_state"]["after"]["sysctls"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_a_resumed_run_adds_a_segment_and_keeps_the_measurement(tmp_path):
    path = tmp_path / "m.json"
    first = RunMetadata(str(path), args())
    first.started()
    first.ended(130, "SIGINT", {}, 2)
    previous = check_path(str(path))
    second = RunMetadata(str(path), args(), previous, resumed=True)
    second.started()
    document = json.loads(path.read_text())
    assert len(document["segments"]) == 2 and document["status"] == "running"
    assert document["started"] == document["segments"][0]["started"]
    with pytest.raises(MetadataError, match="mix two measurements"):
        RunMetadata(str(path), args(command="dscp"), previous, resumed=True)


@pytest.mark.parametrize("status, ended", [(0, "done"), (130, "stopped"), (143, "stopped"),
                                           (141, "stopped"), (1, "failed")])
def test_outcome(status, ended):
    assert metadata.outcome(status, None)["ended"] == ended
