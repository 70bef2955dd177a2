"""``pathspider dnsresolv``: turn a ``rank,domain`` list into a PATHspider target list.

Reads an Alexa-style CSV (``rank,domain`` per line) from ``--input`` and writes one target row
``ip,port,domain,rank`` per address to ``--output``, ready to be fed to a measurement plugin.
A and AAAA records are both looked up (``--family`` restricts this). Options as in 1.0, with
its defects fixed:

* ``--www never|preferred|always|both`` decides whether ``www.`` is put in front of the name
  (never twice); ``both`` really resolves both names (1.0 killed a worker thread instead).
* ``--add-port`` defaults to 80 so that the output is usable plugin input; ``--no-port`` gives
  1.0's three-column ``ip,domain,rank`` rows.
* Queries run in parallel (``--parallel``, default the global ``-w``) under a rate limit
  (``--rate`` queries per second, a token bucket whose waiters sleep exactly until their slot).
* Every result is written before the command returns, in input order (1.0 could lose the last
  ones). A name that does not resolve is reported with its line number and skipped; so is a
  malformed input row.
* ``--nameserver IP[:PORT]`` (repeatable; ``[v6]:port`` for IPv6) replaces the system resolver
  configuration, e.g. to use the lab's DNS server.

Rows carry the name that was actually resolved (``www.example.org`` when the www. name was used),
because that is the name a plugin should send in an HTTP Host header.
"""
import argparse
import collections
import csv
import ipaddress
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.nameserver
import dns.resolver

from pathspider.client.names import dns_name
from pathspider.engine.targets import (BadTarget, is_ignored, parse_rank, read_lines, shown,
                                       split_fields)

log = logging.getLogger("pathspider.cli.dnsresolv")

DEFAULT_TIMEOUT = 10.0
DEFAULT_PORT = 80
DEFAULT_RATE = 200.0
WINDOW_PER_WORKER = 4
"""Names in flight per parallel worker; bounds memory while keeping the output ordered."""

Entry = collections.namedtuple("Entry", ["lineno", "rank", "domain"])
Lookup = collections.namedtuple("Lookup", ["name", "addresses", "errors"])


class RateLimiter:
    """Token bucket (GCRA form): at most ``rate`` acquisitions per second, bursts of ``burst``.

    ``acquire()`` reserves the next slot under a lock and then waits once, exactly until that
    slot (on an Event, so :meth:`close` releases every waiter). A rate of 0 means no limit.
    """

    def __init__(self, rate, burst=1):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.tolerance = self.interval * max(burst - 1, 0)
        self._tat = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def acquire(self):
        """Block until the caller may send one query; returns False once closed."""
        if not self.interval:
            return not self._closed.is_set()
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            start = tat - self.tolerance
            self._tat = tat + self.interval
        delay = start - now
        if delay > 0:
            self._closed.wait(delay)
        return not self._closed.is_set()

    def close(self):
        """Wake every waiter and refuse further acquisitions."""
        self._closed.set()


def parse_nameserver(text):
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> (address, port)."""
    text = text.strip()
    port = 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad nameserver {text!r}: expected [IPv6]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    else:
        host = text
    address = str(ipaddress.ip_address(host))
    if not 0 < port < 65536:
        raise ValueError(f"bad nameserver port {port} in {text!r}")
    return address, port


def www_name(domain):
    """``www.`` + domain, unless the domain already starts with ``www.``."""
    return domain if domain.lower().startswith("www.") else "www." + domain


def names_for(domain, mode):
    """The names to resolve, in order, for a ``--www`` mode (``preferred`` falls back later)."""
    if mode == "never":
        return [domain]
    if mode == "always":
        return [www_name(domain)]
    if mode == "both":
        return list(dict.fromkeys([domain, www_name(domain)]))
    return [www_name(domain)]  # preferred: www first, the bare name only if that fails


class Resolution:
    """Resolves names with one dnspython resolver per thread, rate-limited per query."""

    def __init__(self, timeout, nameservers, limiter, rdtypes=("A", "AAAA"), all_addresses=False):
        self.timeout = timeout
        self.nameservers = nameservers
        self.limiter = limiter
        self.rdtypes = rdtypes
        self.all_addresses = all_addresses
        self._local = threading.local()

    def _resolver(self):
        resolver = getattr(self._local, "resolver", None)
        if resolver is None:
            resolver = dns.resolver.Resolver(configure=not self.nameservers)
            if self.nameservers:
                resolver.nameservers = [dns.nameserver.Do53Nameserver(addr, port)
                                        for addr, port in self.nameservers]
            resolver.timeout = self.timeout
            resolver.lifetime = self.timeout
            self._local.resolver = resolver
        return resolver

    def query(self, name, rdtype):
        """Addresses of one type for a name: (list of address strings, error text or None)."""
        if not self.limiter.acquire():
            return [], "cancelled"
        try:
            answer = self._resolver().resolve(name, rdtype, search=False,
                                              raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return [], "NXDOMAIN"
        except dns.resolver.NoNameservers as exc:
            return [], f"no nameserver answered ({exc.__class__.__name__})"
        except dns.exception.Timeout:
            return [], f"timeout after {self.timeout:g} s"
        except dns.exception.DNSException as exc:
            return [], f"{exc.__class__.__name__}: {exc}"
        addresses = [rr.address for rr in answer.rrset] if answer.rrset is not None else []
        if not addresses:
            return [], f"no {rdtype} record"
        return addresses if self.all_addresses else addresses[:1], None

    def lookup(self, name):
        """A (and AAAA) addresses of one name as a :class:`Lookup`."""
        addresses, errors = [], []
        for rdtype in self.rdtypes:
            found, error = self.query(name, rdtype)
            addresses.extend(found)
            if error:
                errors.append(f"{rdtype}: {error}")
        return Lookup(name, addresses, errors)


def resolve_entry(resolution, entry, mode):
    """All lookups for one input entry under a ``--www`` mode (list of :class:`Lookup`)."""
    lookups = [resolution.lookup(name) for name in names_for(entry.domain, mode)]
    if mode == "preferred" and not lookups[0].addresses:
        bare = entry.domain
        if bare.lower() != lookups[0].name.lower():
            lookups.append(resolution.lookup(bare))
    return lookups


def read_entries(stream, skip=0, count=0):
    """Yield :class:`Entry` objects from ``rank,domain`` lines; bad rows are warned and skipped.

    ``stream`` is what :func:`pathspider.engine.targets.read_lines` takes (a binary file, a
    descriptor, text lines): the same line rules as for target lists, so quoting never spans
    lines, a BOM is dropped and an over-long or non-UTF-8 line is one bad row. Domains are
    checked with :func:`~pathspider.client.names.dns_name` and kept in its A-label form.
    """
    taken = 0
    for lineno, text in read_lines(stream):
        if lineno <= skip:
            continue
        try:
            entry = _entry(lineno, text)
        except BadTarget as exc:
            log.warning("input line %d: %s; skipped", lineno, exc)
            continue
        if entry is None:
            continue
        yield entry
        taken += 1
        if count and taken >= count:
            return


def _entry(lineno, text):
    """The :class:`Entry` of one input line, None for a blank or comment line, or BadTarget."""
    if isinstance(text, BadTarget):
        raise text
    if is_ignored(text):
        return None
    row = split_fields(text)
    if len(row) < 2:
        raise BadTarget(f"expected 'rank,domain', got {shown(text)}")
    try:
        domain = dns_name(row[1].strip())
    except ValueError as exc:
        raise BadTarget(f"{shown(row[1])} is not a domain name ({exc})") from None
    return Entry(lineno, parse_rank(row[0]), domain)


class Writer:
    """Writes target rows for resolved entries and keeps the counts for the final log line."""

    def __init__(self, stream, port):
        self._csv = csv.writer(stream, lineterminator="\n")
        self.port = port
        self.names = self.resolved = self.unresolved = self.rows = 0

    def write(self, entry, lookups):
        self.names += 1
        wrote = False
        for lookup in lookups:
            for address in lookup.addresses:
                row = [address, lookup.name, entry.rank]
                if self.port is not None:
                    row.insert(1, self.port)
                self._csv.writerow(row)
                self.rows += 1
                wrote = True
        if wrote:
            self.resolved += 1
        else:
            self.unresolved += 1
            reasons = "; ".join(f"{lk.name}: {', '.join(lk.errors) or 'no address'}"
                                for lk in lookups)
            log.warning("input line %d: %s does not resolve (%s); skipped", entry.lineno,
                        entry.domain, reasons)


def run(entries, writer, resolution, mode, parallel):
    """Resolve ``entries`` with ``parallel`` threads, writing results in input order."""
    window = max(parallel * WINDOW_PER_WORKER, 1)
    pending = collections.deque()
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dnsresolv") as pool:
        try:
            for entry in entries:
                pending.append((entry, pool.submit(resolve_entry, resolution, entry, mode)))
                while len(pending) >= window:
                    done_entry, future = pending.popleft()
                    writer.write(done_entry, future.result())
            while pending:
                done_entry, future = pending.popleft()
                writer.write(done_entry, future.result())
        except BaseException:
            resolution.limiter.close()
            for _, future in pending:
                future.cancel()
            raise


def main(args):
    """Entry point of the ``dnsresolv`` sub-command; returns the exit status."""
    try:
        nameservers = [parse_nameserver(ns) for ns in (args.nameserver or [])]
    except ValueError as exc:
        log.error("dnsresolv: %s", exc)
        return 2
    parallel = args.parallel or getattr(args, "workers", None) or 10
    if parallel < 1 or args.timeout <= 0 or args.rate < 0:
        log.error("dnsresolv: --parallel and --timeout must be positive, --rate not negative")
        return 2
    if getattr(args, "sleep", 0):
        log.warning("dnsresolv: --sleep is ignored (as in 1.0); use --rate to limit queries")
    rdtypes = {"4": ("A",), "6": ("AAAA",), "both": ("A", "AAAA")}[args.family]
    limiter = RateLimiter(args.rate, burst=max(1, min(parallel, int(args.rate // 10) or 1)))
    resolution = Resolution(args.timeout, nameservers, limiter, rdtypes, args.all_addresses)
    port = None if args.no_port else args.add_port
    input_path = getattr(args, "input", None) or "/dev/stdin"
    output_path = getattr(args, "output", None) or "/dev/stdout"
    started = time.monotonic()
    try:
        with open(input_path, "rb") as infile, \
                open(output_path, "w", newline="") as outfile:
            writer = Writer(outfile, port)
            entries = read_entries(infile, args.debug_skip, args.debug_count)
            run(entries, writer, resolution, args.www, parallel)
    except OSError as exc:
        log.error("dnsresolv: %s", exc)
        return 1
    elapsed = max(time.monotonic() - started, 1e-9)
    log.info("dnsresolv: %d names, %d resolved, %d unresolvable, %d rows written in %.1f s "
             "(%.1f names/s)", writer.names, writer.resolved, writer.unresolved, writer.rows,
             elapsed, writer.names / elapsed)
    return 0


def _port(text):
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError(text)
    return value


def register_args(subparsers):
    """Add the ``dnsresolv`` sub-command (uses the global --input, --output and -w)."""
    parser = subparsers.add_parser(
        "dnsresolv", help="Resolve a rank,domain list into an ip,port,domain,rank target list",
        description="Resolves the names of a 'rank,domain' CSV (--input) into target rows "
                    "'ip,port,domain,rank' (--output): the first A and the first AAAA address "
                    "of each name. Unresolvable names and malformed rows are reported with "
                    "their line number and skipped.")
    parser.add_argument("-t", "--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds a query may take (default %(default)s)")
    parser.add_argument("-p", "--add-port", type=_port, default=DEFAULT_PORT, metavar="PORT",
                        help="port written as second column (default %(default)s)")
    parser.add_argument("--no-port", action="store_true",
                        help="write 1.0's 'ip,domain,rank' rows without a port column")
    parser.add_argument("--www", choices=["never", "preferred", "always", "both"],
                        default="preferred",
                        help="use the name as given (never), www. first with fallback to the "
                             "name (preferred, default), only www. (always), or both names")
    parser.add_argument("--family", choices=["4", "6", "both"], default="both",
                        help="look up A (4), AAAA (6) or both (default)")
    parser.add_argument("--all-addresses", action="store_true",
                        help="write every address, not only the first of each family")
    parser.add_argument("--parallel", type=int, default=None, metavar="N",
                        help="names resolved in parallel (default: the global -w/--workers)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="QPS",
                        help="at most this many queries per second, 0 for no limit "
                             "(default %(default)s)")
    parser.add_argument("--nameserver", action="append", metavar="IP[:PORT]",
                        help="query this server instead of /etc/resolv.conf's (repeatable; "
                             "[IPv6]:PORT for IPv6 with a port)")
    parser.add_argument("-s", "--sleep", type=float, default=0,
                        help=argparse.SUPPRESS)  # 1.0 option, ignored
    parser.add_argument("--debug-skip", type=int, default=0, metavar="N",
                        help="skip the first N input lines")
    parser.add_argument("--debug-count", type=int, default=0, metavar="N",
                        help="resolve at most N names (0: all)")
    parser.set_defaults(func=main)
    return parser

