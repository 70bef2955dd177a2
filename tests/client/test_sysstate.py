"""Tests of pathspider.client.sysstate: sysctls and nftables tables are put back on every exit path.

Everything runs in a private network namespace created (and deleted) by the fixture; the
process that changes the state runs inside it through ``ip netns exec``.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.root

CHILD = textwrap.dedent("""
    import os, sys, time
    from pathspider.client import sysstate
    mode = sys.argv[1]
    ecn = sysstate.sysctl("net.ipv4.tcp_ecn")
    fallback = sysstate.sysctl("net.ipv4.tcp_ecn_fallback")
    table = sysstate.nft_table("pathspider_sstest",
        "chain output { type filter hook output priority mangle; policy accept; }\\n"
        "chain toggle { }")
    ecn.set(1)
    fallback.set(0)
    table.apply("add rule inet pathspider_sstest toggle meta mark set 0x1")
    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            sysstate.restore_all()  # a forked child must not restore its parent's state
            os._exit(0)
        os.waitpid(pid, 0)
        print("after-fork", open("/proc/sys/net/ipv4/tcp_ecn").read().strip(), flush=True)
    print("ready", flush=True)
    if mode == "exception":
        raise RuntimeError("simulated plugin error")
    if mode == "wait":
        sys.stdin.read()
    if mode == "late-write":
        sysstate.restore_all()
        ecn.set(1)  # a worker still switching after the restoration must not undo it
        table.apply("add rule inet pathspider_sstest toggle meta mark set 0x2")
""")


def ns_run(ns, *cmd, **kwargs):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True,
                          text=True, timeout=30, **kwargs)


def sysctl_value(ns, name):
    return ns_run(ns, "cat", "/proc/sys/" + name.replace(".", "/")).stdout.strip()


def ruleset(ns):
    return ns_run(ns, "nft", "list", "ruleset").stdout


@pytest.fixture
def netns():
    """A fresh namespace with non-default originals and a foreign nftables table in it."""
    name = f"psd-sysstate-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns_run(name, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/tcp_ecn")
        ns_run(name, "nft", "-f", "-", input=(
            "table inet foreign {\n chain c {\n type filter hook output priority 0;\n"
            " meta mark 0x7 counter\n }\n}\n"))
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def start_child(ns, mode):
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_restored(ns):
    assert sysctl_value(ns, "net.ipv4.tcp_ecn") == "0"
    assert sysctl_value(ns, "net.ipv4.tcp_ecn_fallback") == "1"
    rules = ruleset(ns)
    assert "pathspider_sstest" not in rules
    assert "table inet foreign" in rules and "meta mark 0x00000007 counter" in rules


@pytest.mark.parametrize("mode,status", [("normal", 0), ("exception", 1), ("late-write", 0)])
def test_restored_on_exit_and_error(netns, mode, status):
    child = start_child(netns, mode)
    out, err = child.communicate(timeout=30)
    assert child.returncode == status, err
    assert "ready" in out
    if mode == "exception":
        assert "simulated plugin error" in err
    assert_restored(netns)


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                           (signal.SIGINT, -signal.SIGINT),
                                           (signal.SIGHUP, 128 + signal.SIGHUP)])
def test_restored_on_signal(netns, signum, status):
    child = start_child(netns, "wait")
    assert child.stdout.readline().strip() == "ready"
    # While the child runs, the changed state is in force.
    assert sysctl_value(netns, "net.ipv4.tcp_ecn") == "1"
    assert sysctl_value(netns, "net.ipv4.tcp_ecn_fallback") == "0"
    assert "pathspider_sstest" in ruleset(netns)
    os.kill(child.pid, signum)
    child.communicate(timeout=30)
    # ip netns exec execs the interpreter, so the status is the child's own.
    assert child.returncode == status
    assert_restored(netns)


def test_forked_child_does_not_restore(netns):
    child = start_child(netns, "fork")
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "after-fork 1" in out
    assert_restored(netns)


def test_leftover_table_is_replaced(netns):
    ns_run(netns, "nft", "-f", "-", input=(
        "table inet pathspider_sstest {\n chain old {\n type filter hook output priority 0;\n"
        " meta mark 0x9 counter\n }\n}\n"))
    child = start_child(netns, "wait")
    assert child.stdout.readline().strip() == "ready"
    rules = ruleset(netns)
    assert "chain toggle" in rules and "chain old" not in rules
    child.communicate("", timeout=30)
    assert child.returncode == 0
    assert_restored(netns)


def test_context_manager_and_unchanged_knob_is_not_written(netns):
    script = textwrap.dedent("""
        from pathspider.client.sysstate import SystemState
        with SystemState() as state:
            knob = state.sysctl("net.ipv4.tcp_ecn")
            assert knob.original == "0"
            knob.set(0)   # unchanged: no write
            knob.set(2)
            assert knob.read() == "2"
        print(open("/proc/sys/net/ipv4/tcp_ecn").read().strip())
    """)
    assert ns_run(netns, sys.executable, "-c", script).stdout.strip() == "0"


def test_unwritable_sysctl_gives_clear_error():
    from pathspider.client import sysstate
    with pytest.raises(sysstate.SystemStateError, match="no.such.knob"):
        sysstate.Sysctl("net.ipv4.no.such.knob")


def test_tracked_registry_joins_restore_all_only_while_it_holds_state(netns):
    script = textwrap.dedent("""
        from pathspider.client import sysstate
        state = sysstate.SystemState(track=True)
        assert state not in sysstate._tracked          # nothing registered yet
        state.sysctl("net.ipv4.tcp_ecn").set(1)
        assert state in sysstate._tracked
        assert sysstate.restore_all() == []
        assert state not in sysstate._tracked
        print(open("/proc/sys/net/ipv4/tcp_ecn").read().strip())
    """)
    assert ns_run(netns, sys.executable, "-c", script).stdout.strip() == "0"
