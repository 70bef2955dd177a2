"""The output failing or misused on a real run in the lab: a reader that goes away, a full
disk, appending, an output that is the input, a directory."""
import json
import os
import subprocess
import sys

import pytest

from fault_run import csv_lines, rows
from pathspider.lab import netns, plan

pytestmark = pytest.mark.root


def pathspider(lab, *args, **kwargs):
    """argv of the command line in the lab client namespace (start it with
    ``env=lab.client_env()``, so that it measures lab targets as under ``lab exec``)."""
    return netns.command(lab.client_netns, [sys.executable, "-m", "pathspider.run", "-i",
                                            plan.CLIENT_IFACE, *args])


def test_a_closed_pipe_ends_the_run_quietly(lab_client_state, tmp_path):
    """The reader takes one record and goes away (what ``| head -1`` does) while targets are
    still coming."""
    lab = lab_client_state
    fifo = tmp_path / "targets.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(pathspider(lab, "--input", fifo, "ecn", "--timeout", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=lab.client_env())
    with open(fifo, "w") as feed:
        feed.write(csv_lines(rows(lab, ["clean"], 5)))
        feed.flush()
        first = proc.stdout.readline()          # records come once their flows expire
        proc.stdout.close()
        feed.write(csv_lines(rows(lab, ["clean2"], 5)))
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert first.startswith(b"{")
    assert proc.returncode == 141, err[-3000:]
    assert "Traceback" not in err and "closed by its reader" in err


def test_a_full_disk_keeps_whole_records_and_fails_in_one_line(lab_client_state, tmp_path):
    """The output on a 16 KiB tmpfs (mounted in a private mount namespace of the run)."""
    lab = lab_client_state
    targets = tmp_path / "targets.csv"
    targets.write_text(csv_lines(rows(lab, ["clean"], 40)))
    full = tmp_path / "full"
    full.mkdir()
    script = (f"mount -t tmpfs -o size=16k pathspider-test {full} && "
              f"{sys.executable} -m pathspider.run -i {plan.CLIENT_IFACE} --input {targets} "
              f"--output {full}/results.ndjson ecn --timeout 2; status=$?; "
              f"cp {full}/results.ndjson {tmp_path}/kept.ndjson; exit $status")
    proc = subprocess.run(netns.command(lab.client_netns, ["unshare", "--mount",
                                                            "--propagation", "private",
                                                            "sh", "-c", script]),
                          capture_output=True, text=True, timeout=120, env=lab.client_env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    kept = (tmp_path / "kept.ndjson").read_text()
    assert kept.endswith("\n") and 0 < kept.count("\n") < 160
    for line in kept.splitlines():
        json.loads(line)


def test_appending_keeps_what_was_there(lab_client_state, tmp_path):
    lab = lab_client_state
    targets = tmp_path / "targets.csv"
    targets.write_text(csv_lines(rows(lab, ["clean"], 2)))
    results = tmp_path / "results.ndjson"
    results.write_text('{"earlier": true}\n')
    with open(results, "a") as out:
        proc = subprocess.run(pathspider(lab, "--input", targets, "ecn"), stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=60,
                              env=lab.client_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = results.read_text().splitlines()
    assert lines[0] == '{"earlier": true}' and len(lines) == 1 + 8


@pytest.mark.parametrize("how", ["--output", "stdout"])
def test_the_input_file_is_never_the_output(lab_client_state, tmp_path, how):
    lab = lab_client_state
    targets = tmp_path / "targets.csv"
    text = csv_lines(rows(lab, ["clean"], 2))
    targets.write_text(text)
    if how == "--output":
        proc = subprocess.run(pathspider(lab, "--input", targets, "--output", targets, "ecn"),
                              capture_output=True, text=True, timeout=60)
    else:
        with open(targets, "a") as out:
            proc = subprocess.run(pathspider(lab, "--input", targets, "ecn"), stdout=out,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1
    assert "is the input file" in proc.stderr and "Traceback" not in proc.stderr
    assert targets.read_text() == text


@pytest.mark.parametrize("output", ["directory", "read-only"])
def test_an_unwritable_output_is_one_line(lab_client_state, tmp_path, output):
    lab = lab_client_state
    path = tmp_path / "out"
    if output == "directory":
        path.mkdir()
    else:
        path.write_text("")
        path.chmod(0o444)
    argv = pathspider(lab, "--output", path, "ecn")
    if output == "read-only":                   # root ignores file modes: drop privileges
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps", "+net_raw,+net_admin", "--ambient-caps", "+net_raw,+net_admin",
                *argv[4:]]
        argv = netns.command(lab.client_netns, argv)
    proc = subprocess.run(argv, input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write --output" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
