"""``pathspider export --pto``: a run's results as the Path Transparency Observatory's
observation set file (ndjson: the set's metadata object first, then one observation
``[set id, start, end, path, condition(, value)]`` per target and condition), ready to upload::

    pathspider export --pto ecn-results.ndjson -o observations.ndjson

Results are read as ``pathspider summary`` and ``pathspider report`` read them (both output
formats, streaming); the conditions are the plugin's (a ``--format jobs`` line's own, else
its ``conditions`` of the target's records); the path is ``source * target`` and the times
the target's first ``tstart`` and last ``tstop``. Targets without an address, times or
conditions give no observation (they are counted in the log). See docs/report.md.
"""
import json
import logging
import os
import sys
import tempfile

from pathspider.cli import results
from pathspider.cli.report import add_command, assign_plugins, guarded, run_cli
from pathspider.cli.reporting import files, pto, runinfo
from pathspider.engine.discovery import load_plugins

log = logging.getLogger("pathspider.cli.export")


def write_observations(out, plugin, paths):
    """Write the observations of ``paths`` to ``out``; returns ``(observations, targets,
    targets without observations, conditions, start, end)``."""
    made = targets = skipped = 0
    conditions, start, end = set(), None, None
    for key, baseline, experiment, conds in results.targets(results.read_files(paths), plugin):
        targets += 1
        rows = pto.observations(key, baseline, experiment, conds)
        skipped += not rows
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            conditions.add(row[4])
            start = row[1] if start is None else min(start, row[1])
            end = row[2] if end is None else max(end, row[2])
        made += len(rows)
    return made, targets, skipped, conditions, start, end


def export(args, plugin, paths):
    """The observation set file of ``paths``: observations streamed to a temporary file
    (nothing is held in memory), then the metadata line and them into ``args.output``."""
    directory = os.path.dirname(os.path.abspath(args.output))
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory) as body:
        made, targets, skipped, conditions, start, end = write_observations(body, plugin,
                                                                             paths)
        meta = pto.metadata(conditions, paths, start, end, plugin.command_name,
                            args.analyzer, args.owner)
        body.seek(0)
        with files.replaced(args.output) as out:
            out.write(json.dumps(meta, ensure_ascii=False) + "\n")
            while chunk := body.read(1 << 20):
                out.write(chunk)
    log.info("export: %d observations of %d targets written to %s (%d targets without "
             "address, times or conditions)", made, targets, args.output, skipped)


def main(args):
    """Export ``args.results``; exit status (0, 1 on an error, 130 on Ctrl-C)."""
    plugins = results.summary_plugins(load_plugins)
    metadata = None
    if args.metadata:
        metadata, problem = runinfo.read_metadata(args.metadata)
        if problem:
            log.warning("export: metadata: %s", problem)
    try:
        assigned = assign_plugins(args.results, plugins, args.plugin, metadata)
        if len(assigned) > 1:
            raise ValueError(f"results of several plugins ({', '.join(assigned)}): an "
                             f"observation set holds one; export them one by one")
        [(name, paths)] = assigned.items()
        export(args, guarded(plugins[name]), paths)
    except KeyboardInterrupt:
        log.error("export: interrupted; nothing written")
        return 130
    except (OSError, ValueError) as exc:
        log.error("export: %s", exc)
        return 1
    return 0


def _add_options(parser, plugin_names):
    parser.add_argument("--pto", action="store_true", required=True,
                        help="write the Path Transparency Observatory's observation set "
                             "format (the only export format; required so that another can "
                             "be added)")
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results files of one plugin's runs (--format flows or jobs)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the observation set file to write (ndjson)")
    parser.add_argument("--plugin", choices=plugin_names, default=None,
                        help="the measurement that wrote the results (default: found from "
                             "the conditions of --format jobs lines, else from --metadata)")
    parser.add_argument("--metadata", metavar="FILE",
                        help="the run's metadata file (pathspider --metadata FILE): its "
                             "plugin is used when the results do not tell")
    parser.add_argument("--owner", help="the set's _owner (an e-mail address)")
    parser.add_argument("--analyzer", help="the set's _analyzer (a URL; default: names this "
                                           "pathspider version)")


def register_args(subparsers):
    """Add the ``export`` sub-command (for the ``pathspider`` CLI)."""
    return add_command(subparsers, "export", "write results as Path Transparency Observatory "
                       "observations", sys.modules[__name__])


def cli(argv=None):
    """``python -m pathspider.cli.export``."""
    return run_cli(sys.modules[__name__], argv, "pathspider.cli.export")


if __name__ == "__main__":
    sys.exit(cli())
