"""Helpers for the Observer-core tests: the struct packet crafter and the test captures.

Imported by name (pytest puts this directory on ``sys.path``); the basename is unique in the
test tree on purpose.
"""
import importlib.util
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "core")


def _load_crafter():
    spec = importlib.util.spec_from_file_location("core_make_pcaps",
                                                  os.path.join(DATA, "make_pcaps.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mk = _load_crafter()


def data_path(name):
    """Path of a file in tests/data/core."""
    return os.path.join(DATA, name)
