"""Faults and careless use of ``pathspider lab``: signals to and from ``lab exec``, concurrent
``up``/``down`` of one lab, bad option values and names, and ``status`` of a broken lab.

Every command runs as a process, as a user would run it. Labs made here are named from
$PATHSPIDER_LAB_NAME and taken down afterwards, also when a test fails; processes started here
are ended by PID.
"""
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import termios
import textwrap
import time

import pytest

from pathspider.lab import Lab, LabError, netns, plan, procs
from pathspider.lab.lab import NAME_ENV, NAME_MAX, default_name

pytestmark = pytest.mark.root

BASE = default_name()
CLI = [sys.executable, "-m", "pathspider.lab.cli"]
MAIN = [sys.executable, "-m", "pathspider.run", "lab"]    # as `pathspider lab`

# A child for `lab exec`: says "ready <pid>" on stdout, then records each signal it gets (one
# line each) in the file named by argv[1] and exits 3 on the first (after a grace period in
# which a duplicate would be recorded too).
RECORDER = textwrap.dedent("""
    import os, signal, sys, time
    out = sys.argv[1]
    got = []
    def record(sig, frame):
        with open(out, "a") as f:
            f.write(f"{sig}\\n")
        got.append(sig)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, record)
    print("ready", os.getpid(), flush=True)
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    sys.exit(3 if got else 0)
""")


def lab_name(suffix):
    name = f"{BASE}-{suffix}"
    if len(name) > NAME_MAX:
        pytest.fail(f"lab name {BASE!r} (${NAME_ENV}) is too long for the lab names this "
                    f"test makes ({name!r}: at most {NAME_MAX} characters)", pytrace=False)
    return name


def run(argv, **kwargs):
    kwargs.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def one_error_line(done, status, *needles):
    """The command failed with ``status`` and said why in exactly one line, no traceback."""
    lines = done.stderr.splitlines()
    assert done.returncode == status, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("pathspider lab: error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def read_ready(proc, timeout=30.0):
    """The PID the RECORDER child reports on ``proc``'s stdout."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the child in the lab did not start"
    line = proc.stdout.readline().split()
    assert line[:1] == ["ready"], line
    return int(line[1])


def end(proc):
    """Make sure a process started here is gone (by PID)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def start_exec(lab, tmp_path, entry=CLI, **kwargs):
    record = tmp_path / "signals"
    argv = entry + ["--name", lab.name, "exec", "--", sys.executable, "-c", RECORDER,
                    str(record)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)
    return proc, record


# -- lab exec and signals ------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_exec_forwards_signals_and_waits_for_the_child(lab, tmp_path, sig):
    proc, record = start_exec(lab, tmp_path)
    try:
        child = read_ready(proc)
        assert netns.inode(lab.client_netns) == os.stat(f"/proc/{child}/ns/net").st_ino
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 3            # the child's status: exec did not die
        assert record.read_text().split() == [str(int(sig))]
        assert procs.wait_exit(child, 5.0)
    finally:
        end(proc)


# A child for the terminal test: takes SIGINT synchronously and reports every one with its
# sender (si_code, si_pid), so a second SIGINT sent by `lab exec` shows; SIGTERM ends it.
SIGINT_REPORTER = textwrap.dedent("""
    import os, signal
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
    print("ready", os.getpid(), flush=True)
    while True:
        info = signal.sigwaitinfo([signal.SIGINT, signal.SIGTERM])
        if info.si_signo == signal.SIGTERM:
            raise SystemExit(3)
        print("SIGINT", info.si_code, info.si_pid, flush=True)
""")


def test_ctrl_c_at_a_terminal_reaches_the_child_once(lab):
    """The terminal signals the whole foreground process group, the child included; `lab
    exec` must not send it a second SIGINT. Two pending SIGINTs would merge into one, so
    `lab exec` is stopped while the child takes the terminal's, and continued after."""
    master, slave = os.openpty()

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    argv = CLI + ["--name", lab.name, "exec", "--", sys.executable, "-c", SIGINT_REPORTER]
    proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=controlling_tty)
    os.close(slave)
    try:
        read_ready(proc)
        for _ in range(3):
            proc.send_signal(signal.SIGSTOP)
            os.waitid(os.P_PID, proc.pid, os.WSTOPPED)
            os.write(master, b"\x03")                 # Ctrl-C (ISIG is on in a new pty)
            assert select.select([proc.stdout], [], [], 10)[0], "the child got no SIGINT"
            assert proc.stdout.readline().split()[:2] == ["SIGINT", "128"]   # SI_KERNEL
            proc.send_signal(signal.SIGCONT)           # exec now takes its pending SIGINT
            again = select.select([proc.stdout], [], [], 0.5)[0]
            assert not again, f"SIGINT sent twice: {proc.stdout.readline()}"
        proc.send_signal(signal.SIGTERM)               # forwarded: the child exits 3
        assert proc.wait(timeout=30) == 3
    finally:
        end(proc)
        os.close(master)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1])
def test_exec_reports_death_by_signal_as_128_plus_n(lab, sig):
    code = f"import os; os.kill(os.getpid(), {int(sig)})"
    done = run(CLI + ["--name", lab.name, "exec", "--", sys.executable, "-c", code])
    assert done.returncode == 128 + sig
    assert run(MAIN + ["--name", lab.name, "exec", "--", sys.executable, "-c",
                       code]).returncode == 128 + sig


def test_child_of_a_killed_exec_does_not_run_on(lab, tmp_path):
    proc, record = start_exec(lab, tmp_path)
    child = None
    try:
        child = read_ready(proc)
        proc.kill()                                     # SIGKILL: no chance to forward
        proc.wait(timeout=10)
        assert procs.wait_exit(child, 5.0), f"child {child} still runs after exec was killed"
        assert record.read_text().split() == [str(int(signal.SIGTERM))]
    finally:
        end(proc)
        if child and not procs.wait_exit(child, 0):
            os.kill(child, signal.SIGKILL)


def test_exec_of_a_command_that_does_not_exist(lab, tmp_path):
    done = run(CLI + ["--name", lab.name, "exec", "--", "psx-no-such-command"])
    one_error_line(done, 127, "psx-no-such-command", "command not found")
    done = run(CLI + ["--name", lab.name, "exec", "--", str(tmp_path)])
    one_error_line(done, 126, "not an executable")
    done = run(MAIN + ["--name", lab.name, "exec"])
    one_error_line(done, 2, "exec needs a command")


# -- one lab, several commands at once -----------------------------------------------------

@pytest.fixture
def own_lab(request):
    """A lab name of this test's own; the lab is taken down afterwards whatever happens."""
    lab = Lab(lab_name(request.param))
    yield lab
    try:
        lab.down()
    except LabError:
        pass
    assert not any(netns.exists(ns) for ns in lab.namespaces.values())
    assert not os.path.exists(lab.rundir) and not os.path.exists(lab.lock_path)


def assert_down(lab):
    assert not any(netns.exists(ns) for ns in lab.namespaces.values())
    assert not os.path.exists(lab.rundir) and not os.path.exists(lab.lock_path)


@pytest.mark.parametrize("own_lab", ["cc"], indirect=True)
def test_concurrent_ups_build_once(own_lab):
    lab = own_lab
    ups = [subprocess.Popen(CLI + ["--name", lab.name, "up"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        results = [(p.wait(timeout=120), *p.communicate()) for p in ups]
    finally:
        for p in ups:
            end(p)
    assert [code for code, _, _ in results] == [0, 0], results
    said = sorted(out.strip().splitlines()[-1] for _, out, _ in results)
    assert said[0].startswith(f"lab {lab.name} is up;"), results
    assert said[1] == f"lab {lab.name} was already up; nothing changed", results
    assert any("waits for it" in err for _, _, err in results)     # it did wait
    assert lab.is_up()
    done = run(CLI + ["--name", lab.name, "down"])
    assert done.returncode == 0 and done.stdout.strip() == f"lab {lab.name} removed"
    assert_down(lab)


@pytest.mark.parametrize("own_lab", ["ud"], indirect=True)
def test_down_while_up_runs_waits_for_it(own_lab):
    lab = own_lab
    up = subprocess.Popen(CLI + ["--name", lab.name, "up"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30      # until up holds the lock (it is building)
        while not os.path.exists(lab.state_path):
            assert up.poll() is None and time.monotonic() < deadline, up.communicate()
            time.sleep(0.005)
        down = run(CLI + ["--name", lab.name, "down"])
        code, (out, err) = up.wait(timeout=120), up.communicate()
    finally:
        end(up)
    assert code == 0 and f"lab {lab.name} is up;" in out, (out, err)
    assert down.returncode == 0 and down.stdout.strip() == f"lab {lab.name} removed", down
    assert "waits for it" in down.stderr
    assert_down(lab)


# -- bad names, ports, counts, files ---------------------------------------------------------

@pytest.mark.parametrize("entry", [CLI, MAIN], ids=["module", "pathspider"])
@pytest.mark.parametrize("argv, status, needles", [
    (["--name", "x" * (NAME_MAX + 1), "up"], 2, ["at most 8 characters", "15-byte"]),
    (["--name", "psx-toolong", "status"], 2, ["at most 8 characters"]),
    (["--name", "a/b", "down"], 2, ["letters, digits"]),
    (["--name", "a b", "exec", "--", "true"], 2, ["letters, digits"]),
    (["--name=-psx", "up"], 2, ["starting with a letter or a digit"]),
    (["--name", "", "status"], 2, ["empty"]),
    (["--name", "psxé", "up"], 2, ["letters, digits"]),
    (["targets", "--port", "0"], 2, ["--port", "between 1 and 65535"]),
    (["targets", "--port", "70000"], 2, ["between 1 and 65535"]),
    (["targets", "--port", "-1"], 2, ["between 1 and 65535"]),
    (["targets", "--port", "http"], 2, ["must be an integer"]),
    (["targets", "--count", "0"], 2, ["--count", "at least 1"]),
    (["targets", "--count", "-5"], 2, ["at least 1"]),
    (["targets", "--count", "many"], 2, ["must be an integer"]),
    (["targets", "--count", "100000"], 2,
     [f"between 0 and {len(plan.HOSTS) * 2 * len(plan.CLASS_NAMES)}"]),
    (["targets", "--family", "5"], 2, ["invalid choice"]),
    (["targets", "--classes", "clean,nope"], 2, ["unknown impairment class"]),
    (["targets", "-o", "/nonexistent-psx/dir/t.csv"], 1, ["cannot write", "/nonexistent-psx"]),
    (["up", "--http-workers", "0"], 2, ["between 1 and 32"]),
    (["nosuch"], 2, ["invalid choice: 'nosuch'"]),
    ([], 2, ["required: COMMAND"]),
])
def test_bad_values_are_one_line_errors(entry, argv, status, needles):
    done = run(entry + argv)
    one_error_line(done, status, *needles)
    assert done.stdout == ""
    assert not os.path.exists("/run/netns/" + "x" * (NAME_MAX + 1) + "-client")


def test_targets_count_defaults_to_one_per_class_and_family():
    done = run(CLI + ["targets"])
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2 * len(plan.CLASS_NAMES)
    done = run(CLI + ["targets", "--classes", "clean,blackhole", "--family", "6"])
    assert [line.split(",")[2] for line in done.stdout.splitlines()] == [
        "t1.clean.lab.test", "t1.blackhole.lab.test"]
    shown = " ".join(run(CLI + ["targets", "--help"]).stdout.split())
    assert "default: one per chosen class and family" in shown


def test_a_reader_that_goes_away_is_no_traceback():
    proc = subprocess.Popen(CLI + ["targets", "--count", "5588"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdout.readline()
        proc.stdout.close()                              # like `| head -1`
        assert proc.wait(timeout=60) == 1
        assert proc.stderr.read() == b""
    finally:
        end(proc)


def test_longest_name_is_accepted():
    assert Lab("a" * NAME_MAX).namespaces["server"] == "a" * NAME_MAX + "-server"
    assert len(("a" * NAME_MAX + "-server").encode()) == 15


# -- status of a broken lab ------------------------------------------------------------------

def status(lab):
    done = run(CLI + ["--name", lab.name, "status"])
    assert "Traceback" not in done.stderr
    return done


def wait_status_ok(lab, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        done = status(lab)
        if done.returncode == 0 or time.monotonic() > deadline:
            return done
        time.sleep(0.1)


@pytest.mark.parametrize("own_lab", ["st"], indirect=True)
def test_status_exits_1_and_names_what_is_wrong(own_lab):
    lab = own_lab
    assert lab.up() is True
    done = status(lab)
    assert done.returncode == 0 and done.stdout.startswith(f"lab {lab.name}: up ")
    assert "services: answer from the client" in done.stdout

    # A dead server that nobody restarts (its supervisor is stopped).
    pids = json.loads((open(os.path.join(lab.rundir, "pids.json")).read()))
    supervisor, httpd = pids["supervisor"], pids["services"]["httpd-0"]
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(httpd, signal.SIGKILL)
        assert procs.wait_exit(httpd, 5.0)
        done = status(lab)
        assert done.returncode == 1
        assert f"lab {lab.name}: NOT healthy" in done.stdout
        assert f"problem: httpd-0 (pid {httpd}) not running" in done.stdout
        assert f"problem: supervisor (pid {supervisor}) not running (stopped)" in done.stdout
        info = json.loads(run(CLI + ["--name", lab.name, "status", "--json"]).stdout)
        assert info["up"] is False and info["servers"]["httpd-0"]["alive"] is False
    finally:
        os.kill(supervisor, signal.SIGCONT)
    # The supervisor restarts it, and the restarted server stays up.
    done = wait_status_ok(lab)
    assert done.returncode == 0, done.stdout
    new = lab.status()["servers"]["httpd-0"]["pid"]
    assert new != httpd and not procs.wait_exit(new, 2.0)
    assert status(lab).returncode == 0

    # A missing route, then a missing address: named; `up` repairs the lab.
    for ns, argv, problem in [
            (lab.client_netns, ["ip", "route", "del", "198.18.0.0/15"],
             f"{lab.client_netns}: route 198.18.0.0/15 via 198.18.0.1 missing"),
            (lab.server_netns, ["ip", "-6", "addr", "del", "2001:db8:0:2::2/64", "dev", "eth0"],
             f"{lab.server_netns}: address 2001:db8:0:2::2/64 missing on eth0"),
            (lab.mbox_netns, ["ip", "link", "set", "s0", "down"],
             f"{lab.mbox_netns}: interface s0 is down")]:
        netns.run(ns, argv)
        done = status(lab)
        assert done.returncode == 1 and f"problem: {problem}" in done.stdout, done.stdout
        assert not lab.is_up()
        done = run(CLI + ["--name", lab.name, "exec", "--", "true"])
        one_error_line(done, 1, "not healthy", problem)
        assert lab.up() is True                         # rebuilt
        assert status(lab).returncode == 0


def test_status_of_a_lab_that_is_not_up():
    name = lab_name("no")
    done = status(Lab(name))
    assert done.returncode == 1 and done.stdout.startswith(f"lab {name}: down")
    assert not os.path.exists(f"/run/pathspider-lab/{name}.lock")
