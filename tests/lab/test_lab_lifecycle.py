"""Lab life cycle: up, down, up again, down after killing the servers or after a crash half-way
through up, name clashes and missing prerequisites. Each test uses its own lab name (derived
from $PATHSPIDER_LAB_NAME) and checks that nothing is left behind and the root namespace is
untouched."""
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from pathspider.lab import Lab, LabError, LabNameError, netns, probe, procs
from pathspider.lab.lab import ROLES, default_name

pytestmark = pytest.mark.root

BASE = default_name()
ROOT_SYSCTLS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.tcp_ecn",
                "net.ipv4.tcp_fastopen", "net.core.somaxconn")


def lab_name(suffix):
    return f"{BASE}-{suffix}"


def root_state():
    """What the lab must never change in the root namespace."""
    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    sysctls = {}
    for key in ROOT_SYSCTLS:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            sysctls[key] = f.read().strip()
    return {"nft": run("nft", "list", "ruleset"), "sysctls": sysctls,
            "lab_addresses": [line for line in (run("ip", "-o", "addr") + run("ip", "route")
                                                + run("ip", "-6", "route")).splitlines()
                              if "198.18." in line or "2001:db8:" in line]}


def footprint(lab):
    """The namespaces' identities and the PIDs of the lab's servers, while it is up."""
    status = lab.status()
    inodes = {netns.inode(ns) for ns in lab.namespaces.values()}
    pids = {s["pid"] for s in status["servers"].values()}
    # the supervisor, the HTTP workers, h2d (HTTPS and HTTP/2) and dnsd
    assert None not in inodes and len(pids) == lab.http_workers + 3
    return inodes, pids


def assert_nothing_left(lab, inodes, pids):
    assert [ns for ns in lab.namespaces.values() if netns.exists(ns)] == []
    assert not os.path.exists(lab.rundir)
    assert not os.path.exists(lab.resolv_dir)
    assert [p for p in pids if procs.is_lab_process(p)] == []
    in_lab_netns = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    in_lab_netns.append(int(entry))
            except OSError:
                pass
    assert in_lab_netns == []


@pytest.fixture
def fresh_lab(request):
    """A lab with a test-specific name; removed afterwards whatever happens."""
    lab = Lab(lab_name(request.param if hasattr(request, "param") else "lc"))
    before = root_state()
    try:
        yield lab
    finally:
        try:
            lab.down()
        except LabError:
            pass
        assert root_state() == before


def test_up_down_up_and_down_after_killing_the_servers(fresh_lab):
    lab = fresh_lab
    assert lab.up() is True
    assert lab.is_up() and lab.up() is False           # idempotent: nothing changed
    assert lab.ensure_up() == "unchanged"
    assert root_state()["lab_addresses"] == []         # no lab address in the root namespace
    inodes, pids = footprint(lab)
    assert lab.down() is True
    assert_nothing_left(lab, inodes, pids)
    assert lab.down() is False

    assert lab.ensure_up() == "built"                  # what the session fixture owns
    inodes, pids = footprint(lab)
    for pid in pids:                                    # supervisor and every server
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        assert procs.wait_exit(pid, 5.0)
    assert not lab.is_up()
    assert not any(s["alive"] for s in lab.status()["servers"].values())
    assert lab.down() is True
    assert_nothing_left(lab, inodes, pids)


def test_up_rebuilds_a_lab_whose_servers_died(fresh_lab):
    lab = fresh_lab
    lab.up()
    _, pids = footprint(lab)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        procs.wait_exit(pid, 5.0)
    assert lab.ensure_up() == "rebuilt"                # was there (broken): not built here
    assert lab.is_up()
    assert lab.call_in_client(probe.wait_ready) == []


def _wait_replaced(path, timeout):
    """Block (inotify) until ``path`` is replaced by a rename, or ``timeout`` passes."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    in_moved_to = 0x80
    try:
        if libc.inotify_add_watch(fd, os.path.dirname(path).encode(), in_moved_to) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        yield  # caller acts now that the watch is in place
        while select.select([fd], [], [], timeout)[0]:
            if os.path.basename(path).encode() in os.read(fd, 4096):
                return
        raise TimeoutError(f"{path} was not replaced within {timeout} s")
    finally:
        os.close(fd)


def test_supervisor_restarts_a_server_that_dies(fresh_lab):
    lab = fresh_lab
    lab.up()
    old = lab.status()["servers"]["httpd-0"]["pid"]
    waiter = _wait_replaced(os.path.join(lab.rundir, "pids.json"), 10.0)
    next(waiter)
    os.kill(old, signal.SIGKILL)
    with pytest.raises(StopIteration):
        next(waiter)
    new = lab.status()["servers"]["httpd-0"]
    assert new["pid"] != old and new["alive"]
    assert lab.is_up()
    with open(os.path.join(lab.rundir, "supervisor.log")) as f:
        assert "httpd-0 exited" in f.read()


@pytest.mark.parametrize("crash_at", ["topology.build", "probe.wait_ready"])
def test_down_cleans_up_after_a_crash_half_way_through_up(fresh_lab, crash_at):
    lab = fresh_lab
    module, func = crash_at.split(".")
    code = textwrap.dedent(f"""
        import os
        from pathspider.lab import {module}
        from pathspider.lab.lab import Lab
        {module}.{func} = lambda *a, **k: os._exit(3)
        Lab({lab.name!r}).up()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 3
    assert all(netns.exists(ns) for ns in lab.namespaces.values())
    inodes = {netns.inode(ns) for ns in lab.namespaces.values()}
    assert not lab.is_up()
    assert lab.down() is True
    assert_nothing_left(lab, inodes, set())


def test_name_clash_fails_cleanly_and_touches_nothing(fresh_lab):
    lab = fresh_lab
    foreign = lab.namespaces["mbox"]
    netns.create(foreign)
    try:
        with pytest.raises(LabError, match=f"{foreign}.*already exist"):
            lab.up()
        assert not netns.exists(lab.namespaces["client"])
        assert not netns.exists(lab.namespaces["server"])
        assert not os.path.exists(lab.state_path)
        with pytest.raises(LabError, match="not removing"):
            lab.down()
        assert netns.exists(foreign)                  # never removed by the lab
        cli = subprocess.run([sys.executable, "-m", "pathspider.lab.cli", "--name", lab.name,
                              "up"], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1
        assert cli.stderr.strip().splitlines()[-1].startswith("pathspider lab: error:")
        assert foreign in cli.stderr
    finally:
        netns.remove(foreign)


def _cli(name, *args, env=None):
    return subprocess.run([sys.executable, "-m", "pathspider.lab.cli", "--name", name, *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_not_root_is_one_clear_error():
    name = lab_name("nr")
    # Import as root (the interpreter may live where others cannot read), then drop to nobody.
    code = textwrap.dedent(f"""
        import os, sys
        from pathspider.lab import cli
        parser = cli.build_parser()
        os.setuid(65534)
        args = parser.parse_args(["--name", {name!r}, "up"])
        sys.exit(args.func(args))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert "needs root" in done.stderr and "Traceback" not in done.stderr
    assert not any(netns.exists(f"{name}-{r}") for r in ROLES)


def test_missing_nft_is_one_clear_error(tmp_path):
    for tool in ("ip", "tc", "ethtool"):
        os.symlink(shutil.which(tool), tmp_path / tool)
    name = lab_name("nft")
    done = _cli(name, "up", env=dict(os.environ, PATH=str(tmp_path)))
    assert done.returncode == 1
    assert "'nft' not found" in done.stderr and "nftables" in done.stderr
    assert not any(netns.exists(f"{name}-{r}") for r in ROLES)
    assert not os.path.exists(f"/run/pathspider-lab/{name}")


def test_bad_lab_names_are_refused():
    for bad in ("", "has space", "a/b", "x" * 40, "x" * 9, "-lead", "a.b", "ab\n"):
        with pytest.raises(LabNameError, match="bad lab name"):
            Lab(bad)
    with pytest.raises(LabError, match="at most 8 characters.*15-byte"):
        Lab("psx-long9")
    assert Lab("a_b-9xyz").namespaces["server"] == "a_b-9xyz-server"     # 8: the longest
