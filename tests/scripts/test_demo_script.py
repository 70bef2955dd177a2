"""scripts/demo.sh, the README's main command, run for real (without the install step)."""
import os
import subprocess
from pathlib import Path

import pytest

from pathspider.lab import netns, plan
from pathspider.lab.lab import ROLES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.root
def test_demo_measures_summarises_and_takes_the_lab_down(tmp_path):
    lab = f"psdd{os.getpid() % 10000}"
    results = tmp_path / "results.ndjson"
    env = dict(os.environ, DEMO_SKIP_INSTALL="1", DEMO_TARGETS="44", DEMO_TIMEOUT="1.5",
               PATHSPIDER_LAB_NAME=lab)
    try:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), str(results)],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        for role in ROLES:
            assert not netns.exists(f"{lab}-{role}"), "demo left its lab up"
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = results.read_text().splitlines()
    assert len(lines) == 88                       # two records per target
    table = {}
    for line in proc.stdout.splitlines():
        tokens = line.split()
        if tokens and tokens[0] not in ("group",) and len(tokens) > 2 and tokens[2].isdigit():
            if tokens[1] in ("v4", "v6"):
                table[f"{tokens[0]} {tokens[1]}"] = tokens[2:]
            elif tokens[0] == "total":
                table["total"] = tokens[1:]
    # 44 targets: two per class and family. Columns: targets, no ECN ok, ECN ok, works, broken
    for family in ("v4", "v6"):
        assert table[f"clean {family}"][:5] == ["2", "2", "2", "2", "0"]
        assert table[f"ecn-syn-drop {family}"][:5] == ["2", "2", "0", "0", "2"]
        assert table[f"blackhole {family}"][:3] == ["2", "0", "0"]
    assert table["total"][0] == "44"
    # --locate: the ECN-dropping and ECN-bleaching classes placed at the lab's hops.
    located = {line.split()[0]: line for line in proc.stdout.splitlines() if " at hop " in line}
    assert located["ecn-syn-drop"].split()[1:4] == [
        "dropped", "at", "hop"] and located["ecn-syn-drop"].split()[4] == \
        f"{plan.IMPAIRMENT_HOPS['ecn-syn-drop']}:", located
    assert located["ecn-bleach"].split()[4] == f"{plan.IMPAIRMENT_HOPS['ecn-bleach']}:", located
    assert set(located) <= {"ecn-syn-drop", "ecn-bleach"}, located
