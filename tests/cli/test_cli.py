"""The pathspider command line, run as a real process: help, errors, plugin discovery, input
handling, and the example plugin of the plugin guide."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PATHSPIDER = [sys.executable, "-m", "pathspider.run"]
EXAMPLE = REPO / "examples" / "pathspider-example"

# A third-party plugin with no packet capture (dummy observer): its records carry the job.
CLITEST_PLUGIN = textwrap.dedent('''
    import collections
    from pathspider.base import SynchronizedSpider, PluggableSpider, NO_FLOW, Conn
    from pathspider.observer.dummy import Observer

    Rec = collections.namedtuple("Rec", ["ip", "port", "rport", "rank", "config", "ok"])

    class CliTest(SynchronizedSpider, PluggableSpider):
        def __init__(self, worker_count, libtrace_uri, args):
            super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
            self.conn_timeout = 2
        def config_zero(self): pass
        def config_one(self): pass
        def connect(self, job, pcs, config):
            return self.tcp_connect(job)
        def post_connect(self, job, conn, pcs, config):
            if conn.state == Conn.OK:
                conn.client.close()
            return Rec(job[0], conn.port, job[1], job[3], config, conn.state == Conn.OK)
        def create_observer(self):
            return Observer()
        def merge(self, flow, res):
            self.outqueue.put(dict(res._asdict(), observed=flow is not NO_FLOW))
        @staticmethod
        def register_args(subparsers):
            parser = subparsers.add_parser("clitest", help="test plugin")
            parser.set_defaults(spider=CliTest)
''')


def plugin_tree(root, name, source):
    plugins = root / "pathspider" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    for init in (root / "pathspider" / "__init__.py", plugins / "__init__.py"):
        init.write_text("from pkgutil import extend_path\n"
                        "__path__ = extend_path(__path__, __name__)\n")
    (plugins / f"{name}.py").write_text(source)
    return root


def run(args, pythonpath=(), stdin="", cwd=None, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [str(REPO)])
    return subprocess.run(PATHSPIDER + list(args), input=stdin, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    sock.close()


def test_no_arguments_prints_help_and_exits_1():
    proc = run([])
    assert proc.returncode == 1
    assert "usage: pathspider" in proc.stderr and "COMMAND" in proc.stderr


def test_help_lists_plugins_and_utilities():
    proc = run(["--help"])
    assert proc.returncode == 0
    for command in ("ecn", "dnsresolv", "observe", "lab", "--interface", "--workers"):
        assert command in proc.stdout


def test_unknown_plugin_is_one_clear_line():
    proc = run(["nosuchplugin"])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no plugin or command named 'nosuchplugin'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_broken_third_party_plugin_is_reported_and_others_still_work(tmp_path, listener):
    tree = plugin_tree(tmp_path / "thirdparty", "brokenplug",
                       "import this_module_does_not_exist\n")
    plugin_tree(tree, "clitest", CLITEST_PLUGIN)
    proc = run(["--help"], pythonpath=[tree])
    assert "brokenplug" in proc.stdout and "this_module_does_not_exist" in proc.stdout
    assert "clitest" in proc.stdout
    proc = run(["brokenplug"], pythonpath=[tree])
    assert proc.returncode == 1 and "brokenplug" in proc.stderr
    assert "this_module_does_not_exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(["-i", "lo", "--allow", "clitest"], pythonpath=[tree],
               stdin=f"127.0.0.1,{listener},h,1\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    assert "brokenplug" in proc.stderr          # warned about on every run


def test_bad_input_rows_are_warned_with_line_numbers_and_the_run_goes_on(tmp_path, listener):
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    targets = "\n".join([
        f"127.0.0.1,{listener},good1,1",
        "127.0.0.1,notaport,bad,2",
        "",
        "999.1.1.1,80,bad,3",
        f"127.0.0.1,{listener},good2,4",
        "lonely",
    ]) + "\n"
    proc = run(["-i", "lo", "--allow", "-w", "4", "clitest"], pythonpath=[tree], stdin=targets)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted((r["rank"], r["config"]) for r in records) == [
        ("1", 0), ("1", 1), ("4", 0), ("4", 1)]
    assert all(r["ok"] for r in records)
    for line_number in (2, 4, 6):
        assert f"line {line_number} skipped" in proc.stderr
    assert "3 bad rows skipped" in proc.stderr


def test_input_and_output_files(tmp_path, listener):
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    (tmp_path / "in.csv").write_text(f"127.0.0.1,{listener},h,1\n")
    proc = run(["-i", "lo", "--allow", "--input", str(tmp_path / "in.csv"), "--output",
                str(tmp_path / "out.ndjson"), "clitest"], pythonpath=[tree])
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "out.ndjson").read_text().splitlines()) == 2


def test_interface_that_does_not_exist_is_one_clear_error(tmp_path):
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    proc = run(["-i", "nosuch0", "clitest"], pythonpath=[tree], stdin="")
    assert proc.returncode == 1
    assert "interface 'nosuch0' does not exist or is not up" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_input_file_is_one_clear_error(tmp_path):
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    proc = run(["-i", "lo", "--input", str(tmp_path / "nope.csv"), "clitest"],
               pythonpath=[tree])
    assert proc.returncode == 1 and "cannot read --input" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.root
def test_example_plugin_runs_as_the_guide_says(listener):
    """``cd examples/pathspider-example && PYTHONPATH=. pathspider example`` with a real
    capture on loopback: both connections observed and merged."""
    proc = run(["-i", "lo", "--allow", "-w", "2", "example", "--timeout", "2"], pythonpath=["."],
               stdin=f"127.0.0.1,{listener},local,1\n", cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["config"] for r in records) == [0, 1]
    for record in records:
        assert record["observed"] is True and record["connstate"] is True
        assert record["dip"] == "127.0.0.1" and record["dp"] == listener
        assert record["pkt_fwd"] >= 2 and record["pkt_rev"] >= 1


def test_example_plugin_installs_as_its_own_distribution(tmp_path):
    """pip-installing the example tree puts its plugin into the shared namespace package."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (target / "pathspider" / "plugins" / "example.py").exists()
    proc = run(["example", "--help"], pythonpath=[target])
    assert proc.returncode == 0 and "--timeout" in proc.stdout


def test_first_interrupt_finishes_started_jobs_and_exits_130(tmp_path):
    """SIGINT: targets stop being read, started jobs finish and are written, status 130."""
    import signal

    from loopback import LoopbackTargets

    targets = LoopbackTargets()
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{REPO}")
    (tmp_path / "in.csv").write_text(
        "".join(f"127.0.0.1,{targets.silent},h,{i}\n" for i in range(200)))
    try:
        proc = subprocess.Popen(PATHSPIDER + ["-v", "-i", "lo", "--allow", "-w", "4", "--input",
                                              str(tmp_path / "in.csv"), "clitest"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        seen = []
        for line in proc.stderr:                 # wait until the first connects have started
            seen.append(line)
            if "applying configuration 0" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        err = "".join(seen) + err
    finally:
        targets.close()
    assert proc.returncode == 130, err
    records = [json.loads(line) for line in out.splitlines()]
    assert 0 < len(records) < 400 and len(records) % 2 == 0
    assert "queued jobs were not started" in err


@pytest.mark.root
def test_no_permission_to_capture_is_one_clear_error():
    """Without CAP_NET_RAW the Observer cannot open the interface: one line, status 1."""
    env = dict(os.environ, PYTHONPATH=f".{os.pathsep}{REPO}")
    proc = subprocess.run(["setpriv", "--bounding-set=-net_raw,-net_admin", "--"]
                          + PATHSPIDER + ["-i", "lo", "example"],
                          input="127.0.0.1,9,h,1\n", capture_output=True, text=True,
                          env=env, cwd=EXAMPLE, timeout=60)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "needs CAP_NET_RAW" in errors[0]
    assert "Traceback" not in proc.stderr


def test_a_sub_command_without_its_spider_says_how_to_fix_it(tmp_path):
    source = CLITEST_PLUGIN.replace("parser.set_defaults(spider=CliTest)", "pass")
    tree = plugin_tree(tmp_path / "tp", "clitest", source)
    proc = run(["-i", "lo", "clitest"], pythonpath=[tree])
    assert proc.returncode == 1
    assert "parser.set_defaults(spider=ThePluginClass)" in proc.stderr
    assert "Traceback" not in proc.stderr
