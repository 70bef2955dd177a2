"""Tests of pathspider.client.sysstate: sysctls and nftables tables are put back on every exit path.

Everything runs in a private network namespace created (and deleted) by the fixture; the
process that changes the state runs inside it through ``ip netns exec``. The journal and lock
files of a test namespace are removed with it (they are keyed by the namespace).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
        print("journal-after-fork", os.path.exists(sysstate.journal_path()), flush=True)
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


def ns_key(ns):
    """The namespace's key in journal file names (``<st_dev>-<st_ino>``)."""
    st = os.stat(f"/run/netns/{ns}")
    return f"{st.st_dev}-{st.st_ino}"


def state_files(ns):
    """The journal and lock file of namespace ``ns`` (run as root: in /run/pathspider)."""
    base = f"/run/pathspider/netns-{ns_key(ns)}"
    return base + ".json", base + ".lock"


@pytest.fixture
def make_netns():
    """Factory of fresh namespaces (named psj-sysstate-...) with non-default originals and a
    foreign nftables table in them; each is removed afterwards with its journal and lock."""
    made = []

    def make():
        name = f"psj-sysstate-{os.getpid()}-{len(made)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append((name, state_files(name)))
        ns_run(name, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/tcp_ecn")
        ns_run(name, "nft", "-f", "-", input=(
            "table inet foreign {\n chain c {\n type filter hook output priority 0;\n"
            " meta mark 0x7 counter\n }\n}\n"))
        return name

    try:
        yield make
    finally:
        for name, files in made:
            subprocess.run(["ip", "netns", "del", name], check=False)
            for path in files:
                if os.path.exists(path):
                    os.unlink(path)


@pytest.fixture
def netns(make_netns):
    return make_netns()


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
    # everything restored: the journal is gone and the namespace is unlocked
    assert [path for path in state_files(ns) if os.path.exists(path)] == []


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
    # nor did it remove the journal while its parent still had the state changed
    assert "journal-after-fork True" in out
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


# --- journal, repair, lock, privileges -----------------------------------------------------

def ns_python(ns, script, *args, **kwargs):
    """Run ``script`` with the project's interpreter inside ``ns``; the CompletedProcess."""
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=60, **kwargs)


JOURNALED = textwrap.dedent("""
    import json, os, subprocess
    from pathspider.client import sysstate
    path = sysstate.journal_path()
    seen = []
    real_run_nft = sysstate.run_nft
    def spy(script, what="nftables"):
        if "pathspider_sstest {" in script:     # the table's creation: journaled before it?
            seen.append(json.load(open(path))["entries"])
        return real_run_nft(script, what)
    sysstate.run_nft = spy
    knob = sysstate.sysctl("net.ipv4.tcp_ecn")
    journal = json.load(open(path))
    value = open("/proc/sys/net/ipv4/tcp_ecn").read().strip()
    knob.set(1)
    table = sysstate.nft_table("pathspider_sstest", "chain toggle { }")
    during = json.load(open(path))
    holder = json.load(open(path[:-len(".json")] + ".lock"))
    sysstate.restore_all()
    print(json.dumps({"pid": os.getpid(), "start": sysstate.process_start(os.getpid()),
                      "path": path, "journal": journal, "value": value, "seen": seen,
                      "during": during["entries"], "holder": holder,
                      "after": os.path.exists(path)}))
""")


def test_journal_holds_the_original_before_the_change_and_goes_after_restore(netns):
    proc = ns_python(netns, JOURNALED)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["path"] == state_files(netns)[0]
    journal = out["journal"]
    # written at registration, while the kernel still had the original in force
    assert out["value"] == "0"
    assert journal["entries"] == [{"kind": "sysctl", "name": "net.ipv4.tcp_ecn", "original": "0"}]
    assert journal["owner"]["pid"] == out["pid"] and journal["owner"]["start"] == out["start"]
    assert journal["owner"]["argv"][1] == "-c" and journal["netns"] == ns_key(netns)
    # the table was journaled before nft created it
    assert out["seen"] == [[journal["entries"][0],
                            {"kind": "nft", "family": "inet", "name": "pathspider_sstest"}]]
    assert out["during"] == out["seen"][0]
    assert out["holder"]["pid"] == out["pid"]
    assert out["after"] is False
    assert sysctl_value(netns, "net.ipv4.tcp_ecn") == "0"
    assert not any(os.path.exists(path) for path in state_files(netns))


CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathspider.client import sysstate
    sysstate.sysctl("net.ipv4.tcp_ecn").set(1)
    sysstate.sysctl("net.ipv4.tcp_ecn_fallback").set(0)
    sysstate.nft_table("pathspider_sstest", "chain toggle { }")
    if sys.argv[1] == "orphan":      # a forked child (like the Observer) outlives its parent
        child = os.fork()
        if child == 0:
            import time
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def crash(ns, mode="plain"):
    """A run in ``ns`` that changes state and dies by SIGKILL; returns (its pid, its stdout)."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CRASH, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    # the state is left changed, with the journal naming the dead run
    assert sysctl_value(ns, "net.ipv4.tcp_ecn") == "1"
    assert sysctl_value(ns, "net.ipv4.tcp_ecn_fallback") == "0"
    assert "pathspider_sstest" in ruleset(ns)
    with open(state_files(ns)[0]) as stream:
        assert json.load(stream)["owner"]["pid"] == proc.pid
    return proc.pid, out


NEXT_RUN = textwrap.dedent("""
    import logging, subprocess
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    from pathspider.client import sysstate
    knob = sysstate.sysctl("net.ipv4.tcp_ecn")
    print("original", knob.original)
    print("table-present", "pathspider_sstest" in subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True).stdout)
    knob.set(2)
    sysstate.restore_all()
""")


def test_next_run_repairs_a_killed_run_before_reading_originals(netns):
    pid, _ = crash(netns)
    proc = ns_python(netns, NEXT_RUN)
    assert proc.returncode == 0, proc.stderr
    # the true original, not the dead run's 1, and the table was gone before this run went on
    assert "original 0" in proc.stdout and "table-present False" in proc.stdout
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 1, proc.stderr
    line = warnings[0]
    assert line.startswith("WARNING pathspider.client.sysstate: restored system state")
    assert f"pid {pid}:" in line
    assert "sysctl net.ipv4.tcp_ecn 1 -> 0" in line
    assert "sysctl net.ipv4.tcp_ecn_fallback 0 -> 1" in line
    assert "deleted nftables table inet pathspider_sstest" in line
    assert_restored(netns)


def test_an_orphaned_forked_child_does_not_keep_the_namespace(netns):
    pid, out = crash(netns, "orphan")
    orphan = int(out.split()[0])
    try:
        assert process_alive(orphan)
        proc = ns_python(netns, NEXT_RUN)
        assert proc.returncode == 0, proc.stderr
        assert "original 0" in proc.stdout and f"pid {pid}:" in proc.stderr
        assert_restored(netns)
    finally:
        os.kill(orphan, signal.SIGKILL)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_leftovers_of_a_namespace_that_no_longer_exists_are_not_applied(netns):
    """A journal whose namespace cookie differs (same inode, new namespace) is discarded."""
    path, _ = state_files(netns)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as stream:
        json.dump({"version": 1, "netns": ns_key(netns), "cookie": 2 ** 63,
                   "owner": {"pid": 1, "start": -1, "argv": ["pathspider", "ecn"]},
                   "entries": [{"kind": "sysctl", "name": "net.ipv4.tcp_ecn",
                                "original": "1"}]}, stream)
    proc = ns_python(netns, NEXT_RUN)
    assert proc.returncode == 0, proc.stderr
    assert "original 0" in proc.stdout
    assert "discarded the system-state journal" in proc.stderr
    assert_restored(netns)


TRY_REGISTER = textwrap.dedent("""
    import sys
    from pathspider.client import sysstate
    try:
        if sys.argv[1] == "nft":
            sysstate.nft_table("pathspider_sstest", "chain toggle { }")
        else:
            sysstate.sysctl("net.ipv4.tcp_ecn").set(2)
    except sysstate.SystemStateError as exc:
        print(exc)
        sys.exit(3)
    print("registered", open("/proc/sys/net/ipv4/tcp_ecn").read().strip())
    sysstate.restore_all()
""")


def test_one_state_changing_run_per_namespace(make_netns):
    ns, other = make_netns(), make_netns()
    holder = start_child(ns, "wait")
    try:
        assert holder.stdout.readline().strip() == "ready"
        for kind in ("sysctl", "nft"):
            proc = ns_python(ns, TRY_REGISTER, kind)
            assert proc.returncode == 3, (proc.stdout, proc.stderr)
            assert proc.stdout.count("\n") == 1 and proc.stderr == ""
            assert proc.stdout.startswith(f"another pathspider run (pid {holder.pid}: python -c ")
            assert proc.stdout.rstrip().endswith(
                "is changing system state in this network namespace; wait for it to end or "
                "stop it")
        # the holder's state is untouched by the refused process
        assert sysctl_value(ns, "net.ipv4.tcp_ecn") == "1"
        # another namespace is not blocked
        proc = ns_python(other, TRY_REGISTER, "sysctl")
        assert proc.returncode == 0 and "registered 2" in proc.stdout, proc.stdout + proc.stderr
        assert_restored(other)
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert_restored(ns)
    proc = ns_python(ns, TRY_REGISTER, "sysctl")
    assert proc.returncode == 0 and "registered 2" in proc.stdout, proc.stdout + proc.stderr
    assert_restored(ns)


SEVERAL_RUNS = textwrap.dedent("""
    import os, sys
    from pathspider.client import sysstate
    lock = sysstate.journal_path()[:-len(".json")] + ".lock"
    def blocked():   # does another process get "another pathspider run" now?
        import subprocess
        return subprocess.run([sys.executable, "-c", sys.argv[1], "sysctl"],
                              capture_output=True, text=True).returncode == 3
    first = sysstate.SystemState(track=True)
    first.sysctl("net.ipv4.tcp_ecn").set(1)
    second = sysstate.SystemState(track=True)
    second.sysctl("net.ipv4.tcp_ecn").set(2)      # the same knob in two registries
    print("both", os.path.exists(lock), blocked())
    second.restore()
    print("one-left", os.path.exists(lock), blocked(),
          open("/proc/sys/net/ipv4/tcp_ecn").read().strip())
    first.restore()
    print("none-left", os.path.exists(lock), blocked(),
          open("/proc/sys/net/ipv4/tcp_ecn").read().strip())
    third = sysstate.SystemState(track=True)        # the next spider of the same process
    third.sysctl("net.ipv4.tcp_ecn").set(1)
    print("again", os.path.exists(lock), blocked())
""")


def test_lock_is_released_when_everything_is_restored(netns):
    """A process may run several spiders in a row: the lock follows what is registered."""
    proc = ns_python(netns, SEVERAL_RUNS, TRY_REGISTER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["both True True", "one-left True True 1",
                                        "none-left False False 0", "again True True"]
    assert_restored(netns)       # the third registry was restored at exit


NOBODY = textwrap.dedent("""
    import os, sys
    from pathspider.client import sysstate
    assert os.geteuid() == 65534
    sysstate.TMP_DIR_TEMPLATE = sys.argv[2] + "/ps-{uid}"
    try:
        if sys.argv[1] == "nft":
            sysstate.nft_table("pathspider_sstest", "chain toggle { }")
        elif sys.argv[1] == "run_nft":
            sysstate.run_nft("table inet pathspider_sstest { }")
        elif sys.argv[1] == "dir":
            sysstate.RUN_DIR = sys.argv[2] + "/root-only/pathspider"
            sysstate.journal_dir()
        else:
            sysstate.sysctl("net.ipv4.tcp_ecn").set(1)
    except sysstate.SystemStateError as exc:
        print(exc)
        sys.exit(3)
""")


@pytest.fixture
def scratch():
    """A directory everybody may use (for the unprivileged process's journal directory)."""
    path = tempfile.mkdtemp(prefix="psj-sysstate-")
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("what,message", [
    ("sysctl", "changing net.ipv4.tcp_ecn needs CAP_NET_ADMIN: run as root or grant the "
               "capability (see docs/engine.md, 'Running without root')"),
    ("nft", "changing nftables (table inet pathspider_sstest) needs CAP_NET_ADMIN: run as root "
            "or grant the capability (see docs/engine.md, 'Running without root')"),
    ("run_nft", "changing nftables needs CAP_NET_ADMIN: run as root or grant the capability "
                "(see docs/engine.md, 'Running without root')")])
def test_without_capability_one_line_names_it(netns, scratch, what, message):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    proc = subprocess.run(["ip", "netns", "exec", netns, "setpriv", "--reuid=65534",
                           "--regid=65534", "--clear-groups", sys.executable, "-c", NOBODY,
                           what, scratch], capture_output=True, text=True, timeout=60, env=env,
                          cwd=scratch)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stdout == message + "\n"
    assert proc.stderr == ""
    assert sysctl_value(netns, "net.ipv4.tcp_ecn") == "0"
    assert "pathspider_sstest" not in ruleset(netns)
    # the error came before anything was written, even a journal directory
    assert os.listdir(scratch) == []


def test_unusable_journal_directory_is_one_line(netns, scratch):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    os.mkdir(os.path.join(scratch, "root-only"), 0o700)
    os.symlink("/tmp", os.path.join(scratch, "ps-65534"))   # not ours, and a symlink
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    proc = subprocess.run(["ip", "netns", "exec", netns, "setpriv", "--reuid=65534",
                           "--regid=65534", "--clear-groups", sys.executable, "-c", NOBODY,
                           "dir", scratch], capture_output=True, text=True, timeout=60, env=env,
                          cwd=scratch)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stderr == "" and proc.stdout.count("\n") == 1
    assert proc.stdout.startswith("no usable directory for the system-state journal (")
    assert f"{scratch}/root-only/pathspider: Permission denied" in proc.stdout
    assert f"{scratch}/ps-65534: is a symbolic link" in proc.stdout
