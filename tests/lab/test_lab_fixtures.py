"""The pytest fixtures other tests rely on, run for real in an inner pytest session (which
finds them through the package's pytest11 entry point, with no conftest): the session lab
comes up and goes down (also when tests fail), and ``lab_client_state`` fails a test that
leaves the client namespace changed, then restores it."""
import os
import subprocess
import sys
import textwrap

import pytest

from pathspider.lab import netns
from pathspider.lab.lab import DEPRECATED_NAME_ENV, NAME_ENV, ROLES, default_name

pytestmark = pytest.mark.root

INNER = textwrap.dedent("""
    from pathspider.lab import netns

    def test_restores(lab_client_state):
        ns = lab_client_state.client_netns
        old = netns.sysctl_get(ns, "net.ipv4.tcp_ecn")
        netns.sysctl_set(ns, "net.ipv4.tcp_ecn", 1)
        netns.sysctl_set(ns, "net.ipv4.tcp_ecn", old)

    def test_leaves_sysctl(lab_client_state):
        netns.sysctl_set(lab_client_state.client_netns, "net.ipv4.tcp_ecn", 1)

    def test_leaves_nft_table(lab_client_state):
        lab_client_state.exec_in_client(["nft", "add", "table", "inet", "leftover"], check=True)

    def test_state_was_restored(lab):
        snap = lab.client_snapshot()
        assert snap["sysctls"]["net.ipv4.tcp_ecn"] == "2"
        assert "leftover" not in snap["nftables"]

    def test_fails_on_purpose(lab):
        assert False, "deliberate failure"
""")


def test_fixtures_in_an_inner_session(tmp_path):
    name = default_name() + "-fx"
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k != DEPRECATED_NAME_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--rootdir",
         str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=dict(env, **{NAME_ENV: name}), capture_output=True, text=True,
        timeout=180)
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 failed, 4 passed, 2 errors" in out  # 2 pass the call, error at teardown
    assert "ERROR test_inner.py::test_leaves_sysctl" in out
    assert "sysctl net.ipv4.tcp_ecn: 2 -> 1" in out
    assert "ERROR test_inner.py::test_leaves_nft_table" in out and "+table inet leftover" in out
    assert "PASSED test_inner.py::test_state_was_restored" in out
    assert not any(netns.exists(f"{name}-{role}") for role in ROLES)
