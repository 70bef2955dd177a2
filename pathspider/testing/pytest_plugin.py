"""The pytest plugin of pathspider: the ``root`` marker and the lab fixtures, in any tree.

Registered by the package through a ``pytest11`` entry point named after this module, so
pytest loads it in every session of an environment where pathspider is installed: no
``conftest.py`` and no ``pytest_plugins`` line is needed. Naming it again (``-p
pathspider.testing.pytest_plugin``, or ``pytest_plugins = ["pathspider.testing.pytest_plugin"]``
for environments with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``) is harmless: pytest skips a plugin
name it already has. ``-p no:pathspider.testing.pytest_plugin`` turns it off.

- The ``root`` marker: ``@pytest.mark.root`` (or ``pytestmark = pytest.mark.root``) marks a
  test that needs root (network namespaces, sysctls, packet capture); when pytest does not
  run as root such tests are skipped with that reason.
- The fixtures ``lab``, ``lab_client_state``, ``lab_netem`` and ``lab_vantages`` of
  :mod:`pathspider.lab.fixtures`. The lab's name is ``$PATHSPIDER_LAB_NAME`` (the variable
  ``pathspider lab`` reads; the old ``$PATHSPIDER_TEST_LAB`` is still read when it is unset,
  but deprecated), else ``psl``. The session fixture takes the lab down at the end only if it
  built it.
"""
import os

import pytest

from pathspider.lab.fixtures import (lab, lab_client_state, lab_netem,  # noqa: F401 (fixtures)
                                      lab_vantages)

ROOT_MARKER = "root"
SKIP_REASON = "needs root: network namespaces, sysctls and packet capture"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{ROOT_MARKER}: needs root (network namespaces, sysctls, packet capture); "
                   f"skipped otherwise")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker(ROOT_MARKER) is not None:
            item.add_marker(skip)
