"""``pathspider lab up|down|status|targets|exec``: the lab from the command line.

Registered by pathspider's CLI like a utility (``register_args(subparsers)``, then
``args.func(args)`` returns the exit status). Also runnable on its own:
``python -m pathspider.lab.cli [--name NAME] COMMAND ...``.
"""
import argparse
import json
import logging
import os
import sys

from . import plan, targets
from .lab import Lab, LabError

log = logging.getLogger("pathspider.lab")

DEFAULT_NAME = "psl"
NAME_ENV = "PATHSPIDER_LAB_NAME"


def register_args(subparsers):
    """Add the ``lab`` sub-command (with its own sub-commands) to pathspider's parser."""
    parser = subparsers.add_parser(
        "lab", help="build and use a local lab path with known impairments",
        description="A lab of three network namespaces (client, middlebox, server) with one "
                    "target subnet per impairment class. Needs root, except 'targets'.")
    _add_lab_args(parser)
    return parser


def _add_lab_args(parser):
    parser.add_argument("--name", default=os.environ.get(NAME_ENV, DEFAULT_NAME),
                        help=f"lab name, prefix of its namespaces (default: ${NAME_ENV} "
                             f"or {DEFAULT_NAME})")
    sub = parser.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="build the lab and start its servers (idempotent)")
    up.add_argument("--http-workers", type=int, default=None,
                    help="HTTP server processes (default: 2 to 4 by CPU count)")
    sub.add_parser("down", help="remove everything the lab made")
    status = sub.add_parser("status", help="show namespaces, servers and rule counters "
                                           "(exit 0 when up, 1 otherwise)")
    status.add_argument("--json", action="store_true", help="print JSON")

    tg = sub.add_parser("targets", help="write a target list of lab addresses")
    tg.add_argument("--count", type=int, required=True, help="number of targets")
    tg.add_argument("--classes", default=None,
                    help="comma-separated impairment classes (default: all): "
                         + ", ".join(plan.CLASS_NAMES))
    tg.add_argument("--family", default="both", choices=sorted(targets.FAMILIES),
                    help="IP version(s) (default: both)")
    tg.add_argument("--port", type=int, default=plan.HTTP_PORT, help="target port (default 80)")
    tg.add_argument("--format", default="csv", choices=("csv", "ndjson"),
                    help="csv: ip,port,hostname,rank; ndjson: PATHspider 2 jobs "
                         "(dip, dp, domain, rank)")
    tg.add_argument("-o", "--out", dest="lab_out", default=None,
                    help="file to write (default: pathspider's --output, else stdout)")

    ex = sub.add_parser("exec", help="run a command in the client namespace: exec -- CMD ...")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="command and its arguments")
    parser.set_defaults(func=main)


def main(args):
    """Run the chosen lab command; returns the exit status."""
    handlers = {"up": _up, "down": _down, "status": _status, "targets": _targets,
                "exec": _exec}
    try:
        return handlers[args.lab_command](args)
    except LabError as exc:
        print(f"pathspider lab: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pathspider lab: error: {exc}", file=sys.stderr)
        return 2


def _up(args):
    lab = Lab(args.name, http_workers=args.http_workers)
    if lab.up():
        print(f"lab {lab.name} is up; measure from it with: "
              f"pathspider lab --name {lab.name} exec -- pathspider ...")
    else:
        print(f"lab {lab.name} was already up; nothing changed")
    return 0


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
    lines = [f"lab {info['name']}: {'up' if info['up'] else info['phase']} "
             f"(run dir {info['rundir']})"]
    lines += [f"  problem: {p}" for p in info["problems"]]
    lines.append("namespaces: " + ", ".join(
        f"{n['name']}{'' if n['exists'] else ' (missing)'}" for n in info["namespaces"].values()))
    if info["servers"]:
        lines.append("servers:")
        lines += [f"  {name:<12} pid {s['pid']!s:<8} {'running' if s['alive'] else 'NOT running'}"
                  for name, s in info["servers"].items()]
    p = info["path"]
    lines.append("path: " + (f"delay {p.get('delay_ms', 0):g} ms each way"
                             f"{' (' + p['mode'] + ')' if p.get('mode') else ''}, "
                             f"loss {p.get('loss_pct', 0):g}%" if p else "no added delay or loss"))
    if info["counters"]:
        lines.append("impairment rules (packets matched):")
        lines += [f"  {c['class']:<14} {c['family']:<4} {c['direction']:<5} {c['packets']}"
                  for c in info["counters"]]
    return "\n".join(lines)


def _targets(args):
    rows = Lab.targets(args.count, args.classes, args.family, args.port)
    dest = args.lab_out or getattr(args, "output", None) or "-"
    write = targets.write_csv if args.format == "csv" else targets.write_ndjson
    if dest in ("-", "/dev/stdout"):
        write(rows, sys.stdout)
        sys.stdout.flush()
    else:
        with open(dest, "w", newline="") as out:
            write(rows, out)
    return 0


def _exec(args):
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise ValueError("exec needs a command: pathspider lab exec -- CMD [ARGS...]")
    lab = Lab(args.name)
    if not lab.is_up():
        raise LabError(f"lab {lab.name} is not up (run: pathspider lab --name {lab.name} up)")
    return lab.exec_in_client(cmd).returncode


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
