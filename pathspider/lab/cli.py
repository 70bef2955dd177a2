"""``pathspider lab up|down|status|place|targets|exec``: the lab from the command line.

Registered by pathspider's CLI like a utility (``register_args(subparsers)``, then
``args.func(args)`` returns the exit status). Also runnable on its own:
``python -m pathspider.lab.cli [--name NAME] COMMAND [--name NAME] ...``.

The lab name may come before or after the sub-command (``lab --name X up`` and
``lab up --name X`` are the same; after wins if both are given); without ``--name`` it is
``$PATHSPIDER_LAB_NAME``, else ``psl`` (:func:`pathspider.lab.lab.default_name`, which also
reads the deprecated ``$PATHSPIDER_TEST_LAB``).

Errors are one line on stderr, ``pathspider lab: error: ...``: exit status 2 for a usage
error (a bad option value, lab name or command line), 1 when the lab cannot do what was asked
(not root, not up, a name clash, ...). ``exec`` exits with the command's status (127 if there
is no such command, 126 if it cannot be run, 128+N if it died of signal N).
"""
import argparse
import functools
import json
import logging
import os
import shutil
import sys

from . import plan, targets
from .lab import (DEFAULT_NAME, MAX_HTTP_WORKERS, NAME_ENV, Lab, LabError, LabNameError,
                  default_name)

log = logging.getLogger("pathspider.lab")

NAME_HELP = (f"lab name, prefix of its namespaces: 1 to 8 letters, digits, '-' or '_' "
             f"(default: ${NAME_ENV} or {DEFAULT_NAME})")
PREFIX = "pathspider lab: error: "


def _one_line_error(parser, message):
    """argparse's error(): one line naming the problem (no usage dump), exit status 2."""
    parser.exit(2, f"{PREFIX}{message} (see: {parser.prog} --help)\n")


class _LabArgumentParser(argparse.ArgumentParser):
    """The parser of the lab's sub-commands: errors are one line (see module doc)."""

    def error(self, message):
        _one_line_error(self, message)


def _int_in(low, high, what):
    """An argparse type: an integer in ``low..high`` (``high`` None: no upper bound)."""
    def convert(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {value}")
        return value
    convert.__name__ = what     # argparse names the type in some messages
    return convert


port_number = _int_in(1, 65535, "port")
positive_count = _int_in(1, None, "count")


def impairment_hop(text):
    """An argparse type: ``CLASS=HOP``, an impaired class and a hop 1..ROUTERS."""
    try:
        return plan.parse_impairment_hop(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


impairment_hop.__name__ = "CLASS=HOP"
PLACE_HELP = (f"put impairment class CLASS's rules in the router at hop HOP (1 to "
              f"{plan.ROUTERS}; hop {plan.SILENT_HOP} sends no time-exceeded); repeatable")


def register_args(subparsers):
    """Add the ``lab`` sub-command (with its own sub-commands) to pathspider's parser."""
    parser = subparsers.add_parser(
        "lab", help="build and use a local lab path with known impairments",
        description=f"A lab of network namespaces: a client, a chain of {plan.ROUTERS} "
                    f"routers (hop 1 'mbox' to hop {plan.ROUTERS}; each impairment class is "
                    f"applied at one hop, hop {plan.SILENT_HOP} sends no ICMP time-exceeded) "
                    f"and a server, with one target subnet per impairment class. Needs root, "
                    f"except 'targets'.")
    _add_lab_args(parser)
    return parser


def _command(sub, name, **kwargs):
    """Add sub-command ``name``; it takes ``--name`` too (``lab up --name X``). SUPPRESS
    leaves the lab parser's value (given before the sub-command, or None) alone unless
    ``--name`` follows the sub-command."""
    command = sub.add_parser(name, **kwargs)
    command.add_argument("--name", default=argparse.SUPPRESS, help=NAME_HELP)
    return command


def _add_lab_args(parser):
    # The lab parser itself is made by the parent's subparsers (its class); its errors
    # (a bad or missing COMMAND) are one line too.
    parser.error = functools.partial(_one_line_error, parser)
    # None: resolved when a command runs (default_name), so that merely building
    # pathspider's parser reads no environment.
    parser.add_argument("--name", default=None, help=NAME_HELP)
    sub = parser.add_subparsers(dest="lab_command", metavar="COMMAND", required=True,
                                parser_class=_LabArgumentParser)

    up = _command(sub, "up", help="build the lab and start its servers (idempotent; waits "
                                  "while another up or down of the lab runs)")
    up.add_argument("--http-workers", type=_int_in(1, MAX_HTTP_WORKERS, "http-workers"),
                    default=None, help=f"HTTP server processes, 1 to {MAX_HTTP_WORKERS} "
                                       f"(default: 2 to 4 by CPU count)")
    up.add_argument("--impairment-hop", dest="impairment_hops", metavar="CLASS=HOP",
                    type=impairment_hop, action="append", default=[],
                    help=PLACE_HELP + " (a new lab starts from the default placement, a "
                         "running or rebuilt one from the placement it kept; on a running lab "
                         "this moves the classes as 'place' does)")
    up.add_argument("--vantages", type=_int_in(0, plan.MAX_VANTAGES, "vantages"),
                    default=None, metavar="N",
                    help=f"give the lab N extra client namespaces, vantages v1..vN (0 to "
                         f"{plan.MAX_VANTAGES}), each joined to hop 1 by its own access link "
                         f"(v2's bleaches the ECN field of all its traffic); on a running lab "
                         f"the last vantages are added or removed, nothing else changes "
                         f"(default: as many as the lab has, 0 for a new lab)")
    _command(sub, "down", help="remove everything the lab made (waits while another up or "
                               "down of the lab runs)")
    status = _command(sub, "status", help="show namespaces, servers, routes and rule counters "
                                          "(exit 0 when up and healthy, 1 otherwise, naming "
                                          "each problem)")
    status.add_argument("--json", action="store_true", help="print JSON")
    place = _command(sub, "place", help="show or change at which hop each impairment class "
                                        "is applied, on a running lab",
                     description="Without arguments, print the hop of every impaired class. "
                                 "With CLASS=HOP arguments, move those classes' nftables rules "
                                 "to the routers at those hops (each router's table changes "
                                 "atomically, the new router before the old, so a moved class "
                                 "is never unimpaired); the placement is kept by the lab "
                                 "(also when 'up' rebuilds it). Hop 1 is the first router "
                                 "after the client.")
    place.add_argument("placement", nargs="*", metavar="CLASS=HOP", type=impairment_hop,
                       help=PLACE_HELP)
    place.add_argument("--defaults", action="store_true",
                       help="go back to the default placement first (then apply CLASS=HOP)")

    tg = _command(sub, "targets", help="write a target list of lab addresses")
    tg.add_argument("--count", type=positive_count, default=None,
                    help="number of targets, 1 or more (default: one per chosen class and "
                         "family, e.g. 22 for all 11 classes and both families); more than "
                         "one per class and family cycles through the classes and families "
                         "with the next host number, up to 254 per class and family")
    tg.add_argument("--classes", default=None,
                    help="comma-separated impairment classes (default: all): "
                         + ", ".join(plan.CLASS_NAMES))
    tg.add_argument("--family", default="both", choices=sorted(targets.FAMILIES),
                    help="IP version(s) (default: both)")
    tg.add_argument("--port", type=port_number, default=plan.HTTP_PORT,
                    help="target port, 1 to 65535 (default 80)")
    tg.add_argument("--format", default="csv", choices=("csv", "ndjson"),
                    help="csv: ip,port,hostname,rank; ndjson: PATHspider 2 jobs "
                         "(dip, dp, domain, rank)")
    tg.add_argument("-o", "--out", dest="lab_out", default=None,
                    help="file to write (default: pathspider's --output, else stdout)")

    ex = _command(sub, "exec", help="run a command in the client namespace (or a vantage's): "
                                    "exec [--vantage vK] -- CMD ...",
                  description="Run CMD in the client namespace (with --vantage, in that "
                              "vantage's namespace) and exit with its status "
                              "(128+N if it died of signal N, 127 if there is no such "
                              "command). SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and "
                              "SIGUSR2 are passed on to CMD, and CMD gets SIGTERM should "
                              "'lab exec' be killed.")
    ex.add_argument("--vantage", default=None, metavar="vK",
                    help="run CMD in vantage vK's namespace (see 'up --vantages'; its "
                         "interface is eth0 too) instead of the client's")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="command and its arguments")
    parser.set_defaults(func=main)


def main(args):
    """Run the chosen lab command; returns the exit status."""
    handlers = {"up": _up, "down": _down, "status": _status, "place": _place,
                "targets": _targets, "exec": _exec}
    if getattr(args, "name", None) is None:      # not given ("" is given, and refused)
        args.name = default_name()
    try:
        return handlers[args.lab_command](args)
    except (LabNameError, ValueError) as exc:      # usage errors
        print(f"{PREFIX}{exc}", file=sys.stderr)
        return 2
    except LabError as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Whoever read our output went away (e.g. "| head"): no traceback, no more output.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except KeyboardInterrupt:
        print(f"{PREFIX}interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr)
        return 1


def _up(args):
    lab = Lab(args.name, http_workers=args.http_workers,
              impairment_hops=dict(args.impairment_hops), vantages=args.vantages)
    done = lab.ensure_up()
    if done == "changed":
        vantages, moved = lab.vantage_names(), dict(args.impairment_hops)
        print(f"lab {lab.name} was already up; it now has {len(vantages)} vantage(s)"
              + (f": {', '.join(vantages)}" if vantages else "")
              + (f"; impairments at: {format_placement(lab.impairment_hops(), moved)}"
                 if moved else ""))
    elif done == "moved":
        print(f"lab {lab.name} was already up; impairments moved: "
              + format_placement(lab.impairment_hops(), dict(args.impairment_hops)))
    elif done != "unchanged":
        vantages = lab.vantage_names()
        print(f"lab {lab.name} is up; measure from it with: "
              f"pathspider lab --name {lab.name} exec -- pathspider ..."
              + (f" (vantages {', '.join(vantages)}: exec --vantage vK -- ...)"
                 if vantages else ""))
    else:
        print(f"lab {lab.name} was already up; nothing changed")
    return 0


def _place(args):
    lab = Lab(args.name)
    wanted = dict(args.placement)
    if wanted or args.defaults:
        moved = lab.set_impairment_hops(wanted, defaults=args.defaults)
        print(f"lab {lab.name}: " + (f"moved {', '.join(moved)}" if moved else "nothing moved"))
    elif not lab.is_up():
        raise LabError(f"lab {lab.name} is not up (run: pathspider lab --name {lab.name} up)")
    placement = lab.impairment_hops()
    for cls in plan.IMPAIRED_CLASSES:
        print(f"  {cls:<14} hop {placement[cls]}")
    return 0


def format_placement(placement, only=None):
    """``class hop N, ...`` for the classes in ``only`` (default: all) of ``placement``."""
    return ", ".join(f"{cls} hop {hop}" for cls, hop in placement.items()
                     if only is None or cls in only)


def _down(args):
    lab = Lab(args.name)
    print(f"lab {lab.name} removed" if lab.down() else f"lab {lab.name} was not up")
    return 0


def _status(args):
    info = Lab(args.name).status()
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(format_status(info))
    return 0 if info["up"] else 1


def format_status(info):
    """Human-readable status text."""
    if info["up"]:
        verdict = "up"
    elif info["phase"] == "down":
        verdict = "down"
    else:
        count = len(info["problems"])
        verdict = (f"NOT healthy ({info['phase']}, {count} problem{'' if count == 1 else 's'})"
                   if count else info["phase"])
    lines = [f"lab {info['name']}: {verdict} (run dir {info['rundir']})"]
    lines += [f"  problem: {p}" for p in info["problems"]]
    lines.append("namespaces: " + ", ".join(
        f"{n['name']}{'' if n['exists'] else ' (missing)'}" for n in info["namespaces"].values()))
    if info["servers"]:
        lines.append("servers:")
        lines += [f"  {name:<12} pid {s['pid']!s:<8} {'running' if s['alive'] else 'NOT running'}"
                  for name, s in info["servers"].items()]
    if info["up"] or info["problems"]:
        lines.append("services: " + ("answer from the client" if info.get("services_checked")
                                     else "not checked" + (" (delay/loss in force)"
                                                           if info["path"] else "")))
    p = info["path"]
    lines.append("path: " + (f"delay {p.get('delay_ms', 0):g} ms each way"
                             f"{' (' + p['mode'] + ')' if p.get('mode') else ''}, "
                             f"loss {p.get('loss_pct', 0):g}%" if p else "no added delay or loss"))
    if info["phase"] != "down":
        lines += _format_hops(info)
    lines += _format_vantages(info)
    if info["counters"]:
        lines.append("impairment rules (hop, class, family, direction: packets matched):")
        lines += [f"  {c['hop']} {c['class']:<14} {c['family']:<4} {c['direction']:<5} "
                  f"{c['packets']}" for c in info["counters"]]
    return "\n".join(lines)


def _format_hops(info):
    """The hops of the path, each with the classes it impairs."""
    at = {}
    for cls, c in info.get("classes", {}).items():
        if c["impairment_hop"] is not None:
            at.setdefault(c["impairment_hop"], []).append(cls)
    lines = ["hops (TTL / hop limit k expires at hop k; the address it answers from):"]
    for h in info.get("hops", []):
        silent = " SILENT (sends no time-exceeded)" if h["silent"] else ""
        lines.append(f"  {h['hop']} {h['namespace']:<12} {h['address4']:<13} "
                     f"{h['address6']:<18} impairs: {', '.join(at.get(h['hop'], [])) or '-'}"
                     f"{silent}")
    return lines


def _format_vantages(info):
    """The vantages, each with its addresses and its access link's own impairment."""
    vantages = info.get("vantages") or []
    if not vantages:
        return []
    lines = ["vantages (extra clients joined to hop 1; interface eth0):"]
    for v in vantages:
        imp = v["access_impairment"]
        text = "-"
        if imp:
            packets = sum(c["packets"] for c in imp.get("counters", []))
            text = f"{imp['name']} at hop {imp['hop']} ({packets} packets): {imp['description']}"
        lines.append(f"  {v['name']:<3} {v['namespace']:<12} {v['address4']:<13} "
                     f"{v['address6']:<18} access impairment: {text}")
    return lines


def _targets(args):
    rows = Lab.targets(args.count, args.classes, args.family, args.port)
    dest = args.lab_out or getattr(args, "output", None) or "-"
    write = targets.write_csv if args.format == "csv" else targets.write_ndjson
    if dest in ("-", "/dev/stdout"):
        write(rows, sys.stdout)
        sys.stdout.flush()
        return 0
    try:
        with open(dest, "w", newline="") as out:
            write(rows, out)
    except OSError as exc:
        raise LabError(f"cannot write the target list to {dest}: "
                       f"{exc.strerror or exc}") from exc
    return 0


def _exec(args):
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise ValueError("exec needs a command: pathspider lab exec -- CMD [ARGS...]")
    lab = Lab(args.name)
    vantage = plan.vantage_name(args.vantage) if args.vantage is not None else None
    problems = lab.problems()
    if problems == ["no state file"]:
        raise LabError(f"lab {lab.name} is not up (run: pathspider lab --name {lab.name} up)")
    if problems:
        raise LabError(f"lab {lab.name} is not healthy ({'; '.join(problems)}); rebuild it "
                       f"with: pathspider lab --name {lab.name} up")
    missing = _not_runnable(cmd[0])
    if missing:
        print(f"{PREFIX}{missing[1]}", file=sys.stderr)
        return missing[0]
    sys.stdout.flush()
    sys.stderr.flush()
    if vantage is not None:
        lab.vantage_netns(vantage)          # LabError if the lab has no such vantage
    return lab.exec_foreground(cmd, vantage=vantage)


def _not_runnable(program):
    """(status, message) as a shell would have it if ``program`` cannot be run, else None."""
    if "/" in program:
        if not os.path.exists(program):
            return 127, f"{program}: no such file"
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return 126, f"{program}: not an executable file"
        return None
    if shutil.which(program) is None:
        return 127, f"{program}: command not found (PATH={os.environ.get('PATH', '')})"
    return None


def build_parser():
    """A stand-alone parser for ``python -m pathspider.lab.cli``."""
    parser = argparse.ArgumentParser(prog="python -m pathspider.lab.cli",
                                     description=__doc__.split("\n")[0])
    _add_lab_args(parser)
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    _args = build_parser().parse_args()
    sys.exit(_args.func(_args))
