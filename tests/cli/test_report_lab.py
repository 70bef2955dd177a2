"""``pathspider report`` and ``export --pto`` on real runs: an ecn and an mss run over every lab
class and both IP versions (``--format jobs``), reported together, the page looked at in
headless Chromium, the observation set checked against the runs.

``PATHSPIDER_REPORT_SCREENSHOT=docs/report-ecn-lab.png`` also keeps the screenshot there (how
the one in docs/report.md was made).
"""
import json
import os
import shutil
import sys

import pytest

from pathspider.lab import plan
from report_checks import (assert_looks_like_a_report, assert_self_contained,
                           check_observation_set, colour_count, needs_chromium, pathspider,
                           read_csv, screenshot)

pytestmark = pytest.mark.root

HOSTS = 3


def run(lab, tmp_path, plugin):
    """A real run of ``plugin`` in the lab's client namespace over HOSTS targets of every
    class and family, ``--format jobs``; the results file."""
    targets = tmp_path / "targets.csv"
    rows = lab.targets(len(plan.CLASS_NAMES) * HOSTS * 2)
    targets.write_text("".join(",".join(str(c) for c in row) + "\n" for row in rows))
    out = tmp_path / f"{plugin}.ndjson"
    argv = [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "-w", "32",
            "--format", "jobs", "--input", str(targets), "--output", str(out), plugin,
            "--timeout", "2"]
    done = lab.exec_in_client(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):
    where = tmp_path_factory.mktemp("report-lab")
    return where, run(lab, where, "ecn"), run(lab, where, "mss")


@pytest.fixture(scope="module")
def report(runs):
    where, ecn, mss = runs
    meta = where / "meta.json"
    meta.write_text(json.dumps({"version": "lab test", "plugin": "ecn",
                                "options": {"workers": 32, "timeout": 2}}))
    done = pathspider("report", "--metadata", str(meta), "--title",
                      "pathspider report: ecn and mss over every lab class", str(ecn), str(mss),
                      "-o", str(where / "report.html"))
    assert done.returncode == 0, done.stderr
    return where / "report.html", read_csv(where / "report.csv")


def test_numbers_per_class(report):
    _, numbers = report
    per_class = 2 * HOSTS
    for cls in plan.CLASS_NAMES:
        expected = {"ecn-syn-drop": "broken", "unreachable": "offline",
                    "blackhole": "offline"}.get(cls, "works")
        assert numbers[("ecn", "lab class", cls, f"ecn.connectivity.{expected}")] == (
            per_class, per_class), cls
    assert numbers[("mss", "lab class", "mss-rewrite", "mss.option.received.deflated")] == (
        per_class, per_class)
    assert ("mss", "lab class", "clean", "mss.option.received.deflated") not in numbers or \
        numbers[("mss", "lab class", "clean", "mss.option.received.deflated")][0] == 0
    assert numbers[("ecn", "IP version", "IPv6", "ecn.connectivity.works")][1] == \
        len(plan.CLASS_NAMES) * HOSTS


@needs_chromium
def test_the_page_as_a_person_sees_it(report, tmp_path):
    page, _ = report
    text = page.read_text()
    assert_self_contained(text)
    assert 'id="plugin-ecn"' in text and 'id="plugin-mss"' in text and "lab test" in text
    image = screenshot(page, tmp_path / "report.png", height=2300)
    assert_looks_like_a_report(image)
    assert colour_count(image, "#d0312d") > 1500        # ecn-syn-drop: broken, failed
    assert colour_count(image, "#8a8a8a") > 1500        # unreachable, blackhole: offline
    keep = os.environ.get("PATHSPIDER_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(tmp_path / "report.png", keep)


def test_pto_export_of_the_ecn_run(runs, tmp_path):
    _, ecn, _ = runs
    out = tmp_path / "observations.ndjson"
    done = pathspider("export", "--pto", str(ecn), "-o", str(out))
    assert done.returncode == 0, done.stderr
    meta, observations = check_observation_set(out)
    lines = [json.loads(line) for line in ecn.read_text().splitlines()]
    assert len(observations) == sum(len(set(line["conditions"])) for line in lines)
    assert meta["plugin"] == "ecn" and "ecn.connectivity.broken" in meta["_conditions"]
    sources = {obs[3].split(" ")[0] for obs in observations}
    assert sources == {str(plan.CLIENT_V4), f"[{plan.CLIENT_V6}]"}
    broken = {obs[3].split(" ")[-1].strip("[]") for obs in observations
              if obs[4] == "ecn.connectivity.broken"}
    assert {plan.class_of(ip) for ip in broken} == {"ecn-syn-drop"}
    assert len(broken) == 2 * HOSTS
