"""Summarise the raw output of a measurement: one table row per group of targets.

The plugins write one JSON record per connection (1.0 format: two per target, ``config`` 0 for
the baseline and 1 for the experiment). This module pairs the two records of each target,
interprets each pair with the plugin's ``conditions(baseline, experiment)`` function (2.0-style
condition strings), and counts targets per group and column::

    python -m pathspider.cli.summary --plugin ecn --group lab results.ndjson

Groups: ``lab`` (the lab's impairment class of the target address, see
:mod:`pathspider.lab.plan`), ``host`` (the hostname column of the target list), ``none``
(everything in one row). ``--by-family`` splits each group into IPv4 and IPv6.

A record that is not valid JSON is reported with its line number and skipped. A target whose
experiment record is missing (the TFO experiment is skipped when its baseline failed) is
interpreted with ``None`` in its place.
"""
import argparse
import collections
import importlib
import json
import logging
import sys
import textwrap

log = logging.getLogger("pathspider.cli.summary")

PLUGINS = ("ecn", "tfo", "dscp")


def _has(*conds):
    return lambda c, b, e: any(x in c for x in conds)


def _ok(which):
    """Predicate: the baseline (0) or experiment (1) connection was established."""
    return lambda c, b, e: bool(((b if which == 0 else e) or {}).get("connstate"))


def _icmp(c, b, e):
    return any((r or {}).get("icmp_unreachable") for r in (b, e))


#: Columns per plugin: (header, predicate(conditions, baseline, experiment)).
COLUMNS = {
    "ecn": [
        ("no ECN ok", _ok(0)),
        ("ECN ok", lambda c, b, e: _ok(1)(c, b, e) and "ecn.fallback.seen" not in c),
        ("works", _has("ecn.connectivity.works")),
        ("broken", _has("ecn.connectivity.broken")),
        ("fallback", lambda c, b, e: "ecn.fallback.seen" in c and _ok(1)(c, b, e)),
        ("transient", _has("ecn.connectivity.transient")),
        ("offline", _has("ecn.connectivity.offline")),
        ("negotiated", _has("ecn.negotiation.succeeded")),
        ("ECT seen", _has("ecn.ipmark.ect0.seen", "ecn.ipmark.ect1.seen")),
        ("CE seen", _has("ecn.ipmark.ce.seen")),
        ("ICMP unreach", _icmp),
        ("unobserved", _has("pathspider.not_observed")),
    ],
    "tfo": [
        ("baseline ok", _ok(0)),
        ("TFO ok", _ok(1)),
        ("works", _has("tfo.connectivity.works")),
        ("broken", _has("tfo.connectivity.broken")),
        ("offline", _has("tfo.connectivity.offline")),
        ("cookie", _has("tfo.cookie.received")),
        ("no cookie", _has("tfo.cookie.not_received")),
        ("SYN data acked", _has("tfo.syndata.acked")),
        ("ICMP unreach", _icmp),
        ("unobserved", _has("pathspider.not_observed")),
    ],
    "dscp": [
        ("unmarked ok", _ok(0)),
        ("marked ok", _ok(1)),
        ("works", lambda c, b, e: any(x.endswith(".connectivity.works") for x in c)),
        ("broken", lambda c, b, e: any(x.endswith(".connectivity.broken") for x in c)),
        ("offline", lambda c, b, e: any(x.endswith(".connectivity.offline") for x in c)),
        ("mark sent", lambda c, b, e: bool(e and e.get("observed")
                                           and e.get("fwd_syn_dscp") == e.get("codepoint"))),
        ("mark back", lambda c, b, e: bool(e and e.get("observed") and e.get("rev_syn_dscp")
                                           and e.get("rev_syn_dscp") == e.get("codepoint"))),
        ("0 back", lambda c, b, e: bool(e and e.get("observed")
                                        and e.get("rev_syn_dscp") == 0)),
        ("ICMP unreach", _icmp),
        ("unobserved", _has("pathspider.not_observed")),
    ],
}


#: One line per plugin explaining the columns, printed under the table.
LEGEND = {
    "ecn": ("no ECN ok / ECN ok: the connection without / with an ECN-setup SYN worked (a "
            "connection that only worked after the kernel retried without ECN does not count); "
            "works/broken/transient/offline: both / only without / only with / neither; "
            "fallback: the ECN SYN went unanswered and the kernel retried without ECN; "
            "negotiated: SYN-ACK with ECE; ECT/CE seen: marks on packets from the target."),
    "tfo": ("cookie: the cookie request got a cookie; SYN data acked: the data sent on the SYN "
            "with that cookie was acknowledged."),
    "dscp": ("mark sent: the experiment's SYN left with the codepoint; mark back / 0 back: the "
             "target's SYN-ACK carried the codepoint / 0."),
}


def read_records(stream, name="results"):
    """Yield the JSON records of an ndjson stream; bad lines are warned and skipped."""
    for lineno, line in enumerate(stream, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            log.warning("%s line %d: not JSON (%s); skipped", name, lineno, exc)
            continue
        if not isinstance(record, dict) or "config" not in record:
            log.warning("%s line %d: not a result record; skipped", name, lineno)
            continue
        yield record


def target_key(record):
    """What identifies a target across its two records."""
    return (record.get("dip"), record.get("dp"), record.get("host"), record.get("rank"))


def pair_records(records):
    """``[(key, baseline, experiment)]`` in order of first appearance; a missing side is None.

    Repeated targets are paired in order (the n-th baseline with the n-th experiment).
    """
    slots = collections.OrderedDict()
    for record in records:
        config = 1 if record.get("config") else 0
        key = target_key(record)
        pairs = slots.setdefault(key, [])
        for pair in pairs:
            if pair[config] is None:
                pair[config] = record
                break
        else:
            pair = [None, None]
            pair[config] = record
            pairs.append(pair)
    return [(key, b, e) for key, pairs in slots.items() for b, e in pairs]


def group_function(kind, by_family=False):
    """Map a target key to its group label."""
    if kind == "lab":
        from pathspider.lab.plan import class_of

        def base(key):
            try:
                return class_of(key[0]) or "other"
            except ValueError:
                return "other"
    elif kind == "host":
        def base(key):
            return key[2] or "-"
    else:
        def base(key):
            return "all"
    if not by_family:
        return base
    return lambda key: f"{base(key)} {'v6' if ':' in (key[0] or '') else 'v4'}"


def summarise(records, plugin="ecn", group="lab", by_family=False):
    """``{group: Counter(column -> targets)}`` (plus ``"targets"``), groups in order seen."""
    conditions = importlib.import_module(f"pathspider.plugins.{plugin}").conditions
    columns = COLUMNS[plugin]
    label = group_function(group, by_family)
    table = collections.OrderedDict()
    for key, baseline, experiment in pair_records(records):
        conds = conditions(baseline, experiment)
        counts = table.setdefault(label(key), collections.Counter())
        counts["targets"] += 1
        for header, predicate in columns:
            if predicate(conds, baseline, experiment):
                counts[header] += 1
    if group == "lab":
        table = collections.OrderedDict(sorted(table.items(), key=_lab_order))
    return table


def _lab_order(item):
    """Sort key: the lab plan's class order, then IPv4 before IPv6, unknown groups last."""
    from pathspider.lab.plan import CLASS_NAMES
    name, _, family = item[0].partition(" ")
    rank = CLASS_NAMES.index(name) if name in CLASS_NAMES else len(CLASS_NAMES)
    return rank, family


def format_table(table, plugin="ecn"):
    """Plain-text table: one row per group, a total row at the end."""
    headers = ["group", "targets"] + [h for h, _ in COLUMNS[plugin]]
    total = collections.Counter()
    rows = []
    for name, counts in table.items():
        total.update(counts)
        rows.append([name] + [str(counts.get(h, 0)) for h in headers[1:]])
    if len(table) > 1:
        rows.append(["total"] + [str(total.get(h, 0)) for h in headers[1:]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths)))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def main(args):
    """Print the summary table of ``args.results`` (or the global ``--input``); exit status."""
    path = getattr(args, "results", None) or getattr(args, "input", None) or "/dev/stdin"
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            table = summarise(read_records(stream, path), args.plugin, args.group,
                              args.by_family)
    except OSError as exc:
        log.error("summary: %s", exc)
        return 1
    print(format_table(table, args.plugin))
    print(textwrap.fill(LEGEND[args.plugin], width=100))
    return 0


def _add_options(parser):
    parser.add_argument("--plugin", choices=PLUGINS, default="ecn",
                        help="the measurement that wrote the results (default %(default)s)")
    parser.add_argument("--group", choices=["lab", "host", "none"], default="lab",
                        help="one row per lab impairment class (default), per hostname, or "
                             "one row for everything")
    parser.add_argument("--by-family", action="store_true",
                        help="split every group into IPv4 and IPv6")
    parser.add_argument("results", nargs="?", help="results file (default: --input or stdin)")


def register_args(subparsers):
    """Add the ``summary`` sub-command (for the ``pathspider`` CLI)."""
    parser = subparsers.add_parser("summary", help="Summarise ecn/tfo/dscp results per group")
    _add_options(parser)
    parser.set_defaults(func=main)
    return parser


def cli(argv=None):
    """``python -m pathspider.cli.summary``."""
    parser = argparse.ArgumentParser(prog="python -m pathspider.cli.summary",
                                     description=__doc__.split("\n\n")[0])
    _add_options(parser)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
