"""``pathspider lab ...`` commands, run as processes against the session lab."""
import argparse
import csv
import io
import json
import subprocess
import sys

import pytest

from pathspider.lab import cli

pytestmark = pytest.mark.root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pathspider.lab.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_status_up_exec_on_a_running_lab(lab):
    done = run_cli("--name", lab.name, "status")
    assert done.returncode == 0
    assert done.stdout.startswith(f"lab {lab.name}: up")
    assert "ecn-syn-drop" in done.stdout and "httpd-0" in done.stdout
    info = json.loads(run_cli("--name", lab.name, "status", "--json").stdout)
    assert info["up"] and all(s["alive"] for s in info["servers"].values())
    again = run_cli("--name", lab.name, "up")
    assert again.returncode == 0 and "already up; nothing changed" in again.stdout
    assert run_cli("--name", lab.name, "exec", "--", "sh", "-c", "exit 5").returncode == 5
    shown = run_cli("--name", lab.name, "exec", "--", "ip", "-o", "-4", "addr", "show", "eth0")
    assert shown.returncode == 0 and "198.18.0.2/24" in shown.stdout
    assert run_cli("--name", lab.name, "exec").returncode == 2


def test_status_and_exec_of_a_lab_that_is_not_up(lab):
    name = lab.name + "-no"
    done = run_cli("--name", name, "status")
    assert done.returncode == 1 and done.stdout.startswith(f"lab {name}: down")
    done = run_cli("--name", name, "exec", "--", "true")
    assert done.returncode == 1 and "is not up" in done.stderr


def test_targets_csv_and_ndjson(tmp_path):
    done = run_cli("targets", "--count", "4", "--classes", "clean,tfo-strip", "--family", "6")
    assert done.returncode == 0
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows == [["2001:db8:100::1", "80", "t1.clean.lab.test", "1"],
                    ["2001:db8:100:5000::1", "80", "t1.tfo-strip.lab.test", "2"],
                    ["2001:db8:100::2", "80", "t2.clean.lab.test", "3"],
                    ["2001:db8:100:5000::2", "80", "t2.tfo-strip.lab.test", "4"]]
    out = tmp_path / "t.ndjson"
    done = run_cli("targets", "--count", "3", "--port", "53", "--format", "ndjson", "-o", str(out))
    assert done.returncode == 0 and done.stdout == ""
    jobs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [j["dp"] for j in jobs] == [53, 53, 53] and jobs[1]["dip"] == "2001:db8:100::1"
    bad = run_cli("targets", "--count", "3", "--classes", "nope")
    assert bad.returncode == 2 and "unknown impairment class" in bad.stderr


def test_register_args_plugs_into_a_parent_parser(capsys):
    parser = argparse.ArgumentParser(prog="pathspider")
    parser.add_argument("--output", default="/dev/stdout")
    cli.register_args(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["lab", "--name", "x", "targets", "--count", "2", "--family", "4"])
    assert args.func is cli.main and args.name == "x" and args.output == "/dev/stdout"
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines() == ["198.18.64.1,80,t1.clean.lab.test,1",
                                                    "198.18.65.1,80,t1.clean2.lab.test,2"]
