"""``pathspider observe``: run chosen Observer chains over a pcap or a live interface.

Prints one JSON flow record per line, so a plugin author can see what chains produce on
captured traffic without running a measurement::

    pathspider observe --chains basic,tcp,ecn trace.pcap
    pathspider observe --chains basic,tcp,tfo -r trace.pcapng
    pathspider observe --chains basic,dscp int:eth0          # live; Ctrl-C ends it
    pathspider observe --list-chains

The source is a positional ``SOURCE`` or ``--source``: a libtrace-style URI (``int:IFACE``,
``ring:IFACE``, ``pcap:PATH``, ``pcapfile:PATH``), a file path (pcap or pcapng), or the name of
an existing network interface (captured live). ``-r/--read FILE`` reads a file. Without any
of these, the global ``-i/--interface`` is captured live (``pathspider -i eth0 observe``).
Records go to ``--out FILE``, else to the global ``--output`` (default stdout).

Standalone, without the CLI: ``python -m pathspider.cli.observe [OPTIONS] [SOURCE]``.

Exit status: 0 on success (also when a live capture is ended by Ctrl-C or SIGTERM: the
capture buffer is drained and all flows are flushed first), 1 for an unknown chain or a source
that cannot be opened, 130 when reading a file is interrupted.
"""
import argparse
import json
import logging
import os
import signal
import sys
import threading

from pathspider.observer import chains as registry

logger = logging.getLogger("pathspider.cli.observe")

DEFAULT_CHAINS = 'basic,tcp'


def register_args(subparsers):
    """Add the ``observe`` sub-command to the CLI's subparsers."""
    parser = subparsers.add_parser(
        'observe', help='run Observer chains over a pcap file or an interface',
        description='Run Observer chains over a pcap/pcapng file or a live interface and '
                    'print one JSON flow record per line.')
    parser.add_argument('source_pos', nargs='?', metavar='SOURCE',
                        help='pcap/pcapng file, libtrace URI (int:IFACE, pcap:PATH) or '
                             'interface name')
    parser.add_argument('--source', dest='source_opt', metavar='SOURCE',
                        help='the same as the positional SOURCE')
    parser.add_argument('-r', '--read', metavar='FILE', help='read a pcap/pcapng file')
    parser.add_argument('--chains', default=DEFAULT_CHAINS, metavar='NAMES',
                        help='comma-separated chains to run (default: %(default)s; see '
                             '--list-chains)')
    parser.add_argument('--list-chains', action='store_true',
                        help='list the chains with their fields and exit')
    parser.add_argument('--out', dest='observe_out', metavar='FILE',
                        help='write records here (default: the global --output, stdout)')
    parser.add_argument('--bpf', metavar='FILTER',
                        help='capture filter (tcpdump syntax), e.g. "tcp port 80"')
    parser.add_argument('--idle-timeout', type=_timer_seconds, default=30, metavar='S',
                        help='complete flows idle this long (packet clock; default 30)')
    parser.add_argument('--expiry-timeout', type=_timer_seconds, default=5, metavar='S',
                        help='emit completed flows this long after completion (default 5)')
    parser.add_argument('--stats', action='store_true',
                        help='print the Observer counters as JSON on stderr at the end')
    parser.set_defaults(func=main)
    return parser


def _timer_seconds(text):
    """argparse type for the Observer's timers: whole seconds, 1 to 86400."""
    if not text.strip().isdigit() or not text.strip().isascii():
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}")
    value = int(text)
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be 1 to 86400 seconds: {text!r}")
    return value


def resolve_source(args):
    """The libtrace-style URI to observe, from the sub-command's or the global options."""
    given = [s for s in (getattr(args, 'source_pos', None), getattr(args, 'source_opt', None))
             if s]
    read = getattr(args, 'read', None)
    if read:
        given.append('pcap:' + read)
    if len(given) > 1:
        raise ValueError('give one source (SOURCE, --source or --read), not %d' % len(given))
    if given:
        source = given[0]
        if ':' not in source and not os.path.exists(source) and _is_interface(source):
            return 'int:' + source
        return source
    iface = getattr(args, 'interface', None)
    if iface:
        return iface if ':' in iface else 'int:' + iface
    raise ValueError('no source: give a pcap file, a URI such as int:eth0, or -r FILE')


def _is_interface(name):
    return '/' not in name and os.path.exists(os.path.join('/sys/class/net', name))


class _Stopper:
    """SIGINT/SIGTERM set an Event (a second Ctrl-C interrupts for real); restored on exit."""

    def __init__(self, live):
        self.event = threading.Event()
        self.live = live
        self.saved = {}

    def __enter__(self):
        if self.live and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        logger.info('signal %d: draining the capture and flushing flows', signum)
        self.event.set()

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _open_output(args):
    path = getattr(args, 'observe_out', None) or getattr(args, 'output', None)
    if path in (None, '-', '/dev/stdout'):
        return sys.stdout, False
    return open(path, 'w'), True


def _error(msg):
    sys.stderr.write('pathspider observe: error: %s\n' % msg)
    return 1


def main(args):
    """Run the sub-command; returns the exit status."""
    if getattr(args, 'list_chains', False):
        sys.stdout.write(registry.describe())
        return 0
    try:
        names = registry.parse_names(getattr(args, 'chains', None) or DEFAULT_CHAINS)
        lturi = resolve_source(args)
        observer = registry.observer_for(
            lturi, names, bpf=getattr(args, 'bpf', None),
            idle_timeout=getattr(args, 'idle_timeout', 30),
            expiry_timeout=getattr(args, 'expiry_timeout', 5))
        observer.start_capture()
    except Exception as exc:      # unknown chain, bad URI, missing file, permission...
        return _error(str(exc) or type(exc).__name__)
    out, close = _open_output(args)
    live = observer.source.live
    status = 0
    try:
        with _Stopper(live) as stopper:
            if live:      # announced once the signal handlers are in place
                sys.stderr.write('pathspider observe: capturing on %s (Ctrl-C to stop)\n'
                                 % lturi)
                sys.stderr.flush()
            status = _write_records(observer, stopper.event, out, live)
    except BrokenPipeError:
        status = 0                 # e.g. piped into head: the reader has what it wanted
        _silence_stdout()
    except KeyboardInterrupt:
        status = 130
    finally:
        if close:
            out.close()
    if getattr(args, 'stats', False):
        sys.stderr.write(json.dumps(observer.stats(), sort_keys=True) + '\n')
    return status


def _write_records(observer, stop, out, live):
    dumps = json.dumps
    write = out.write
    for rec in observer.flows(stop):
        write(dumps(rec) + '\n')
        if live:
            out.flush()
    out.flush()
    return 0


def _silence_stdout():
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def standalone(argv=None):
    """``python -m pathspider.cli.observe``: the sub-command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog='pathspider-observe')
    parser.add_argument('-i', '--interface', default=None,
                        help='interface to capture when no SOURCE is given')
    parser.add_argument('--output', default='/dev/stdout', help='records file')
    parser.add_argument('-v', '--verbose', action='store_true', help='log progress')
    sub = parser.add_subparsers(dest='cmd')
    register_args(sub)
    args = parser.parse_args(['observe'] + list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(standalone())
