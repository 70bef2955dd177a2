"""Summarise the raw output of a measurement: one table row per group of targets.

The plugins write one JSON record per connection (1.0 format: two per target, ``config`` 0 for
the baseline and 1 for the experiment). This module pairs the two records of each target,
interprets each pair with the plugin's ``conditions(baseline, experiment)`` (2.0-style condition
strings), and counts targets per group and column::

    pathspider summary --plugin ecn --group lab results.ndjson
    python -m pathspider.cli.summary --plugin ecn --group lab results.ndjson

What to count is the plugin's knowledge, not this module's: ``--plugin NAME`` picks, among the
plugins :func:`pathspider.engine.discovery.load_plugins` finds (third-party ones included), the
class that declares a summary: ``command_name`` NAME (set in the class itself, so that a
subclass registering another command does not stand in for its parent), ``summary_columns``
(``(header, predicate(conditions, baseline, experiment))`` pairs, one column each),
``summary_legend`` (printed under the table) and ``conditions`` (see
:mod:`pathspider.client.pluginkit`). The ``--plugin`` choices are those plugins' names.

Groups: ``lab`` (the lab's impairment class of the target address, see
:mod:`pathspider.lab.plan`; rows in the plan's class order), ``host`` (the hostname column of
the target list), ``none`` (everything in one row). ``--by-family`` splits each group into IPv4
and IPv6. Only the command line knows about the lab: :func:`summarise` takes any grouping
function.

Both output formats are read, told apart line by line (so a file of either, or a mix, works):
records of ``--format flows`` (one per connection, with ``config``) are paired as above; a line
of ``--format jobs`` (one per job, with ``flow_results``) is one target already, its
``conditions`` are the ones the run wrote (the plugin's ``conditions`` are asked only when the
line has none), and its baseline and experiment are its records with ``config`` 0 and 1 (or
the first and second, without ``config``).

A record that is not valid JSON is reported with its line number and skipped. A target whose
experiment record is missing (the TFO experiment is skipped when its baseline failed; a
single-connection plugin such as ``mss`` has none) is interpreted with ``None`` in its place.
"""
import argparse
import collections
import logging
import sys
import textwrap

from pathspider.cli import results
from pathspider.cli.results import (declares_summary, group_function, is_job_line,  # noqa: F401
                                    job_key, job_target, order_groups, read_records,
                                    target_key, targets)
from pathspider.engine.discovery import load_plugins

log = logging.getLogger("pathspider.cli.summary")

DEFAULT_PLUGIN = "ecn"

#: ``[(key, baseline, experiment)]`` of a list of records, in order of first appearance.
pair_records = results.pairs_in_order


def summary_plugins():
    """``{command name: plugin class}`` of the discovered plugins that declare a summary."""
    return results.summary_plugins(load_plugins)


def summarise(records, plugin, group):
    """``{group: Counter(column -> targets)}`` (plus ``"targets"``), groups in order seen (the
    groups of job lines first).

    ``records``: flow records and job lines (see :func:`targets`). ``plugin`` is the plugin
    class (its ``conditions`` and ``summary_columns``), ``group`` maps a target key (see
    :func:`target_key`) to the label of its row.
    """
    columns = plugin.summary_columns
    rows, seen = {}, ({}, {})

    def first_seen(key, is_job):
        seen[0 if is_job else 1].setdefault(group(key), None)

    for key, baseline, experiment, conds in targets(records, plugin, first_seen):
        counts = rows.setdefault(group(key), collections.Counter())
        counts["targets"] += 1
        for header, predicate in columns:
            if predicate(conds, baseline, experiment):
                counts[header] += 1
    return collections.OrderedDict((name, rows[name]) for name in {**seen[0], **seen[1]}
                                   if name in rows)


def format_table(table, plugin):
    """Plain-text table: one row per group, a total row at the end."""
    headers = ["group", "targets"] + [h for h, _ in plugin.summary_columns]
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


def _grouping(kind, by_family):
    """The group function for ``--group``, and the row order (None: order seen)."""
    if kind != "lab":
        return group_function(kind, by_family), None
    from pathspider.lab.plan import CLASS_NAMES, class_of
    return group_function(kind, by_family, class_of), CLASS_NAMES


def main(args):
    """Print the summary table of ``args.results`` (or the global ``--input``); exit status."""
    plugin = summary_plugins().get(args.plugin)
    if plugin is None:
        log.error("summary: no plugin named %r declares a summary", args.plugin)
        return 1
    group, order = _grouping(args.group, args.by_family)
    path = getattr(args, "results", None) or getattr(args, "input", None) or "/dev/stdin"
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            table = summarise(read_records(stream, path), plugin, group)
    except OSError as exc:
        log.error("summary: %s", exc)
        return 1
    if order is not None:
        table = order_groups(table, order)
    print(format_table(table, plugin))
    legend = getattr(plugin, "summary_legend", "")
    if legend:
        print(textwrap.fill(legend, width=100))
    return 0


def _add_options(parser):
    parser.add_argument("--plugin", choices=sorted(summary_plugins()), default=DEFAULT_PLUGIN,
                        help="the measurement that wrote the results (default %(default)s)")
    parser.add_argument("--group", choices=["lab", "host", "none"], default="lab",
                        help="one row per lab impairment class (default), per hostname, or "
                             "one row for everything")
    parser.add_argument("--by-family", action="store_true",
                        help="split every group into IPv4 and IPv6")
    parser.add_argument("results", nargs="?", help="results file (default: --input or stdin)")


def register_args(subparsers):
    """Add the ``summary`` sub-command (for the ``pathspider`` CLI)."""
    names = "/".join(sorted(summary_plugins())) or "measurement"
    parser = subparsers.add_parser("summary", help=f"Summarise {names} results per group")
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
