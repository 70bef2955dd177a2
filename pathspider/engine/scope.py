"""Which targets a run may measure: the default blocklist, ``--blocklist``, ``--allowlist``,
``--allow``, and the lab's own ranges inside the lab.

The run's feeder passes every job through :meth:`ScopeFilter.admit`; a target out of scope is
skipped before it reaches the engine (no packet is sent to it), counted per kind, and each kind
is warned about once (not once per target, so a list of a million private addresses gives one
line, not a million). The summary line and ``TargetStats.out_of_scope`` carry the counts.

Rules, strongest first:

1. ``--blocklist FILE`` entries: always skipped, whatever else says.
2. The most specific entry among ``--allowlist FILE`` entries and the default blocklist
   (:mod:`pathspider.engine.special_ranges`) decides; at equal prefixes the allowlist wins. So
   an allowlist naming ``127.0.0.1/32`` lifts the default for that address, but an allowlist
   of ``0.0.0.0/0`` does not lift ``127.0.0.0/8``. A target measured because an allowlist
   entry beat the default blocklist gets one warning per kind.
3. With an allowlist, a target inside no allowlist entry is skipped.

``--allow`` drops the default blocklist (one warning). Inside the lab (see
:func:`lab_client_namespace`) the default entries for the lab's own ranges, 198.18.0.0/15 and
2001:db8::/32, are dropped, nothing else.

Lookups are sorted-interval searches: every entry becomes integer ranges per address family,
flattened once into disjoint segments with their verdict, and a target costs one ``bisect`` on
those (well under a microsecond; ``benchmarks/scope.py`` measures it).
"""

import bisect
import ipaddress
import logging
import os
import re
import socket
from collections import Counter, namedtuple

from pathspider.engine import special_ranges

log = logging.getLogger("pathspider.engine.scope")

#: Set by ``pathspider lab exec`` and ``Lab.exec_in_client`` to the lab's name (the value of
#: ``pathspider.lab.lab.IN_LAB_ENV``; the engine may not import the lab).
IN_LAB_ENV = "PATHSPIDER_IN_LAB"
#: Where named network namespaces are bound (``ip netns``), and the lab client's suffix.
NETNS_DIR = "/run/netns"
CLIENT_SUFFIX = "-client"
#: The lab's vantages (``pathspider lab up --vantages N``) are further client namespaces,
#: ``<name>-v1`` ... ``<name>-v8`` (``pathspider.lab.plan.VANTAGE_NAMES``).
VANTAGE_SUFFIXES = tuple(f"-v{k}" for k in range(1, 9))
_LAB_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,7}")
#: Longest line of a CIDR file (bytes, without its newline).
MAX_CIDR_LINE = 1024

#: A verdict: measure it or not, the kind counted and warned about, and the warning's text.
Rule = namedtuple("Rule", "measure kind text")

_NOT_AN_ADDRESS = Rule(False, "not an IP address", "it is not an IP address")
_SKIP_WARNING = "not measuring {ip}: {text}; more such targets are counted in the summary only"
_LIFT_WARNING = ("measuring {ip} although it is {text}: --allowlist names it; more such targets "
                 "are not logged")


class ScopeError(ValueError):
    """A scope option that cannot be used (a bad line in a CIDR file, a file that cannot be
    read); the message is one line naming the file and line."""


# -- CIDR files ------------------------------------------------------------------------------

def read_cidr_file(path):
    """The networks listed in ``path``: one CIDR (or bare address) per line, ``#`` starts a
    comment, blank lines are ignored (the format zmap and masscan use). IPv4-mapped IPv6
    networks (``::ffff:10.0.0.0/104``) become IPv4 ones, as targets do. Raises
    :class:`ScopeError` naming the file and line for the first bad line."""
    networks = []
    try:
        with open(path, "rb") as stream:
            lineno = 0
            while True:
                raw = stream.readline(MAX_CIDR_LINE + 2)
                if not raw:
                    return networks
                lineno += 1
                network = _parse_cidr_line(raw, path, lineno)
                if network is not None:
                    networks.append(network)
    except OSError as exc:
        raise ScopeError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse_cidr_line(raw, path, lineno):
    """One line's network, None for a blank or comment line; ScopeError if bad."""
    def bad(why):
        return ScopeError(f"{path}, line {lineno}: {why}")
    if len(raw.rstrip(b"\r\n")) > MAX_CIDR_LINE:
        raise bad(f"longer than {MAX_CIDR_LINE} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise bad("not ASCII text") from None
    text = text.split("#", 1)[0].strip()
    if not text:
        return None
    if not all(c.isalnum() or c in ".:/" for c in text):
        raise bad(f"{_shown(text)} is not a network in CIDR notation (e.g. 192.0.2.0/24)")
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        hint = ""
        if "host bits set" in str(exc):
            hint = f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
        raise bad(f"{_shown(text)} is not a network in CIDR notation{hint}") from None
    return _unmapped(network)


def _shown(text):
    return repr(text if len(text) <= 60 else text[:60] + "...")


def _unmapped(network):
    mapped = network.version == 6 and network.prefixlen >= 96 and \
        network.network_address.ipv4_mapped is not None
    if not mapped:
        return network
    return ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/"
                                f"{network.prefixlen - 96}")


# -- sorted interval maps --------------------------------------------------------------------

#: Entry sources, in order of precedence between identical prefixes (later wins).
DEFAULT, ALLOW, BLOCK = 0, 1, 2
_Entry = namedtuple("_Entry", "start end source rule")


class RangeMap:
    """Disjoint integer segments of one address family, each with a verdict (a :class:`Rule`
    or None): ``starts[i]`` is where segment ``i`` begins; it runs to the next start."""

    def __init__(self, entries, bits, allowlist_mode):
        self.starts, self.rules = [0], [None]
        self._size = 1 << bits
        self._allowlist_mode = allowlist_mode
        self._flatten(sorted(entries, key=lambda e: (e.start, -e.end, e.source)))

    def lookup(self, value):
        """The verdict for the address whose integer value is ``value``."""
        return self.rules[bisect.bisect_right(self.starts, value) - 1]

    def _flatten(self, entries):
        """Sweep over the entries (CIDRs nest or are disjoint, so open ones form a stack)."""
        stack = []
        for entry in entries:
            while stack and stack[-1].end < entry.start:
                self._emit(stack.pop().end + 1, stack)
            stack.append(entry)
            self._emit(entry.start, stack)
        while stack:
            self._emit(stack.pop().end + 1, stack)

    def _emit(self, position, stack):
        """From ``position`` on, the verdict is that of the entries open in ``stack``."""
        if position >= self._size:
            return
        rule = self._verdict(stack)
        if self.starts and self.starts[-1] == position:
            self.starts.pop()
            self.rules.pop()
        if self.rules and self.rules[-1] == rule:
            return
        self.starts.append(position)
        self.rules.append(rule)

    def _verdict(self, stack):
        """The verdict where the entries in ``stack`` (outermost first) are open."""
        for entry in reversed(stack):       # an explicit blocklist entry wins anywhere
            if entry.source == BLOCK:
                return entry.rule
        top = stack[-1] if stack else None
        if top is not None and top.source == DEFAULT and not top.rule.measure:
            return top.rule                 # the most specific entry is a blocked range
        if self._allowlist_mode and not any(entry.source == ALLOW for entry in stack):
            return self._allowlist_mode
        if top is not None and top.source == ALLOW:
            beaten = next((e for e in reversed(stack) if e.source == DEFAULT), None)
            if beaten is not None and not beaten.rule.measure:
                return Rule(True, f"{beaten.rule.kind} (allowlisted)",
                            f"{beaten.rule.kind} space")
        return None


# -- the filter ------------------------------------------------------------------------------

class ScopeFilter:
    """Decides, per target, whether the run measures it, and counts what it skipped."""

    def __init__(self, maps, stats=None):
        self._maps = maps                   # {4: RangeMap, 6: RangeMap}, or None: no filter
        self.stats = stats
        self.skipped = Counter()            # kind -> targets skipped
        self.lifted = Counter()             # kind -> targets measured by allowlist
        self.notes = []                     # (level, message): logged when reading starts
        self._warned = set()

    @property
    def skipped_total(self):
        return sum(self.skipped.values())

    def check(self, ip):
        """The :class:`Rule` for address text ``ip`` (canonical, as the target reader gives
        it), or None: measure it."""
        if self._maps is None:
            return None
        try:
            if ":" in ip:
                return self._maps[6].lookup(int.from_bytes(socket.inet_pton(
                    socket.AF_INET6, ip), "big"))
            return self._maps[4].lookup(int.from_bytes(socket.inet_pton(
                socket.AF_INET, ip), "big"))
        except (OSError, TypeError, ValueError):
            return _NOT_AN_ADDRESS

    def admit(self, jobs):
        """Yield the jobs of ``jobs`` (1.0 job lists, address first) that are in scope. What
        was lifted (``--allow``, the lab) is logged here, once the run reads its targets, so
        that a run refused before it starts says only why."""
        for level, message in self.notes:
            log.log(level, "%s", message)
        if self._maps is None:
            yield from jobs
            return
        check = self.check
        for job in jobs:
            rule = check(job[0])
            if rule is None:
                yield job
            elif rule.measure:
                self.lifted[rule.kind] += 1
                self._warn_once(rule, job[0], _LIFT_WARNING)
                yield job
            else:
                self._skip(rule, job[0])

    def _skip(self, rule, ip):
        self.skipped[rule.kind] += 1
        if self.stats is not None:
            self.stats.out_of_scope += 1
        self._warn_once(rule, ip, _SKIP_WARNING)

    def _warn_once(self, rule, ip, template):
        if rule.kind not in self._warned:
            self._warned.add(rule.kind)
            log.warning(template.format(ip=ip, text=rule.text))

    def summary(self):
        """``N out of scope (a kind, b kind)`` for the summary line, or "" if none."""
        if not self.skipped:
            return ""
        kinds = ", ".join(f"{count} {kind}" for kind, count in self.skipped.most_common())
        return f"{self.skipped_total} targets out of scope not measured: {kinds}"


def build_filter(allow=False, blocklists=(), allowlists=(), lab=None, stats=None):
    """The :class:`ScopeFilter` for these options; ``lab`` is the lab name the run is verified
    to be inside (its ranges leave the default blocklist). Raises :class:`ScopeError`."""
    entries = {4: [], 6: []}
    if not allow:
        lifted = special_ranges.LAB_RANGES if lab else ()
        for item in special_ranges.ALL:
            if item.network not in lifted:
                _add(entries, ipaddress.ip_network(item.network), DEFAULT, _default_rule(item))
    for path in blocklists:
        rule = Rule(False, "--blocklist", f"it is listed in --blocklist {path}")
        for network in read_cidr_file(path):
            _add(entries, network, BLOCK, rule)
    allowlist_mode = None
    for path in allowlists:
        allowlist_mode = Rule(False, "not in --allowlist",
                              f"it is in no range of --allowlist {', '.join(allowlists)}")
        rule = Rule(True, "--allowlist", "")
        for network in read_cidr_file(path):
            _add(entries, network, ALLOW, rule)
    if not any(entries.values()) and allowlist_mode is None:
        return ScopeFilter(None, stats)
    return ScopeFilter({4: RangeMap(entries[4], 32, allowlist_mode),
                        6: RangeMap(entries[6], 128, allowlist_mode)}, stats)


def _default_rule(item):
    if not item.blocked:
        return Rule(True, item.name, "")
    return Rule(False, item.name, f"it is {item.name} space ({item.rfc}), a special-use "
                "range (--allow, or an --allowlist naming it, measures it)")


def _add(entries, network, source, rule):
    start = int(network.network_address)
    size = 1 << (network.max_prefixlen - network.prefixlen)
    entries[network.version].append(_Entry(start, start + size - 1, source, rule))


# -- the lab ---------------------------------------------------------------------------------

def lab_client_namespace(environ=None):
    """The lab's name if this process runs inside that lab's client namespace, else None.

    ``pathspider lab exec`` (and ``Lab.exec_in_client``, ``Lab.exec_in_vantage``) set
    ``$PATHSPIDER_IN_LAB`` to the lab's name. The variable alone proves nothing (it may be set
    by hand, or leak into a shell outside the lab), so it counts only if this process's network
    namespace (``/proc/self/ns/net``) is the one bound at ``/run/netns/<name>-client`` or at
    one of the lab's vantages, ``/run/netns/<name>-v1`` ... ``-v8``. A variable that does not
    check out gets one warning and lifts nothing.
    """
    environ = os.environ if environ is None else environ
    name = environ.get(IN_LAB_ENV)
    if not name:
        return None
    if not _LAB_NAME_RE.fullmatch(name):
        log.warning("$%s=%r is not a lab name; the lab's ranges stay blocked",
                    IN_LAB_ENV, name[:40])
        return None
    netns = os.path.join(NETNS_DIR, name + CLIENT_SUFFIX)
    try:
        own, lab = os.stat("/proc/self/ns/net"), os.stat(netns)
    except OSError as exc:
        log.warning("$%s names lab %s, but its client namespace cannot be checked (%s); the "
                    "lab's ranges stay blocked", IN_LAB_ENV, name, exc.strerror or exc)
        return None
    if (own.st_dev, own.st_ino) != (lab.st_dev, lab.st_ino) and not _in_vantage(own, name):
        log.warning("$%s names lab %s, but this run is not in its client namespace %s (nor "
                    "in one of its vantages'); the lab's ranges stay blocked",
                    IN_LAB_ENV, name, netns)
        return None
    return name


def _in_vantage(own, name):
    """Whether ``own`` (a stat of this process's namespace) is one of lab ``name``'s vantage
    namespaces, ``/run/netns/<name>-v<k>``."""
    for suffix in VANTAGE_SUFFIXES:
        try:
            found = os.stat(os.path.join(NETNS_DIR, name + suffix))
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (found.st_dev, found.st_ino):
            return True
    return False


def scope_for_run(args, stats=None):
    """The :class:`ScopeFilter` of a run from its parsed arguments (``allow``, ``blocklist``,
    ``allowlist``; absent means the default: the default blocklist, lifted for the lab's
    ranges inside the lab). Logs what was lifted. Raises :class:`ScopeError`."""
    allow = bool(getattr(args, "allow", False))
    blocklists = list(getattr(args, "blocklist", None) or ())
    allowlists = list(getattr(args, "allowlist", None) or ())
    lab = None if allow else lab_client_namespace()
    scope = build_filter(allow, blocklists, allowlists, lab, stats)
    if allow:
        scope.notes.append((logging.WARNING, "--allow: the default blocklist is lifted; "
                            "private, loopback, link-local, multicast, documentation and other "
                            "special-use addresses are measured"))
    elif lab:
        scope.notes.append((logging.INFO, f"inside lab {lab}: its ranges "
                            f"{' and '.join(special_ranges.LAB_RANGES)} are measured"))
    return scope
