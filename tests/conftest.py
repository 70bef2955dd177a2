"""Shared pytest configuration: markers for tests that need root and network namespaces."""
import os

import pytest

pytest_plugins = ["pathspider.lab.fixtures"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "root: needs root (network namespaces, sysctls, capture); skipped otherwise")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: network namespaces, sysctls and packet capture")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
