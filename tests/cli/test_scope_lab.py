"""The default blocklist and the lab: a run started by ``pathspider lab exec`` (or
``Lab.exec_in_client``) measures the lab's targets without any flag; the same variable set by
hand outside the lab lifts nothing (and no job starts); ``--blocklist`` with one class's /24
skips exactly its targets."""
import json
import os
import subprocess
import sys

import pytest

from pathspider.lab import plan
from pathspider.lab.lab import IN_LAB_ENV
from test_cli import PATHSPIDER, REPO, plugin_tree
from test_cli_scope import STAMP_PLUGIN, summary_line

pytestmark = pytest.mark.root


def write_targets(path, rows):
    path.write_text("".join(",".join(str(c) for c in row) + "\n" for row in rows))
    return path


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lab_exec_sets_the_variable(lab):
    done = lab.exec_in_client(["sh", "-c", f'printf %s "${IN_LAB_ENV}"'],
                              capture_output=True, text=True, timeout=30)
    assert done.stdout == lab.name
    done = subprocess.run(PATHSPIDER + ["lab", "--name", lab.name, "exec", "--", "sh", "-c",
                                        f'printf %s "${IN_LAB_ENV}"'],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == lab.name, done.stderr


def test_lab_exec_measures_lab_targets_without_flags(lab_client_state, tmp_path):
    lab = lab_client_state
    targets = write_targets(tmp_path / "t.csv", lab.targets(4, ["clean"]))
    out = tmp_path / "out.ndjson"
    proc = subprocess.run(PATHSPIDER + [
        "lab", "--name", lab.name, "exec", "--", sys.executable, "-m", "pathspider.run",
        "-i", plan.CLIENT_IFACE, "-w", "8", "--input", str(targets), "--output", str(out),
        "ecn", "--timeout", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = records(out)
    assert len(found) == 8 and {r["dip"] for r in found} == {r[0] for r in
                                                             lab.targets(4, ["clean"])}
    assert all(r["connstate"] for r in found)
    assert f"inside lab {lab.name}" in proc.stderr
    assert "out of scope" not in summary_line(proc.stderr)


def test_a_blocklisted_class_inside_the_lab_is_skipped_exactly(lab_client_state, tmp_path):
    lab = lab_client_state
    rows = lab.targets(12, ["clean", "clean2"])
    targets = write_targets(tmp_path / "t.csv", rows)
    block = tmp_path / "block.txt"
    block.write_text(f"# the clean2 class, IPv4 only\n{plan.CLASSES['clean2'].net4}\n")
    out = tmp_path / "out.ndjson"
    proc = lab.exec_in_client([sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE,
                               "-w", "8", "--blocklist", str(block), "--input", str(targets),
                               "--output", str(out), "ecn", "--timeout", "3"],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = {r[0] for r in rows if plan.class_of(r[0]) == "clean2" and ":" not in r[0]}
    assert len(skipped) == 3
    measured = {r["dip"] for r in records(out)}
    assert measured == {r[0] for r in rows} - skipped
    assert "3 targets out of scope not measured: 3 --blocklist" in summary_line(proc.stderr)


def test_the_variable_outside_the_lab_lifts_nothing(lab, tmp_path):
    """From the root namespace, with the variable naming the (running) lab by hand: every lab
    target is skipped and no job starts. The plugin sends nothing anyway and records every
    connect it is asked for, so a failure shows as records, never as traffic."""
    tree = plugin_tree(tmp_path / "tp", "stamp", STAMP_PLUGIN)
    rows = lab.targets(20, ["clean", "blackhole"])
    targets = write_targets(tmp_path / "t.csv", rows)
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{REPO}", **{IN_LAB_ENV: lab.name})
    proc = subprocess.run(PATHSPIDER + ["-i", "lo", "--input", str(targets), "stamp"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""                                # no connect was made
    assert f"not in its client namespace {'/run/netns/' + lab.client_netns}" in proc.stderr
    line = summary_line(proc.stderr)
    assert "20 jobs from 20 lines" in line
    assert "20 targets out of scope not measured: 10 Benchmarking, 10 Documentation" in line
