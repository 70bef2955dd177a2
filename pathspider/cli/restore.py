"""``pathspider restore``: put back system state that a killed run left changed.

The ``ecn``, ``dscp`` and ``tfo`` plugins change sysctls (``net.ipv4.tcp_ecn``...) and create
nftables tables (``inet pathspider_dscp``) for the length of a run, and restore them however
the run ends, except when the process cannot run any code any more (SIGKILL, a crash of the
interpreter, a power cut). For that case every run first writes the original values to a
journal (see :mod:`pathspider.client.sysstate`), and the next run in the same network namespace
puts them back before it starts. This command does the same on demand::

    pathspider restore            # restore what a dead run left, say what was restored
    pathspider restore --list     # only show what the journal holds; change nothing
    ip netns exec NAME pathspider restore     # another network namespace

Exit status 0 when everything left was restored (or there was nothing), 1 when a live run
holds the namespace (one line on stderr naming it) or something could not be restored.
"""
import argparse
import logging
import os
import sys

from pathspider.client import sysstate

log = logging.getLogger("pathspider.cli.restore")

DESCRIPTION = ("Put back the sysctls and nftables tables that a pathspider run which was killed\n"
               "(SIGKILL, crash) left changed in this network namespace.")

EPILOG = """\
Each run journals, before it changes anything, the original value of every sysctl it
registers and the name of every nftables table it creates, in /run/pathspider (unprivileged:
$XDG_RUNTIME_DIR/pathspider or /tmp/pathspider-UID), one journal per network namespace.
A normal end, an error, Ctrl-C, SIGTERM and SIGHUP restore everything and remove the journal;
after SIGKILL or a crash the journal stays, and the next run or this command restores it.

This command works on the network namespace it runs in: use 'ip netns exec NAME pathspider
restore' for another one. It refuses (exit status 1) while a live pathspider run is changing
state in the namespace. Restoring needs the same privileges as the run (CAP_NET_ADMIN)."""


def register_args(subparsers):
    """Add the ``restore`` sub-command (for the ``pathspider`` CLI)."""
    parser = subparsers.add_parser(
        "restore", help="put back sysctls and nftables tables a killed run left changed",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", dest="restore_list",
                        help="only show what the journal of this network namespace holds "
                             "(and who holds its lock); change nothing")
    parser.set_defaults(func=main)
    return parser


def _error(message):
    print(f"pathspider restore: {message}", file=sys.stderr)
    return 1


def _current_sysctl(name):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as stream:
            return stream.read().strip()
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def _show(status):
    """``--list``: what the journal holds, with the values now in force."""
    if status.holder is not None:
        print(f"held by a running pathspider run ({sysstate.describe(status.holder)})")
    if status.journal is None:
        if status.holder is None:
            print("nothing to restore in this network namespace")
        return 0
    owner = status.journal.get("owner") or {}
    state = "running" if sysstate.is_alive(owner) else "ended"
    print(f"journal {status.path} of pathspider run ({sysstate.describe(owner)}, {state}):")
    entries = status.journal.get("entries", [])
    for entry in entries:
        if entry.get("kind") == "sysctl":
            print(f"  sysctl {entry.get('name')}: original {entry.get('original')}, "
                  f"now {_current_sysctl(str(entry.get('name')))}")
        elif entry.get("kind") == "nft":
            print(f"  nftables table {entry.get('family', 'inet')} {entry.get('name')}")
        else:
            print(f"  unknown entry {entry!r}")
    if not entries:
        print("  (no entries)")
    return 0


def main(args):
    """Run the sub-command; returns the exit status."""
    try:
        status = sysstate.journal_status()
        if getattr(args, "restore_list", False):
            return _show(status)
        if status.holder is None and status.path is not None \
                and os.path.dirname(status.path) != sysstate.journal_dir():
            return _error(f"the journal {status.path} was written by a run with other "
                          "privileges; run 'pathspider restore' as that user (root)")
        report = sysstate.repair()
    except sysstate.SystemStateError as exc:
        return _error(str(exc))
    if report is None:
        print("nothing to restore in this network namespace")
        return 0
    who = sysstate.describe(report.owner)
    if report.discarded:
        print(f"discarded the journal {report.path} of a network namespace that no longer "
              f"exists (left by pathspider run {who}); nothing was changed")
    elif report.restored:
        print(f"restored system state left by pathspider run ({who}):")
        for action in report.restored:
            print(f"  {action}")
        for item in report.unchanged:
            print(f"  already back: {item}")
    else:
        print(f"nothing to restore in this network namespace (removed the journal of "
              f"pathspider run ({who}); already back: {', '.join(report.unchanged) or '-'})")
    return 0
