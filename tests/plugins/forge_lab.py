"""Helpers for the forging plugins' lab tests (evilbit, udpzero): targets of every lab class
in both families on a chosen port, a run through the real command line, per-class verdicts."""
import collections

from pathspider.lab import plan
from psd_lab_run import by_target, run_plugin

#: Every lab class.
ALL_CLASSES = list(plan.CLASS_NAMES)
OFFLINE = {"unreachable", "blackhole"}


def run_on_every_class(lab, tmp_path, port, plugin, *args, hosts=2, classes=ALL_CLASSES):
    """Run ``plugin`` over ``hosts`` targets of each class and family; returns
    ``({ip: {config: record}}, completed process)``."""
    rows = lab.targets(len(classes) * hosts * 2, classes, "both", port)
    records, proc = run_plugin(lab, tmp_path, rows, plugin, *args, workers=16)
    table = by_target(records)
    assert set(table) == {row[0] for row in rows}
    assert all(set(recs) == {0, 1} for recs in table.values())
    return table, proc


def per_class(table, conditions):
    """``{(class, family): Counter of the first condition}``, and the full condition lists."""
    counts = collections.defaultdict(collections.Counter)
    conds = {}
    for ip, recs in table.items():
        family = 6 if ":" in ip else 4
        conds[ip] = conditions(recs[0], recs[1])
        counts[plan.class_of(ip), family][conds[ip][0]] += 1
    return counts, conds


def expected_first(name, cls, family, impaired):
    """What the first condition of a target of ``cls`` must be: its plugin's ``impaired``
    ``(class, family)`` pairs broken, unreachable/blackhole offline, every other works."""
    if (cls, family) in impaired:
        return f"{name}.connectivity.broken"
    if cls in OFFLINE:
        return f"{name}.connectivity.offline"
    return f"{name}.connectivity.works"


def check_classes(table, conditions, name, impaired):
    """Every target shows what its class must; returns the per-class counts (for the docs)."""
    counts, conds = per_class(table, conditions)
    wrong = {ip: c for ip, c in conds.items()
             if c[0] != expected_first(name, plan.class_of(ip), 6 if ":" in ip else 4,
                                       impaired)}
    assert not wrong, wrong
    unobserved = [ip for ip, c in conds.items() if "pathspider.not_observed" in c]
    assert not unobserved, unobserved
    return counts, conds
