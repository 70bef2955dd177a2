"""Target lists for the lab: rows ``[ip, port, hostname, rank]`` spread over impairment classes.

Pure functions (no root, no running lab needed): the lab's addresses are fixed by
:mod:`pathspider.lab.plan`, and every hostname is one the lab DNS resolves to that row's
addresses. Rows are lists, exactly the jobs pathspider's engine takes: ``[ip (str), port
(int), hostname (str), rank (str)]``, the types pathspider's CSV target reader gives (rank is
text in PATHspider 1.0's jobs), so a row is the same whether it came from here or from a file.
"""
import csv
import json

from . import names, plan

FAMILIES = {"both": (4, 6), "4": (4,), "6": (6,)}


def parse_classes(classes):
    """A list of class names from None (all), a comma-separated string or an iterable."""
    if classes is None:
        return list(plan.CLASS_NAMES)
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = list(classes)
    unknown = [c for c in classes if c not in plan.CLASSES]
    if unknown or not classes:
        raise ValueError(f"unknown impairment class(es) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(plan.CLASS_NAMES)}")
    return classes


def parse_family(family):
    """The IP versions for ``family`` ("both", "4", "6", or 4 / 6)."""
    key = str(family).lower().removeprefix("ipv")
    if key not in FAMILIES:
        raise ValueError(f"family must be one of both, 4, 6; got {family!r}")
    return FAMILIES[key]


def make_targets(count=None, classes=None, family="both", port=plan.HTTP_PORT):
    """``count`` rows cycling over (class, family) pairs; host numbers go up each round.

    ``count`` None gives one row per (class, family) pair. Rank is the 1-based row number as
    a string (``"1"``, ``"2"``...), as the CSV target reader gives it.
    Raises ValueError for a port outside 1..65535, or if more rows are asked for than the
    chosen classes and families have distinct addresses.
    """
    classes = parse_classes(classes)
    families = parse_family(family)
    combos = [(c, f) for c in classes for f in families]
    if count is None:
        count = len(combos)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    limit = len(combos) * len(plan.HOSTS)
    if not 0 <= int(count) <= limit:
        raise ValueError(f"count must be between 0 and {limit} ({len(plan.HOSTS)} hosts for "
                         f"each of {len(classes)} class(es) and {len(families)} address "
                         f"famil{'y' if len(families) == 1 else 'ies'}), got {count}")
    rows = []
    for i in range(int(count)):
        cls, fam = combos[i % len(combos)]
        host = plan.HOSTS[i // len(combos)]
        rows.append([str(plan.target_address(cls, host, fam)), int(port),
                     names.hostname(cls, host), str(i + 1)])
    return rows


def write_csv(rows, out):
    """Write rows as CSV ``ip,port,hostname,rank`` (no header, as pathspider reads it)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)


def write_ndjson(rows, out):
    """Write rows as PATHspider 2 ndjson jobs: ``{"dip", "dp", "domain", "rank"}`` per line
    (``dp`` a number; ``rank`` a string, as in the rows and the CSV)."""
    for ip, port, hostname, rank in rows:
        out.write(json.dumps({"dip": ip, "dp": int(port), "domain": hostname,
                              "rank": str(rank)}))
        out.write("\n")
