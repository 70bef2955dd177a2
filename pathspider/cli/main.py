"""The ``pathspider`` command line: ``pathspider [global options] COMMAND [command options]``.

COMMAND is a measurement plugin (found in the ``pathspider.plugins`` namespace package, see
:mod:`pathspider.engine.discovery`) or a built-in utility (``dnsresolv``, ``summary``,
``observe``, ``restore``, ``report``, ``export``, ``lab``, ``campaign``).
Plugins call ``parser.set_defaults(spider=Class)`` in their ``register_args``; utilities call
``parser.set_defaults(func=main)`` with ``main(args) -> exit status``.
"""

import argparse
import importlib
import logging
import sys
import warnings

from pathspider.engine import held_signals
from pathspider.engine.discovery import load_plugins
from pathspider.engine.jobs import OUTPUT_FORMATS
from pathspider.engine.ratelimit import rate_value
from pathspider.engine.targets import INPUT_FORMATS
from pathspider.version import __version__

log = logging.getLogger("pathspider")

#: Modules providing built-in utility sub-commands, each with ``register_args(subparsers)``.
UTILITY_MODULES = ("pathspider.cli.dnsresolv", "pathspider.cli.summary", "pathspider.cli.observe",
                   "pathspider.cli.restore", "pathspider.cli.report", "pathspider.cli.export",
                   "pathspider.lab.cli", "pathspider.campaign.cli")

DESCRIPTION = ("PATHspider measures path transparency: it connects to each target twice, in a "
               "baseline and an experimental configuration, observes the packets, and writes "
               "one JSON record per connection.")


class CommandLineError(Exception):
    """A command-line problem reported as one line with exit status 1."""


class _Parser(argparse.ArgumentParser):
    """Reports an unknown command as a clear one-line error with exit status 1."""

    known_commands = ()
    load_errors = ()

    def error(self, message):
        if "invalid choice" in message and "COMMAND" in message:
            chosen = message.split("'")[1] if "'" in message else "?"
            raise CommandLineError(_unknown_command(chosen, self.known_commands,
                                                    self.load_errors))
        super().error(message)


def _unknown_command(name, known, load_errors):
    for error in load_errors:
        if error.module == name:
            return f"plugin {name!r} could not be loaded: {error.error}"
    return f"no plugin or command named {name!r} (available: {', '.join(sorted(known))})"


def _global_options(parser):
    parser.add_argument("-s", "--standalone", action="store_true", default=True,
                        help="run standalone (the only mode; kept for 1.0 compatibility)")
    parser.add_argument("-i", "--interface", default="eth0",
                        help="interface the Observer captures on (default: %(default)s)")
    parser.add_argument("-w", "--workers", type=int, default=100,
                        help="number of connect workers (default: %(default)s)")
    parser.add_argument("--input", default="/dev/stdin", metavar="INPUTFILE",
                        help="target list: CSV ip,port,hostname,rank or ndjson jobs "
                             "(default: stdin)")
    parser.add_argument("--input-format", dest="input_format", choices=INPUT_FORMATS,
                        default="auto",
                        help="csv: rows ip,port,hostname,rank (1.0); ndjson: one JSON object "
                             "per line with dip, dp, domain, rank and any other fields (2.0); "
                             "auto: ndjson if the first line that is not blank or a comment "
                             "starts with '{' (default: %(default)s)")
    parser.add_argument("--output", default="/dev/stdout", metavar="OUTPUTFILE",
                        help="results, one JSON object per line (default: stdout)")
    parser.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS,
                        default="flows",
                        help="flows: one record per connection (1.0); jobs: one line per job "
                             "with its fields, flow_results, missed_flows, time and "
                             "conditions (2.0) (default: %(default)s)")
    _scope_options(parser)
    _bookkeeping_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging messages")
    parser.add_argument("--version", action="version", version=f"pathspider {__version__}")


def _scope_options(parser):
    """Which targets a run measures, and how fast (docs/scope.md)."""
    parser.add_argument("--rate", type=rate_value, default=None, metavar="JOBS_PER_S",
                        help="start at most this many jobs per second (a token bucket with "
                             "bursts of 50 ms worth of jobs; default: no limit)")
    parser.add_argument("--allow", action="store_true",
                        help="lift the default blocklist: also measure private, loopback, "
                             "link-local, multicast, documentation and other special-use "
                             "addresses (default: they are skipped and counted; inside "
                             "'pathspider lab exec' the lab's own ranges are measured)")
    parser.add_argument("--blocklist", action="append", metavar="FILE",
                        help="never measure targets in these networks: one CIDR per line, "
                             "'#' comments (zmap's format); wins over everything; repeatable")
    parser.add_argument("--allowlist", action="append", metavar="FILE",
                        help="measure only targets in these networks (same format); an entry "
                             "inside a default-blocked range (e.g. 127.0.0.1/32) lifts the "
                             "default there; repeatable")


def _bookkeeping_options(parser):
    """Progress, run metadata and resuming (docs/engine.md#progress-metadata-and-resuming)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show how far the run is on stderr: jobs done of the total, "
                             "rate, time left, failures, capture drops; a live line when "
                             "stderr is a terminal, else a log line every "
                             "--progress-interval seconds (default: on; --no-progress: "
                             "only the summary at the end)")
    parser.add_argument("--progress-interval", dest="progress_interval",
                        type=_positive_seconds, default=10.0, metavar="SECONDS",
                        help="seconds between two progress log lines when stderr is not a "
                             "terminal (default: %(default)g)")
    parser.add_argument("--metadata", metavar="FILE",
                        help="write the run's metadata to FILE (JSON: version, plugin and "
                             "options, vantage, times, system settings before and after, "
                             "counters, how the run ended), at the start and at the end, "
                             "atomically; it must not be the input or output file")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep the complete targets of the "
                             "existing --output, remove partial records, measure the other "
                             "targets and append their records (needs a named --output; "
                             "without an existing output it is a fresh run)")


def _positive_seconds(text):
    """argparse type: seconds, a finite number more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _register_plugins(subparsers, plugins, problems):
    for plugin in plugins:
        register = getattr(plugin, "register_args", None)
        if register is None:
            continue
        try:
            register(subparsers)
        except NotImplementedError:
            continue                      # an abstract base, not a measurement
        except Exception as exc:
            problems.append(f"plugin {plugin.__name__} could not register its options: "
                            f"{type(exc).__name__}: {exc}")


def _register_utilities(subparsers, problems):
    for name in UTILITY_MODULES:
        try:
            module = importlib.import_module(name)
            module.register_args(subparsers)
        except Exception as exc:
            problems.append(f"built-in command module {name} is unavailable: "
                            f"{type(exc).__name__}: {exc}")


def build_parser():
    """The full parser; also returns the problems met while loading plugins and utilities."""
    plugins, load_errors = load_plugins()
    problems = [str(error) for error in load_errors]
    parser = _Parser(prog="pathspider", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser)
    subparsers = parser.add_subparsers(title="commands (measurement plugins and utilities)",
                                       metavar="COMMAND", dest="command")
    _register_plugins(subparsers, plugins, problems)
    _register_utilities(subparsers, problems)
    _Parser.known_commands = tuple(subparsers.choices)
    _Parser.load_errors = tuple(load_errors)
    epilog = ["Run 'pathspider COMMAND --help' for the options of a command.",
              "Example: pathspider -i eth0 ecn <targets.csv >results.ndjson"]
    if problems:
        epilog.append("Not available:")
        epilog.extend(f"  {problem}" for problem in problems)
    parser.epilog = "\n".join(epilog)
    return parser, problems


def _configure_logging(verbose):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


def handle_args(argv):
    """Parse ``argv`` (program name first, as ``sys.argv``), run the command, return status."""
    warnings.filterwarnings("ignore", message="the imp module is deprecated",
                            category=DeprecationWarning)
    parser, problems = build_parser()
    if len(argv) <= 1:
        parser.print_help(sys.stderr)
        return 1
    try:
        args = parser.parse_args(argv[1:])
    except CommandLineError as exc:
        print(f"pathspider: error: {exc}", file=sys.stderr)
        return 1
    _configure_logging(args.verbose)
    for problem in problems:
        log.warning("%s", problem)
    if getattr(args, "func", None) is not None:
        held_signals.release()          # a utility reacts to signals in its own way
        return args.func(args)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 1
    from pathspider.engine.coordinator import run_standalone
    return run_standalone(args)


def handle_args_wrapper():
    """Console-script entry point. Stop signals that arrive before a command owns them are held
    (:mod:`pathspider.engine.held_signals`), so a run stopped while starting up still ends
    with its summary and exit status."""
    held_signals.hold()
    try:
        status = handle_args(sys.argv)
    finally:
        held_signals.release()
    sys.exit(status)


if __name__ == "__main__":
    handle_args_wrapper()
