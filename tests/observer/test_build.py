"""The compiled meter and its interpreted twin (pathspider.observer.build, setup.py).

The meter's modules are one source: compiled by setup.py when a compiler is there, run as they
are otherwise. These tests check which one runs, that the two give the same records and
counters on every golden capture, that running interpreted says so once, and that an edited
source next to an older build is reported. The interpreted twin is this checkout's package
copied without its extension files, run in a subprocess (an import cannot be undone in this
one). ``PATHSPIDER_EXPECT_METER`` (set by scripts/test.sh) says which meter this run must have.
"""
import ast
import importlib.machinery
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pathspider
from pathspider.observer import build
from pathspider.observer.build import meter_mode

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(pathspider.__file__).resolve().parent
GOLDEN = ROOT / "tests" / "data" / "golden"
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def test_the_meter_runs_whole_and_as_this_run_expects():
    mode = meter_mode()
    assert mode in ("compiled", "interpreted"), \
        "meter %s: run scripts/install.sh to rebuild it" % mode
    expected = os.environ.get("PATHSPIDER_EXPECT_METER")
    if expected:
        assert mode == expected


def test_setup_py_builds_the_modules_build_py_lists():
    setup_py = (ROOT / "setup.py").read_text()
    assert "build.py" in setup_py                  # it reads the list from there
    listed = ast.literal_eval(re.search(r"^METER_MODULES = (\([^)]*\))",
                                        (PACKAGE / "observer" / "build.py").read_text(),
                                        re.M).group(1))
    assert listed == build.METER_MODULES
    for name in listed:
        assert (PACKAGE / "observer" / (name + ".py")).exists(), name


def copy_package(dest, with_extensions):
    """This checkout's package under ``dest``; without extension modules if asked."""
    ignore = shutil.ignore_patterns("__pycache__", *(() if with_extensions else
                                                     ("*" + s for s in EXTENSIONS)))
    shutil.copytree(PACKAGE, dest / "pathspider", ignore=ignore)
    return dest


def run_python(tree, code):
    """Run ``code`` with ``tree`` first on the path (from a neutral directory)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PATHSPIDER_EXPECT_METER", None)
    return subprocess.run([sys.executable, "-c", code], cwd=str(tree), env=env,
                          capture_output=True, text=True, timeout=300)


GOLDEN_RUN = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
from pathlib import Path
from pathspider.observer import meter_mode
from pathspider.observer.chains import observer_for
golden = Path(sys.argv[1]) if len(sys.argv) > 1 else Path({golden!r})
manifest = json.loads((golden / "manifest.json").read_text())
out = {{"mode": meter_mode(), "runs": {{}}}}
for name in sorted(manifest):
    observer = observer_for("pcap:" + str(golden / name), manifest[name]["chains"])
    records = [list(rec.items()) for rec in observer.flows()]
    out["runs"][name] = [records, observer.stats()]
print(json.dumps(out))
"""


def golden_runs(tree):
    result = run_python(tree, GOLDEN_RUN.format(golden=str(GOLDEN)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def interpreted_tree(tmp_path_factory):
    return copy_package(tmp_path_factory.mktemp("interpreted"), with_extensions=False)


def test_interpreted_and_compiled_meters_give_the_same_records_and_counters(interpreted_tree):
    """Every golden capture, both meters: the same records in the same order (field order
    too) and the same counters. When this run is interpreted itself, both sides are."""
    interpreted, log = golden_runs(interpreted_tree)
    assert interpreted["mode"] == "interpreted"
    here = copy_package(interpreted_tree.parent / "here", with_extensions=True)
    current, _ = golden_runs(here)
    assert current["mode"] == meter_mode()
    assert sorted(interpreted["runs"]) == sorted(current["runs"])
    for name, (records, stats) in current["runs"].items():
        assert records, name
        assert interpreted["runs"][name] == [records, stats], name
    # the interpreted run said so, once for the whole process
    lines = [line for line in log.splitlines() if "interpreted meter" in line]
    assert len(lines) == 1 and lines[0].startswith("pathspider.observer.build: ")


def test_an_edited_source_beside_an_older_build_is_reported(tmp_path):
    if meter_mode() != "compiled":
        pytest.skip("this run has no compiled meter to make stale")
    tree = copy_package(tmp_path, with_extensions=True)
    observer = tree / "pathspider" / "observer"
    later = max(os.stat(path).st_mtime for path in observer.iterdir()) + 10
    os.utime(observer / "flowtable.py", (later, later))
    result = run_python(tree, "import logging\n"
                              "logging.basicConfig(format='%(name)s: %(message)s')\n"
                              "from pathspider.observer import build\n"
                              "print(build.meter_mode())\n"
                              "build.log_meter_mode()\n"
                              "build.log_meter_mode()\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "partly compiled (flowtable stale)"
    warnings = [line for line in result.stderr.splitlines() if "scripts/install.sh" in line]
    assert warnings == ["pathspider.observer.build: the Observer's meter is partly compiled "
                        "(flowtable stale): run scripts/install.sh again to rebuild it"]
