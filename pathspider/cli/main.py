"""The ``pathspider`` command line: ``pathspider [global options] COMMAND [command options]``.

COMMAND is a measurement plugin (found in the ``pathspider.plugins`` namespace package, see
:mod:`pathspider.engine.discovery`) or a built-in utility (``dnsresolv``, ``summary``,
``observe``, ``restore``, ``lab``).
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
from pathspider.engine.targets import INPUT_FORMATS
from pathspider.version import __version__

log = logging.getLogger("pathspider")

#: Modules providing built-in utility sub-commands, each with ``register_args(subparsers)``.
UTILITY_MODULES = ("pathspider.cli.dnsresolv", "pathspider.cli.summary", "pathspider.cli.observe",
                   "pathspider.cli.restore", "pathspider.lab.cli")

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
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging messages")
    parser.add_argument("--version", action="version", version=f"pathspider {__version__}")


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
