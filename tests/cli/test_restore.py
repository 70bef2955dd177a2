"""Tests of ``pathspider restore`` (:mod:`pathspider.cli.restore`).

The command runs through its ``main`` (as the ``pathspider`` CLI would call it) inside a private
network namespace created by the fixture (``ip netns exec``); the namespace, its journal and
its lock are removed afterwards.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pathspider.cli import restore

# parse the command line as the pathspider CLI does, then run the command's main
RESTORE = ("import argparse, sys; from pathspider.cli import restore; "
           "p = argparse.ArgumentParser(); s = p.add_subparsers(); restore.register_args(s); "
           "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")

CRASH = textwrap.dedent("""
    import os, signal
    from pathspider.client import sysstate
    sysstate.sysctl("net.ipv4.tcp_ecn").set(1)
    sysstate.nft_table("pathspider_rstest", "chain toggle { }")
    os.kill(os.getpid(), signal.SIGKILL)
""")

HOLD = textwrap.dedent("""
    import sys
    from pathspider.client import sysstate
    sysstate.sysctl("net.ipv4.tcp_ecn").set(1)
    print("ready", flush=True)
    sys.stdin.read()
""")


def ns_run(ns, *cmd, **kwargs):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=60, **kwargs)


def run_restore(ns, *args):
    return ns_run(ns, sys.executable, "-c", RESTORE, "restore", *args)


def ecn(ns):
    return ns_run(ns, "cat", "/proc/sys/net/ipv4/tcp_ecn").stdout.strip()


def has_table(ns):
    return "pathspider_rstest" in ns_run(ns, "nft", "list", "ruleset").stdout


def journal_file(ns):
    st = os.stat(f"/run/netns/{ns}")
    return f"/run/pathspider/netns-{st.st_dev}-{st.st_ino}.json"


@pytest.fixture
def netns():
    name = f"psj-restore-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    files = []
    try:
        files = [journal_file(name), journal_file(name)[:-len(".json")] + ".lock"]
        assert ns_run(name, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/tcp_ecn").returncode == 0
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        for path in files:
            if os.path.exists(path):
                os.unlink(path)


def crash(ns):
    """Leave changed state behind: a run that is killed with SIGKILL; returns its pid."""
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CRASH],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert ecn(ns) == "1" and has_table(ns)
    with open(journal_file(ns)) as stream:
        return json.load(stream)["owner"]["pid"]


def test_help_explains_the_command(capsys):
    parser = argparse.ArgumentParser(prog="pathspider")
    restore.register_args(parser.add_subparsers())
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["restore", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--list" in text and "/run/pathspider" in text and "ip netns exec" in text
    assert parser.parse_args(["restore"]).func is restore.main


@pytest.mark.root
def test_restore_puts_back_what_a_killed_run_left(netns):
    pid = crash(netns)

    listed = run_restore(netns, "--list")
    assert listed.returncode == 0, listed.stderr
    assert f"pid {pid}:" in listed.stdout and "ended" in listed.stdout
    assert "sysctl net.ipv4.tcp_ecn: original 0, now 1" in listed.stdout
    assert "nftables table inet pathspider_rstest" in listed.stdout
    # --list changed nothing
    assert ecn(netns) == "1" and has_table(netns) and os.path.exists(journal_file(netns))

    done = run_restore(netns)
    assert done.returncode == 0, done.stderr
    assert f"restored system state left by pathspider run (pid {pid}:" in done.stdout
    assert "  sysctl net.ipv4.tcp_ecn 1 -> 0" in done.stdout
    assert "  deleted nftables table inet pathspider_rstest" in done.stdout
    assert ecn(netns) == "0" and not has_table(netns)
    assert not os.path.exists(journal_file(netns))
    assert not os.path.exists(journal_file(netns)[:-len(".json")] + ".lock")

    again = run_restore(netns)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "nothing to restore in this network namespace\n"
    listed = run_restore(netns, "--list")
    assert listed.returncode == 0
    assert listed.stdout == "nothing to restore in this network namespace\n"


@pytest.mark.root
def test_restore_refuses_while_a_run_holds_the_namespace(netns):
    holder = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", HOLD],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        refused = run_restore(netns)
        assert refused.returncode == 1
        assert refused.stdout == "" and refused.stderr.count("\n") == 1
        assert refused.stderr.startswith(
            f"pathspider restore: another pathspider run (pid {holder.pid}: python -c ")
        assert ecn(netns) == "1"            # the live run's state is not touched
        listed = run_restore(netns, "--list")
        assert listed.returncode == 0
        assert f"held by a running pathspider run (pid {holder.pid}:" in listed.stdout
        assert "sysctl net.ipv4.tcp_ecn: original 0, now 1" in listed.stdout
        assert "running):" in listed.stdout
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert ecn(netns) == "0"
    done = run_restore(netns)
    assert done.returncode == 0 and "nothing to restore" in done.stdout


@pytest.mark.root
def test_restore_of_a_journal_with_nothing_left_changed(netns):
    """A run killed before its first change: the journal goes, nothing is written."""
    path = journal_file(netns)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cookie = ns_run(netns, sys.executable, "-c",
                    "from pathspider.client import sysstate; print(sysstate.netns_cookie())")
    with open(path, "w") as stream:
        json.dump({"version": 1, "cookie": json.loads(cookie.stdout),
                   "owner": {"pid": 1, "start": -1, "argv": ["pathspider", "ecn"]},
                   "entries": [{"kind": "sysctl", "name": "net.ipv4.tcp_ecn",
                                "original": "0"}]}, stream)
    done = run_restore(netns)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nothing to restore in this network namespace (removed the "
                                  "journal of pathspider run (pid 1: pathspider ecn)")
    assert "net.ipv4.tcp_ecn=0" in done.stdout
    assert not os.path.exists(path) and ecn(netns) == "0"
