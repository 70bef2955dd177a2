"""pytest fixtures for tests that measure through the lab.

pytest finds them without any conftest: the package registers the plugin
:mod:`pathspider.testing.pytest_plugin` (a ``pytest11`` entry point), which offers these
fixtures and the ``root`` marker in any source tree. (Listing this module in
``pytest_plugins``, as was needed before, still works.)

- ``lab`` (session): the lab named by ``$PATHSPIDER_LAB_NAME`` (else the deprecated
  ``$PATHSPIDER_TEST_LAB``, else ``psl``: the name ``pathspider lab`` uses too), brought up
  once per session. It is taken down at the end of the session, also when tests fail, only
  if this session built it: a lab that was already up (e.g. one you brought up with
  ``pathspider lab up`` to run the tests again and again) is left up, and one that was there
  but broken is repaired and left up. Skips when not root. Test runs in parallel must use
  different names.
- ``lab_client_state`` (function): the same lab, with the client namespace's sysctls and
  nftables ruleset snapshotted before the test and compared after it; a test that leaves them
  changed fails (and the state is restored so later tests are not affected). Use it for
  plugin tests, to prove that plugins restore what they change.
- ``lab_netem`` (function): the same lab; any delay or loss the test sets on the path is
  cleared afterwards.
- ``lab_vantages`` (module): the same lab with :data:`VANTAGES` (3) vantages, v1..v3 (v2's
  access link bleaches ECN); at the end of the module the lab gets back the number of
  vantages it had (0 normally), so other tests see the lab's usual shape.
"""
import difflib
import json
import logging
import os

import pytest

from .lab import DEFAULT_NAME, DEPRECATED_NAME_ENV, NAME_ENV, Lab, LabError, default_name

log = logging.getLogger("pathspider.lab")

#: Old names of this module (the variable is now the one the ``pathspider lab`` command reads).
LAB_ENV = NAME_ENV
DEFAULT_TEST_LAB = DEFAULT_NAME

#: How many vantages ``lab_vantages`` gives the lab.
VANTAGES = 3

__all__ = ["lab", "lab_client_state", "lab_netem", "lab_vantages", "lab_name", "NAME_ENV",
           "DEPRECATED_NAME_ENV", "DEFAULT_NAME"]


def lab_name():
    """The name of the session's lab (see the module docstring)."""
    return default_name()


@pytest.fixture(scope="session")
def lab():
    """The session's lab, up; taken down at session end only if this session built it."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, nftables, raw sockets)")
    the_lab = Lab(lab_name())
    try:
        done = the_lab.ensure_up()
    except LabError as exc:
        pytest.fail(f"cannot bring the test lab up: {exc}", pytrace=False)
    try:
        yield the_lab
    finally:
        if done == "built":
            the_lab.down()
        else:
            log.info("lab %s was there before the session (%s); left up", the_lab.name,
                     "repaired" if done == "rebuilt" else "unchanged")


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


@pytest.fixture(scope="module")
def lab_vantages(lab):
    """The lab with :data:`VANTAGES` vantages; the vantages it had before are put back at the
    end of the module (the last ones added or removed; the rest of the lab is not touched)."""
    before = len(lab.vantage_names())
    try:
        lab.set_vantages(VANTAGES)
    except LabError as exc:
        pytest.fail(f"cannot give the test lab {VANTAGES} vantages: {exc}", pytrace=False)
    try:
        yield lab
    finally:
        lab.set_vantages(before)
