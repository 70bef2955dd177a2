"""A plugin's own source tree, outside this repository, tests itself with pathspider's pytest
plugin: no conftest.py, no ``pytest_plugins``; the ``root`` marker, the ``lab`` fixture and
the packet builder come with the installed package (``pytest11`` entry point).

Each test builds such a tree under a temporary directory and runs ``python -m pytest`` in it
as a separate process, with ``$PATHSPIDER_LAB_NAME`` (or the deprecated
``$PATHSPIDER_TEST_LAB``) naming a lab of this test's own: the session fixture takes the lab
down afterwards if it built it, and leaves it up if it was up before.
"""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pathspider.lab import Lab, LabError, netns
from pathspider.lab.lab import DEPRECATED_NAME_ENV, NAME_ENV, NAME_MAX, default_name

pytestmark = pytest.mark.root

EXTEND_PATH = "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"

TEST_MINE = textwrap.dedent('''
    """A plugin author's tests: a chain unit test on a crafted capture, and one on the lab."""
    import os

    import pytest

    from pathspider.lab import probe
    from pathspider.observer.basic import basic_count, basic_flow
    from pathspider.observer.evil import evil_extract, evil_setup
    from pathspider.testing.packets import ACK, SYN, observe, tcp4, write_pcap

    C, S = "198.18.0.2", "198.18.72.1"


    def test_evil_bit_chain_on_a_crafted_capture(tmp_path):
        pcap = write_pcap(tmp_path / "evil.pcap", [
            (1.0, tcp4(C, S, 40000, 80, SYN, evil=True)),
            (1.1, tcp4(S, C, 80, 40000, SYN | ACK, seq=7000, ack=1001)),
        ])
        [rec] = observe(pcap, new_flow_chain=[basic_flow, evil_setup],
                        ip4_chain=[basic_count, evil_extract])
        assert (rec["first"], rec["last"], rec["pkt_fwd"], rec["pkt_rev"]) == (1.0, 1.1, 1, 1)
        assert rec["evilbit_syn_fwd"] is True and rec["evilbit_syn_rev"] is False


    @pytest.mark.root
    def test_on_the_lab(lab):
        assert lab.name == os.environ["EXPECTED_LAB"] and lab.is_up()
        ip, port, host, rank = lab.targets(1, "clean", "4")[0]
        assert rank == "1"
        status, body = lab.call_in_client(probe.http_get, ip, port)
        assert status == 200 and ip.encode() in body
''')


def lab_name(suffix):
    name = f"{default_name()}-{suffix}"
    if len(name) > NAME_MAX:
        pytest.fail(f"lab name {default_name()!r} too long for {name!r} (at most {NAME_MAX} "
                    f"characters)", pytrace=False)
    return name


def make_tree(base):
    """The plugin author's tree: a namespace package and a test file, no conftest."""
    plugins = base / "pathspider" / "plugins"
    plugins.mkdir(parents=True)
    (base / "pathspider" / "__init__.py").write_text(EXTEND_PATH)
    (plugins / "__init__.py").write_text(EXTEND_PATH)
    (base / "tests").mkdir()
    (base / "tests" / "test_mine.py").write_text(TEST_MINE)
    assert not list(base.rglob("conftest.py")) and not (base / "pytest.ini").exists()
    assert Path(__file__).resolve().parents[2] not in base.resolve().parents
    return base


#: Runs pytest as ``python -m pytest`` does, but with ``os.geteuid`` answering as user nobody
#: does (the interpreter may live where nobody cannot read it, as here under /root).
AS_NOBODY = ("import os, sys, pytest; os.geteuid = lambda: 65534; "
             "sys.exit(pytest.console_main())")


def run_pytest(tree, env, as_nobody=False):
    """``python -m pytest`` in ``tree`` as a new process; ``env``: variables to set (None:
    unset) over a clean environment (no PYTHONPATH, no pytest settings)."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", NAME_ENV, DEPRECATED_NAME_ENV)
               and not k.startswith("PYTEST_")}
    environ.update({k: v for k, v in env.items() if v is not None})
    start = ["-c", AS_NOBODY] if as_nobody else ["-m", "pytest"]
    return subprocess.run([sys.executable, *start, "-p", "no:cacheprovider", "-rA",
                           "-W", "always::DeprecationWarning", "tests"],
                          cwd=tree, env=environ, capture_output=True, text=True, timeout=300)


def is_down(name):
    lab = Lab(name)
    return (not any(netns.exists(ns) for ns in lab.namespaces.values())
            and not os.path.exists(lab.rundir))


@pytest.fixture
def own_lab(request):
    """A lab name of this test's own; whatever is left of it is removed afterwards."""
    lab = Lab(lab_name(request.param))
    lab.down()                                  # a leftover of an earlier, interrupted run
    yield lab
    try:
        lab.down()
    except LabError:
        pass
    assert is_down(lab.name)


@pytest.mark.parametrize("own_lab", ["ot"], indirect=True)
def test_out_of_tree_tests_build_the_lab_and_take_it_down(own_lab, tmp_path):
    tree = make_tree(tmp_path / "my-plugin")
    assert is_down(own_lab.name)
    done = run_pytest(tree, {NAME_ENV: own_lab.name, "EXPECTED_LAB": own_lab.name})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED tests/test_mine.py::test_on_the_lab" in done.stdout
    assert "PASSED tests/test_mine.py::test_evil_bit_chain_on_a_crafted_capture" in done.stdout
    assert "2 passed" in done.stdout and f"${DEPRECATED_NAME_ENV}" not in done.stdout
    assert is_down(own_lab.name)                # the fixture built it, so it took it down


@pytest.mark.parametrize("own_lab", ["ou"], indirect=True)
def test_out_of_tree_tests_leave_a_lab_that_was_up(own_lab, tmp_path):
    tree = make_tree(tmp_path / "my-plugin")
    up = subprocess.run([sys.executable, "-m", "pathspider.lab.cli", "up", "--name",
                         own_lab.name], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    inodes = [netns.inode(ns) for ns in own_lab.namespaces.values()]
    # The deprecated variable alone still names the lab (with a warning).
    done = run_pytest(tree, {DEPRECATED_NAME_ENV: own_lab.name, "EXPECTED_LAB": own_lab.name})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED tests/test_mine.py::test_on_the_lab" in done.stdout and "2 passed" in done.stdout
    assert f"${DEPRECATED_NAME_ENV} is deprecated" in done.stdout
    assert own_lab.is_up()                      # still up: the session did not build it...
    assert [netns.inode(ns) for ns in own_lab.namespaces.values()] == inodes  # ...nor rebuild


@pytest.mark.parametrize("own_lab", ["on"], indirect=True)
def test_out_of_tree_tests_skip_root_tests_when_not_root(own_lab, tmp_path):
    tree = make_tree(tmp_path / "my-plugin")
    done = run_pytest(tree, {NAME_ENV: own_lab.name, "EXPECTED_LAB": own_lab.name},
                      as_nobody=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout
    # skipped by the marker (the lab fixture would say "the lab needs root")
    assert re.search(r"SKIPPED \[1\] tests/test_mine.py:\d+: needs root: network "
                     r"namespaces, sysctls and packet capture", done.stdout), done.stdout
    assert is_down(own_lab.name)


@pytest.mark.parametrize("listed", ["pathspider.testing.pytest_plugin",
                                    "pathspider.lab.fixtures"])
def test_listing_the_plugin_in_a_conftest_too_is_harmless(tmp_path, listed):
    """Trees that load the plugin (or, as before, the fixtures module) themselves keep
    working: no "plugin already registered" error, no second root marker or fixture run."""
    tree = make_tree(tmp_path / "my-plugin")
    (tree / "conftest.py").write_text(f"pytest_plugins = [{listed!r}]\n")
    done = run_pytest(tree, {NAME_ENV: "unused"}, as_nobody=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout
