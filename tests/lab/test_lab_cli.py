"""``pathspider lab ...`` commands, run as processes against the session lab."""
import argparse
import csv
import io
import json
import os
import subprocess
import sys
import warnings

import pytest

from pathspider.lab import Lab, LabError, cli, netns
from pathspider.lab.lab import DEFAULT_NAME, DEPRECATED_NAME_ENV, NAME_ENV, ROLES, default_name

pytestmark = pytest.mark.root


def run_cli(*args, env=None):
    """``python -m pathspider.lab.cli ARGS``; ``env``: variables to set (None: unset)."""
    environ = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return subprocess.run([sys.executable, "-m", "pathspider.lab.cli", *args],
                          capture_output=True, text=True, timeout=120, env=environ)


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
    assert [j["rank"] for j in jobs] == ["1", "2", "3"]             # text, as in the CSV
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


# -- the lab name: --name before or after the command, one environment variable --------------

@pytest.mark.parametrize("argv, name", [
    (["up"], None),
    (["up", "--name", "x"], "x"),
    (["--name", "y", "up"], "y"),
    (["--name", "y", "up", "--name", "z"], "z"),                 # the later one wins
    (["down", "--name", "x"], "x"),
    (["status", "--json", "--name", "x"], "x"),
    (["targets", "--name", "x", "--count", "2"], "x"),
    (["exec", "--name", "x", "--", "sh", "--name", "q"], "x"),   # CMD's own --name is CMD's
    (["exec", "--", "sh", "--name", "q"], None),
])
def test_name_is_taken_before_and_after_the_command(argv, name):
    assert cli.build_parser().parse_args(argv).name == name      # None: default_name()


def test_the_default_name_comes_from_one_variable_the_old_one_deprecated():
    assert default_name({}) == DEFAULT_NAME == "psl"
    assert default_name({NAME_ENV: "new"}) == "new"
    assert default_name({NAME_ENV: "new", DEPRECATED_NAME_ENV: "old"}) == "new"
    assert default_name({NAME_ENV: "", DEPRECATED_NAME_ENV: ""}) == "psl"
    with pytest.warns(DeprecationWarning, match=f"{DEPRECATED_NAME_ENV} is deprecated"):
        assert default_name({DEPRECATED_NAME_ENV: "old"}) == "old"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default_name({NAME_ENV: "new", DEPRECATED_NAME_ENV: "old"})    # no warning


def test_commands_honour_both_variables(lab):
    other = lab.name + "-no"                                     # a lab that is not up
    up = f"lab {lab.name}: up"
    for env, shown in [({NAME_ENV: lab.name, DEPRECATED_NAME_ENV: None}, up),
                       ({NAME_ENV: None, DEPRECATED_NAME_ENV: lab.name}, up),
                       ({NAME_ENV: lab.name, DEPRECATED_NAME_ENV: other}, up),
                       ({NAME_ENV: other, DEPRECATED_NAME_ENV: lab.name}, f"lab {other}: down"),
                       ({NAME_ENV: None, DEPRECATED_NAME_ENV: None}, f"lab {DEFAULT_NAME}: ")]:
        done = run_cli("status", env=env)
        assert done.stdout.startswith(shown), (env, done.stdout, done.stderr)
    # --name (before or after the command) beats the environment
    for argv in (["--name", lab.name, "status"], ["status", "--name", lab.name]):
        done = run_cli(*argv, env={NAME_ENV: other})
        assert done.returncode == 0 and done.stdout.startswith(up), argv


def test_up_and_down_with_the_name_after_the_command(lab):
    name = lab.name + "-n"
    try:
        done = run_cli("up", "--name", name, env={NAME_ENV: lab.name})
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"lab {name} is up")
        assert Lab(name).is_up() and all(netns.exists(f"{name}-{role}")
                                         for role in ROLES)
        done = run_cli("status", "--name", name)
        assert done.returncode == 0 and done.stdout.startswith(f"lab {name}: up")
        done = run_cli("targets", "--name", name, "--count", "1")
        assert done.returncode == 0 and done.stdout == "198.18.64.1,80,t1.clean.lab.test,1\n"
        done = run_cli("exec", "--name", name, "--", "ip", "-o", "-4", "addr", "show", "eth0")
        assert done.returncode == 0 and "198.18.0.2/24" in done.stdout
        done = run_cli("down", "--name", name)
        assert done.returncode == 0 and done.stdout == f"lab {name} removed\n"
        assert not any(netns.exists(f"{name}-{role}") for role in ROLES)
        assert Lab(lab.name).is_up()                             # the other lab untouched
    finally:
        try:
            Lab(name).down()
        except LabError:
            pass
