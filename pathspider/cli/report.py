"""``pathspider report``: one self-contained HTML page of a run's outcomes, and its numbers as
CSV::

    pathspider report ecn-results.ndjson -o report.html            # also writes report.csv
    pathspider report --metadata run.json v4.ndjson v6.ndjson -o reports/

For each plugin whose results are given: its conditions (2.0's ``ecn.connectivity.works``...)
per lab class, IP version and rank bucket as bar plots (one per condition dimension:
connectivity, negotiation, marks, upgrade ...), its summary columns (those of ``pathspider
summary``) and every condition as tables of counts and percentages; the run's metadata file
(``--metadata``), if given, as a table of its keys. Results are read as ``pathspider summary``
reads them (:mod:`pathspider.cli.results`: both ``--format flows`` and ``--format jobs``),
streaming: only counts are kept. See docs/report.md.
"""
import argparse
import logging
import os
import sys
import types

from pathspider.cli import results
from pathspider.cli.reporting import files, page, runinfo, tally
from pathspider.engine.discovery import load_plugins

log = logging.getLogger("pathspider.cli.report")

DEFAULT_OUTPUT = "report.html"
TITLE = "pathspider report"


def output_paths(output):
    """``(html path, csv path)`` for ``-o``: a directory (existing, or ending in ``/``) gets
    ``report.html`` and ``report.csv``; a file name gets the CSV beside it, ``.csv`` for its
    suffix."""
    if output.endswith(os.sep) or os.path.isdir(output):
        os.makedirs(output, exist_ok=True)
        return os.path.join(output, "report.html"), os.path.join(output, "report.csv")
    stem = output[:-5] if output.endswith(".html") else output
    return output, stem + ".csv"


def assign_plugins(paths, plugins, chosen=None, metadata=None):
    """``{plugin name: [paths]}``: ``chosen`` (``--plugin``) for every file, else the plugin
    whose conditions a file's job lines carry, else the metadata's plugin; ValueError names a
    file whose plugin cannot be told."""
    fallback = runinfo.plugin_named(metadata)
    assigned = {}
    for path in paths:
        name = chosen or files.plugin_of_file(path, plugins) or fallback
        if name not in plugins:
            raise ValueError(f"cannot tell which plugin wrote {path} (its records carry no "
                             f"conditions): give --plugin")
        assigned.setdefault(name, []).append(path)
    return assigned


#: Interpretation failures logged one by one; the rest are counted.
MAX_WARNINGS = 5


def guarded(plugin):
    """The plugin as :func:`results.targets` uses it, with a ``conditions`` that gives no
    conditions (with a warning, the first :data:`MAX_WARNINGS` times) for records it cannot
    interpret, instead of stopping."""
    failures = [0]

    def conditions(baseline, experiment):
        try:
            return plugin.conditions(baseline, experiment)
        except Exception as exc:                        # odd or hostile records
            failures[0] += 1
            if failures[0] <= MAX_WARNINGS:
                log.warning("%s: a target's records could not be interpreted (%s: %s)%s",
                            plugin.command_name, type(exc).__name__, exc,
                            "; further ones are not logged" if failures[0] == MAX_WARNINGS
                            else "")
            return []
    return types.SimpleNamespace(conditions=conditions, command_name=plugin.command_name,
                                 connections=getattr(plugin, "connections", None),
                                 summary_columns=plugin.summary_columns,
                                 summary_legend=getattr(plugin, "summary_legend", ""),
                                 failures=failures)


def groupings():
    """The report's groupings: lab class (the lab plan's), IP version, rank bucket."""
    from pathspider.lab.plan import CLASS_NAMES, class_of
    return [tally.Grouping("lab class", tally.lab_class(class_of), CLASS_NAMES + ("other",)),
            tally.Grouping("IP version", tally.family, tally.FAMILY_ORDER),
            tally.Grouping("rank", tally.rank_bucket, tally.RANK_ORDER)]


def count(plugin, paths):
    """A :class:`tally.Tally` of the targets in ``paths`` (read as a stream)."""
    wrapped = guarded(plugin)
    counted = tally.Tally(wrapped, groupings())
    for target in results.targets(results.read_files(paths), wrapped):
        counted.add(*target)
    return counted


def shown_groupings(counted):
    """The groupings worth a section: the lab class only when some target is a lab target."""
    return [g.name for g in counted.groupings
            if g.name != "lab class" or set(counted.counts[g.name]) - {"other"}]


def main(args):
    """Write the report of ``args.results``; exit status (0, 1 on an error, 130 Ctrl-C)."""
    plugins = results.summary_plugins(load_plugins)
    metadata, problem = (runinfo.read_metadata(args.metadata) if args.metadata
                         else (None, None))
    if problem:
        log.warning("report: metadata: %s", problem)
    try:
        assigned = assign_plugins(args.results, plugins, args.plugin, metadata)
        sections = []
        for name, paths in assigned.items():
            counted = count(plugins[name], paths)
            sections.append((counted, paths, shown_groupings(counted)))
        html_path, csv_path = output_paths(args.output)
        text = page.render(sections, args.title, args.results, metadata, problem)
        with files.replaced(csv_path) as stream:
            page.write_csv(stream, sections)
        with files.replaced(html_path) as stream:
            stream.write(text)
    except KeyboardInterrupt:
        log.error("report: interrupted; nothing written")
        return 130
    except (OSError, ValueError) as exc:
        log.error("report: %s", exc)
        return 1
    log.info("report: %s and %s written (%s)", html_path, csv_path,
             ", ".join(f"{s[0].plugin.command_name}: {s[0].targets} targets" for s in sections))
    return 0


def _add_options(parser, plugin_names):
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results files of pathspider runs (--format flows or jobs); "
                             "several are counted together, per plugin")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                        help="the HTML file to write (the CSV goes beside it, .csv for .html), "
                             "or a directory for report.html and report.csv "
                             "(default %(default)s)")
    parser.add_argument("--plugin", choices=plugin_names, default=None,
                        help="the measurement that wrote the results (default: found from "
                             "the conditions of --format jobs lines, else from --metadata)")
    parser.add_argument("--metadata", metavar="FILE",
                        help="the run's metadata file (pathspider --metadata FILE), shown "
                             "as a table")
    parser.add_argument("--title", default=TITLE, help="the page's title")


def add_command(subparsers, name, help, module):
    """Add ``module``'s sub-command ``name`` (its ``_add_options`` and ``main``; its docstring's
    first paragraph as description); shared with ``export``."""
    parser = subparsers.add_parser(name, help=help, description=module.__doc__.split("\n\n")[0])
    module._add_options(parser, sorted(results.summary_plugins(load_plugins)))
    parser.set_defaults(func=module.main)
    return parser


def run_cli(module, argv, name):
    """``python -m NAME``: the entry of ``module`` (``pathspider.cli.report`` or ``.export``)."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}",
                                     description=module.__doc__.split("\n\n")[0])
    module._add_options(parser, sorted(results.summary_plugins(load_plugins)))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return module.main(parser.parse_args(argv))


def register_args(subparsers):
    """Add the ``report`` sub-command (for the ``pathspider`` CLI)."""
    return add_command(subparsers, "report", "HTML report (plots and tables per lab class, IP "
                       "version and rank) and CSV of results", sys.modules[__name__])


def cli(argv=None):
    """``python -m pathspider.cli.report``."""
    return run_cli(sys.modules[__name__], argv, "pathspider.cli.report")


if __name__ == "__main__":
    sys.exit(cli())
