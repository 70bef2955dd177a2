"""pytest fixtures for tests that measure through the lab (loaded by tests/conftest.py).

- ``lab`` (session): the lab named by ``$PATHSPIDER_TEST_LAB`` (default ``pst``), brought up
  once per session and taken down at the end, also when tests fail. Skips when not root.
  Test runs in parallel must use different names.
- ``lab_client_state`` (function): the same lab, with the client namespace's sysctls and
  nftables ruleset snapshotted before the test and compared after it; a test that leaves them
  changed fails (and the state is restored so later tests are not affected). Use it for
  plugin tests, to prove that plugins restore what they change.
- ``lab_netem`` (function): the same lab; any delay or loss the test sets on the path is
  cleared afterwards.
"""
import difflib
import json
import os

import pytest

from .lab import Lab, LabError

LAB_ENV = "PATHSPIDER_TEST_LAB"
DEFAULT_TEST_LAB = "pst"


@pytest.fixture(scope="session")
def lab():
    """The session's lab, up; removed at session end."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, nftables, raw sockets)")
    the_lab = Lab(os.environ.get(LAB_ENV, DEFAULT_TEST_LAB))
    try:
        the_lab.up()
    except LabError as exc:
        pytest.fail(f"cannot bring the test lab up: {exc}", pytrace=False)
    try:
        yield the_lab
    finally:
        the_lab.down()


def _describe(before, after):
    """A readable diff of two client snapshots."""
    lines = []
    for key in sorted(set(before["sysctls"]) | set(after["sysctls"])):
        old, new = before["sysctls"].get(key), after["sysctls"].get(key)
        if old != new:
            lines.append(f"sysctl {key}: {old} -> {new}")
    if before["nftables"] != after["nftables"]:
        lines.append("nftables ruleset changed:")
        lines += difflib.unified_diff(before["nftables"].splitlines(),
                                      after["nftables"].splitlines(), "before", "after",
                                      lineterm="")
    return "\n".join(lines) or json.dumps(after)


@pytest.fixture
def lab_client_state(lab):
    """The lab; fails the test if it leaves the client namespace's state changed."""
    before = lab.client_snapshot()
    yield lab
    after = lab.client_snapshot()
    if after != before:
        lab.restore_client(before)
        pytest.fail("the test left the lab client namespace changed:\n"
                    + _describe(before, after), pytrace=False)


@pytest.fixture
def lab_netem(lab):
    """The lab; delay and loss set on the path during the test are cleared afterwards."""
    yield lab
    lab.clear_netem()
