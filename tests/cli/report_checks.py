"""Helpers of the report tests: run ``pathspider report`` / ``export`` as a user does, render a
page in headless Chromium and look at the screenshot, check an observation set file."""
import csv
import ipaddress
import json
import re
import shutil
import subprocess
import sys

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/install.sh "
                                                               "installs Debian's as root)")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def pathspider(*argv, timeout=300):
    """Run ``python -m pathspider.run ARGV``; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "pathspider.run", *argv], capture_output=True,
                          text=True, timeout=timeout)


def read_csv(path):
    """``{(plugin, grouping, group, condition): (targets with it, targets)}``."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {(r["plugin"], r["grouping"], r["group"], r["condition"]):
            (int(r["targets_with"]), int(r["targets"])) for r in rows}


def screenshot(html_path, png_path, width=1300, height=2400):
    """Render ``html_path`` in headless Chromium (no network needed: the page is
    self-contained) and write a PNG screenshot; returns the Pillow image."""
    from PIL import Image
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-dev-shm-usage", "--disable-extensions",
         f"--screenshot={png_path}", f"--window-size={width},{height}",
         f"file://{html_path}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png_path.exists(), done.stderr[-2000:]
    return Image.open(png_path).convert("RGB")


def colour_count(image, colour, tolerance=12):
    """Pixels of ``image`` within ``tolerance`` of the ``#rrggbb`` colour."""
    target = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(n for n, rgb in image.getcolors(maxcolors=1 << 24)
               if all(abs(a - b) <= tolerance for a, b in zip(rgb, target)))


def assert_looks_like_a_report(image):
    """Not blank: many distinct colours, and large areas of the plots' bar colours."""
    colours = image.getcolors(maxcolors=1 << 24)
    assert len(colours) > 500, f"only {len(colours)} colours: a blank page?"
    white = sum(n for n, rgb in colours if min(rgb) >= 250)
    assert white < 0.9 * image.width * image.height, "the page is almost all white"
    assert colour_count(image, "#2e9d3a") > 5000, "no green 'works' bars"


def assert_self_contained(text):
    """No reference that would load anything: only data: URIs in src and href."""
    for attribute in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text):
        assert attribute.startswith("data:") or attribute.startswith("#"), attribute
    assert "<link" not in text and "@import" not in text and "url(" not in text


def check_observation_set(path):
    """Schema check of a PTO observation set file; returns (metadata, observations)."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    meta, observations = lines[0], lines[1:]
    assert isinstance(meta, dict) and all(isinstance(x, list) for x in observations)
    assert isinstance(meta["_sources"], list) and isinstance(meta["_analyzer"], str)
    assert meta["_conditions"] == sorted({obs[4] for obs in observations})
    for obs in observations:
        assert len(obs) in (5, 6) and all(isinstance(x, str) for x in obs), obs
        assert RFC3339.match(obs[1]) and RFC3339.match(obs[2]) and obs[1] <= obs[2], obs
        *source, star, target = obs[3].split(" ")
        assert star == "*" and len(source) <= 1, obs
        for element in source + [target]:
            ipaddress.ip_address(element.strip("[]"))
            assert (":" in element) == element.startswith("["), obs
        assert ":" not in obs[4] and re.match(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", obs[4]), obs
    if observations:
        assert meta["_time_start"] == min(o[1] for o in observations)
        assert meta["_time_end"] == max(o[2] for o in observations)
    return meta, observations
