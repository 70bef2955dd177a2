"""The Observer's flow table: packets in, flow records out, timed by the packet clock.

This is the per-packet engine behind :class:`pathspider.observer.Observer`, with the semantics
of PATHspider 1.0's Observer:

* A flow is keyed bidirectionally by its 5-tuple (TCP, UDP, SCTP, UDP-Lite; IPv4 and IPv6) or
  3-tuple (other protocols). Its forward direction is the direction of its first packet;
  ``rev`` tells chain functions whether a packet goes the other way.
* A new flow gets a record ``{'first': t}`` and runs the ``new_flow`` chain ``fn(rec, ip)``;
  a falsy return vetoes the flow: its later packets are ignored.
* Every packet runs ``ip4``/``ip6`` ``fn(rec, ip, rev)``, then for ICMP ``icmp4``/``icmp6``
  ``fn(rec, ip, q, rev)`` (``q`` = the quoted packet's IP view or None), then exactly one of
  ``tcp`` ``fn(rec, tcp, rev)``, ``udp`` ``fn(rec, udp, rev)`` or ``l4`` ``fn(rec, ip, rev)``.
  The first falsy return stops the remaining functions for that packet (in that chain and the
  following ones) and completes the flow.
* A completed flow keeps receiving packets for ``expiry_timeout`` seconds and is then emitted;
  a flow without packets for ``idle_timeout`` seconds is completed. Both run on 1-second bins
  of the packet clock (the timestamps of the packets), so replaying a pcap is deterministic.
  What is left is emitted by :meth:`FlowTable.flush`.
* ICMPv4 errors (types 3, 4, 5, 11, 12) and ICMPv6 errors (1, 2, 3, 4) quoting an IP header
  plus 8 bytes are attached to the flow of the quoted packet, as reverse-direction packets of
  it. A shorter quotation is keyed by the ICMP packet's own 3-tuple.
* A fresh SYN starts a new flow (a local port reused for the same target within the expiry
  or idle time). The flow remembers its initial sequence number (ISN): the sequence number
  and direction of its first pure SYN (SYN without ACK), whether that packet created the
  flow or came later. A pure SYN (a TCP packet, not an ICMP quotation) arriving on an
  existing flow

  - in the ISN's direction with another sequence number ends the old flow, whatever its
    state (active, completed or vetoed); with the same number it is a retransmission and
    stays in the flow;
  - on a flow without an ISN (its first packets were no pure SYN: the capture started
    mid-connection, or an ICMP error quoting the SYN came first), or in the direction
    opposite to the ISN, ends the old flow only if that flow is already completed. While
    the flow is active such a SYN stays in it: nothing tells a new connection from a late
    SYN of this one there, and in a simultaneous open both ends send a pure SYN, each with
    its own sequence number, in one connection; once FIN+FIN or an RST completed the flow,
    a pure SYN can only open a new connection. (On a flow without an ISN, a SYN that stays
    becomes its ISN.)

  Ending a flow this way emits it at once, with everything it had and before the new flow
  (a vetoed flow is forgotten); its pending timers skip it. The SYN then starts a new flow
  like any first packet: a new record through the ``new_flow`` chain, the SYN's direction
  forward. The ISN lives on the table's flow entry, never in the record.

Fixes relative to 1.0 (the numbers are PATHspider's upstream issues): IPv6 extension headers
are skipped before keying (#264); ICMPv6 errors are linked (#145); non-first IPv4/IPv6
fragments are mapped to the flow of their first fragment when it was seen (#144), else keyed
by 3-tuple; records never carry internal keys (#17); vetoed flows are forgotten after
``idle_timeout`` without packets instead of being remembered for the whole run; a chain
function that raises is logged and counted, the Observer goes on; a fresh SYN on a reused
port starts a new flow (1.0 merged the two connections into one record, leaving the other
connection unobserved).

Cost per packet (plain TCP/UDP over IPv4 without options or IPv6 without extension headers):
one ``struct`` call reads the header fields and the flow key (addresses and ports are
contiguous in such packets), one dict lookup with that raw-bytes key finds the flow (each flow
is stored under its forward and its reverse key, with the direction in the entry), no
per-packet timer bookkeeping (idle timers are re-armed lazily when their bin comes up), and
for a packet of a known flow one tuple lookup by its TCP flags (``flags`` is garbage for UDP:
the protocol is tested after it) to catch a pure SYN: only then is the sequence number read.
The chains run without a Python call per function: library functions carry inline forms
(:mod:`pathspider.observer.fastpath`) that are pasted, together with calls of the other
functions, into a copy of :meth:`FlowTable.process` made for the table's chains
(:func:`specialise_process`; :func:`compile_runner` when that copy cannot be made). The
header views are reused from packet to packet and only filled in when a called function (or
the new_flow chain) needs them; they are only valid during the call, as python-libtrace's
were (it reused one packet object): store values, not views. ``benchmarks/observer.py``
measures the result.
"""

import heapq
import inspect
import linecache
import logging
import math
import os
import struct
import textwrap
import traceback
import types

from pathspider.observer import dissector
from pathspider.observer.dissector import (IP4, IP6, TCP, UDP, ICMP, ICMP6, DissectError, Malformed,
                                  NotIP, Short, parse_ip)
from pathspider.observer.source import META

logger = logging.getLogger("pathspider.observer.flowtable")

# Flow states.
ACTIVE = 0      # receiving packets, idle timer armed
EXPIRING = 1    # completed; still receiving packets until its expiry bin comes up
IGNORED = 2     # vetoed by the new_flow chain; packets dropped until idle
GONE = 3        # emitted or forgotten; stale timer entries skip it

#: Transport protocols keyed by 5-tuple (they start with 16-bit source and destination ports).
PORT_PROTOS = frozenset((dissector.PROTO_TCP, dissector.PROTO_UDP, dissector.PROTO_SCTP,
                         dissector.PROTO_UDPLITE))

FRAGMAP_SIZE = 4096
"""How many first fragments are remembered to key later fragments of the same datagram."""

CHAIN_NAMES = ("new_flow", "ip4", "ip6", "icmp4", "icmp6", "tcp", "udp", "l4")

_MAX_LOGGED_ERRORS = 10

# Fast-path field readers (process), one struct call per packet. IPv4: version/IHL byte, TOS,
# total length, flags + fragment offset, protocol, the flow key (addresses and ports, which are
# contiguous without IP options) and the TCP data-offset and flag bytes (garbage for UDP,
# unused). IPv6: the first two bytes (version, traffic class), payload length, next header,
# the key (addresses and ports, contiguous without extension headers) and the same two TCP
# bytes. The Ethernet forms read the ethertype first.
_ETH4 = struct.Struct("!12xHBBH2xHxB2x12s8xBB").unpack_from      # 48 bytes
_ETH6 = struct.Struct("!12xHBB2xHBx36s8xBB").unpack_from         # 68 bytes
_HDR4 = struct.Struct("!BBH2xHxB2x12s8xBB").unpack_from          # 34 bytes
_HDR6 = struct.Struct("!BB2xHBx36s8xBB").unpack_from             # 54 bytes

# Lookup tables indexed by a header byte: tuple indexing is cheaper than shifts and masks
# (CPython specialises it; ``&``/``>>`` take the generic path).
_TCP_HLEN4 = tuple(20 + ((d >> 4) << 2) if d >= 0x50 else 1 << 20 for d in range(256))
"""IPv4 + TCP header length by TCP data-offset byte; out of reach for a data offset below 5."""
_TCP_HLEN6 = tuple(20 + h for h in _TCP_HLEN4)
"""IPv6 + TCP header length by TCP data-offset byte."""
_TCP_NS = tuple((d & 0x0F) << 8 for d in range(256))
"""The bits above the classic flag byte in python-libtrace's 12-bit ``flags``."""
_TC6_HI = tuple((b & 0x0F) << 4 for b in range(256))
_TC6_LO = tuple(b >> 4 for b in range(256))
"""IPv6 traffic class = ``_TC6_HI[byte 0] + _TC6_LO[byte 1]``."""
_UNFRAGMENTED = frozenset((0x0000, 0x4000, 0x8000, 0xC000))
"""IPv4 flags + fragment offset values of a packet that is not a fragment."""
_PURE_SYN = tuple(f & 0x12 == 0x02 for f in range(0x1000))
"""Is it a pure SYN (SYN without ACK)? Indexed by the 12-bit TCP ``flags``."""
_SEQ = struct.Struct("!I").unpack_from
"""The TCP sequence number at a given offset (read for pure SYNs only)."""
_SEQ_AT = (0, 0, 0, 0, 24, 0, 44)
"""Offset of the TCP sequence number from the IP header, by IP version (no options)."""


def compose_new_flow(fns, inline=True):
    """Compile the new_flow chain into ``keep(rec, ip)``: the functions joined with ``and``.

    A function with a new_flow :class:`~pathspider.observer.fastpath.FastPath` form is
    pasted in instead of being called (``inline``); the result is the same.
    """
    linemap = {}                        # line -> function, to name an inlined one that raised
    env = {"__chain_lines__": linemap}
    lines = ["def keep(rec, ip):"]
    for i, fn in enumerate(fns):
        form = getattr(fn, "fast_path", None) if inline else None
        if form is not None and not (form.chain == "new_flow" and form.uses <= {"ip"}
                                     and _merge_env(env, form.env)):
            form = None
        if form is None:
            env["fn_%d" % i] = fn
            body, result = [], "fn_%d(rec, ip)" % i
        else:
            body, result = form.code.splitlines(), form.result
        if i == len(fns) - 1:
            body = body + ["return " + result]
        elif result != "True":
            body = body + ["if not (%s):" % result, "    return False"]
        for line in body:
            lines.append("    " + line)
            linemap[len(lines)] = fn
    if not fns:
        lines.append("    return True")
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<composed new_flow chain>", "exec"), env)
    return env["keep"]


#: The fields the fast path hands to compiled runners (see :mod:`pathspider.observer.fastpath`).
_RUNNER_ARGS = "rec, rev, ip, l4, size, tc, flags"


class Runner:
    """A compiled chain: ``run(rec, rev, ip, l4, size, tc, flags)`` and what it needs.

    ``views`` is False when every function was inlined, so the header views need not be
    filled in for the call.
    """

    __slots__ = ("run", "views", "source")

    def __init__(self, run, views, source):
        self.run = run
        self.views = views
        self.source = source


def _steps(ip_fns, l4_fns, l4_fields, inline, env, names=("ip", "l4"), prefix="fn_",
           reserved=frozenset()):
    """How each function of two chains runs: ``[(fn, statements, result, called), ...]``.

    A function with a :class:`~pathspider.observer.fastpath.FastPath` form is pasted inline
    if every name it reads is available (``size`` and ``tc`` for all, ``l4_fields`` for the
    transport chain), its globals fit in ``env`` and its temporaries are not ``reserved``;
    any other function is called (as ``<prefix><i>``, added to ``env``) with the header view
    named ``names[0]`` (IP chain) or ``names[1]`` (transport chain). ``reserved``: the local
    names of the code the forms are pasted into, which a form must neither assign nor read
    as a global.
    """
    out = []
    items = [(names[0], fn, ("size", "tc")) for fn in ip_fns]
    items += [(names[1], fn, ("size", "tc") + tuple(l4_fields)) for fn in l4_fns]
    for i, (arg, fn, available) in enumerate(items):
        form = getattr(fn, "fast_path", None) if inline else None
        if form is not None and not (form.chain == "packet" and form.uses <= set(available)
                                     and form.temporaries.isdisjoint(reserved)
                                     and form.globals_read.isdisjoint(reserved)
                                     and _merge_env(env, form.env)):
            form = None
        if form is None:
            name = "%s%d" % (prefix, i)
            env[name] = fn
            out.append((fn, [], "%s(rec, %s, rev)" % (name, arg), True))
        else:
            out.append((fn, form.code.splitlines(), form.result, False))
    return out


def compile_runner(ip_fns, l4_fns, l4_fields=(), inline=True):
    """Compile two chains into one :class:`Runner` for the fast path.

    The IP functions run first (``fn(rec, ip, rev)``), then the transport functions
    (``fn(rec, l4, rev)``); the first falsy result makes ``run`` return a falsy value and
    nothing after it runs (1.0's short-circuit). Functions with a
    usable inline form are pasted in (see :func:`_steps`), the others are called. Returns
    None for two empty chains.
    """
    if not ip_fns and not l4_fns:
        return None
    linemap = {}                        # line -> function, to name an inlined one that raised
    env = {"__chain_lines__": linemap}
    lines = ["def run(%s):" % _RUNNER_ARGS]
    steps = _steps(ip_fns, l4_fns, l4_fields, inline, env)
    for i, (fn, body, result, called) in enumerate(steps):
        if i == len(steps) - 1:
            body = body + ["return " + result]
        elif result != "True":
            body = body + ["if not (%s):" % result, "    return False"]
        for line in body:
            lines.append("    " + line)
            linemap[len(lines)] = fn
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<composed chain>", "exec"), env)
    return Runner(env["run"], any(step[3] for step in steps), source)


def _chain_block(steps):
    """``[(line, fn), ...]`` running ``steps`` in a loop body: every path on which all
    functions return a true value ends in ``continue``; a falsy result falls through."""
    out = []
    depth = 0
    for fn, body, result, called in steps:
        pad = "    " * depth
        out += [(pad + line, fn) for line in body]
        if result != "True":
            out.append((pad + "if %s:" % result, fn))
            depth += 1
    out.append(("    " * depth + "continue", None))
    return out


_MAX_NESTING = 40
"""More functions with a result to test than this, and the chains stay in a runner call."""

_specialised = {}
_specialised_count = [0]
_SPECIALISED_MAX = 64


def specialise_process(ip4_fns, ip6_fns, tcp_fns, udp_fns, inline=True):
    """A copy of :meth:`FlowTable.process` with the chains pasted in: ``(function, views)``.

    The lines between the ``chains >>>`` and ``<<< chains`` comments of the method (the call
    of the compiled runner) are replaced by the chains for the packet's IP version and
    transport protocol, with the same short-circuit: all true ends in ``continue``, a falsy
    result falls through to completing the flow, an exception goes to the method's handler.
    This saves a Python call per packet, and the inline forms read the method's locals.
    ``views`` says whether a called function needs the header views. Returns None if the
    method's source is not available or the chains nest too deep; the method is used then.
    Results are cached per chain tuple.
    """
    cache_key = (tuple(ip4_fns), tuple(ip6_fns), tuple(tcp_fns), tuple(udp_fns), inline)
    hit = _specialised.get(cache_key)
    if hit is not None:
        return hit
    template = _process_template()
    if template is None:
        return None
    head, tail, indent, reserved = template
    linemap = {}
    env = dict(globals())
    env["__chain_lines__"] = linemap
    if tuple(ip4_fns) == tuple(ip6_fns):   # one block per transport serves both versions
        combos = (("if proto == 6:", ip4_fns, tcp_fns, ("flags",), "fnt_"),
                  ("else:", ip4_fns, udp_fns, (), "fnu_"))
    else:
        combos = (("if proto == 6 and version == 4:", ip4_fns, tcp_fns, ("flags",), "fn4t_"),
                  ("elif proto == 6:", ip6_fns, tcp_fns, ("flags",), "fn6t_"),
                  ("elif version == 4:", ip4_fns, udp_fns, (), "fn4u_"),
                  ("else:", ip6_fns, udp_fns, (), "fn6u_"))
    lines = list(head)
    views = False
    for branch, ipc, l4c, fields, prefix in combos:
        steps = _steps(ipc, l4c, fields, inline, env, ("ip", "tv"), prefix, reserved)
        if sum(1 for step in steps if step[2] != "True") > _MAX_NESTING:
            return None
        views = views or any(step[3] for step in steps)
        lines.append(indent + branch)
        for line, fn in _chain_block(steps):
            lines.append(indent + "    " + line)
            if fn is not None:
                linemap[len(lines)] = fn
    lines += tail
    source = "\n".join(lines) + "\n"
    _specialised_count[0] += 1
    filename = "<composed process #%d>" % _specialised_count[0]
    exec(compile(source, filename, "exec"), env)
    if len(_specialised) >= _SPECIALISED_MAX:
        for fn, _ in _specialised.values():
            linecache.cache.pop(fn.__code__.co_filename, None)
        _specialised.clear()
    # tracebacks through the copy show its lines
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    result = _specialised[cache_key] = (env["process"], views)
    return result


_template = []


def _process_template():
    """``(lines before the chains, lines after, their indentation, the method's locals)`` of
    :meth:`FlowTable.process`'s source, or None if it cannot be read."""
    if not _template:
        try:
            lines = textwrap.dedent(inspect.getsource(FlowTable.process)).splitlines()
            start = next(i for i, line in enumerate(lines) if line.strip() == "# chains >>>")
            end = next(i for i, line in enumerate(lines) if line.strip() == "# <<< chains")
        except (OSError, TypeError, StopIteration):
            logger.debug("no source for FlowTable.process: chains run through runners")
            _template.append(None)
        else:
            indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
            _template.append((lines[:start], lines[end + 1:], indent,
                              frozenset(FlowTable.process.__code__.co_varnames)))
    return _template[0]


def _merge_env(env, extra):
    """Add a form's names to the runner's globals; False if one clashes with another value."""
    for name, value in extra.items():
        if name in env and env[name] is not value:
            return False
    env.update(extra)
    return True


class Flow:
    """Table entry: the record plus the state that must never leak into it."""

    __slots__ = ("rec", "state", "tab", "fkey", "rkey", "seq", "expires", "isn", "isn_rev")

    def __init__(self, rec, state, tab, fkey, rkey, seq, isn=None):
        self.rec = rec
        self.state = state
        self.tab = tab          # the per-protocol dict holding both keys
        self.fkey = fkey        # key of the forward direction (first packet)
        self.rkey = rkey        # key of the reverse direction
        self.seq = seq          # creation order, for a deterministic flush
        self.expires = None     # bin at which a completed flow is emitted
        self.isn = isn          # TCP: sequence number of the first pure SYN, or None
        self.isn_rev = False    # ... and its direction (True: reverse)


_SWAP4 = struct.Struct("!4s4sHH")       # IPv4 5-tuple key: addresses and ports
_SWAP6 = struct.Struct("!16s16sHH")     # IPv6 5-tuple key
_SWAP4_UNPACK, _SWAP4_PACK = _SWAP4.unpack, _SWAP4.pack
_SWAP6_UNPACK, _SWAP6_PACK = _SWAP6.unpack, _SWAP6.pack


def reverse_key(key, _u4=_SWAP4.unpack, _p4=_SWAP4.pack, _u6=_SWAP6.unpack, _p6=_SWAP6.pack):
    """The key of the opposite direction: swap addresses (and ports for 5-tuple keys)."""
    n = len(key)
    if n == 12:
        src, dst, sp, dp = _u4(key)
        return _p4(dst, src, dp, sp)
    if n == 36:
        src, dst, sp, dp = _u6(key)
        return _p6(dst, src, dp, sp)
    a = n >> 1                          # 3-tuple: 2 addresses (protocol = the table)
    return key[a:] + key[:a]


def packet_key(ip):
    """The forward key of an IP view (used for quotations and fragments; the hot path inlines
    the same computation). Raises :class:`Short` when the ports are not captured.
    """
    buf, off = ip.buf, ip.off
    addrs = buf[off + 12:off + 20] if ip.version == 4 else buf[off + 8:off + 40]
    if ip.proto in PORT_PROTOS and ip.l4 >= 0:
        l4 = ip.l4
        if l4 + 4 > ip.end:
            raise Short("transport ports not captured")
        return addrs + buf[l4:l4 + 4]
    return addrs


class Counters:
    """What the table saw; ``as_dict()`` is JSON-ready.

    ``syn_restarts``: flows ended early because a fresh SYN started a new flow on their key
    (see the module docstring).
    """

    __slots__ = ("packets", "short", "nonip", "malformed", "flows", "ignored", "emitted",
                 "chain_errors", "icmp_linked", "fragments", "slowpath", "syn_restarts")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


class FlowTable:
    """Flow state and timers for one packet stream of one link type.

    ``chains`` maps chain names (:data:`CHAIN_NAMES`) to sequences of functions. Feed packets
    with :meth:`process` (a pcapy-ng batch) or :meth:`process_packet`; take finished records
    from :attr:`emitted` (a list the caller may swap out) and call :meth:`flush` at the end.

    ``inline=False`` calls every chain function (no inline forms); ``specialise=False`` keeps
    the chains in runner calls instead of pasting them into a copy of :meth:`process`. Both
    give the same records; they exist for tests and for measuring.
    """

    def __init__(self, linktype, chains, idle_timeout=30, expiry_timeout=5, inline=True,
                 specialise=True):
        self.link = dissector.link_offset(linktype)
        self.linktype = linktype
        c = {name: tuple(chains.get(name, ())) for name in CHAIN_NAMES}
        self.new_flow_chain = c["new_flow"]
        self.ip4_chain = c["ip4"]
        self.ip6_chain = c["ip6"]
        self.icmp4_chain = c["icmp4"]
        self.icmp6_chain = c["icmp6"]
        self.tcp_chain = c["tcp"]
        self.udp_chain = c["udp"]
        self.l4_chain = c["l4"]
        # one compiled function per packet instead of loops over the chains
        self._keep = compose_new_flow(self.new_flow_chain, inline)
        self.runners = (compile_runner(self.ip4_chain, self.tcp_chain, ("flags",), inline),
                        compile_runner(self.ip4_chain, self.udp_chain, (), inline),
                        compile_runner(self.ip6_chain, self.tcp_chain, ("flags",), inline),
                        compile_runner(self.ip6_chain, self.udp_chain, (), inline))
        # fill the reused header views for every packet, or only for new flows?
        self._views = any(r is not None and r.views for r in self.runners)
        if inline and specialise:       # the chains pasted into a copy of process()
            special = specialise_process(self.ip4_chain, self.ip6_chain, self.tcp_chain,
                                         self.udp_chain)
            if special is not None:
                self.process = types.MethodType(special[0], self)
                self._views = special[1]
        self.idle_timeout = idle_timeout
        self.expiry_timeout = expiry_timeout
        self.tabs = [dict() for _ in range(256)]     # one table per IP protocol number
        self.bins = {}                               # bin time -> [Flow, ...]
        self.heap = []                               # bin times, min-heap
        self.next_tick = math.inf                    # process bins when a packet is later
        self.clock = None                            # quantised packet clock (int seconds)
        self.fragmap = {}                            # (addrs, ident, proto) -> (tab, key)
        self.emitted = []
        self.ct = Counters()
        # header views reused by the fast path of process(), one per IP version x transport
        self._tcpv = TCP.__new__(TCP)
        self._udpv = UDP.__new__(UDP)
        self._v4t = self._reused(IP4, 6)
        self._v4u = self._reused(IP4, 17)
        self._v6t = self._reused(IP6, 6)
        self._v6u = self._reused(IP6, 17)
        self._seq = 0
        self._errors_logged = 0

    def _reused(self, cls, proto):
        view = cls.__new__(cls)
        view.proto = proto
        view._tcp = self._tcpv if proto == dissector.PROTO_TCP else None
        view._udp = self._udpv if proto == dissector.PROTO_UDP else None
        view._icmp = None
        if cls is IP6:
            view.frag = -1
        return view

    def __getstate__(self):
        raise TypeError("a FlowTable holds live state and is not meant to be pickled")

    # ------------------------------------------------------------------ timers

    def _schedule(self, t, flow):
        b = self.bins.get(t)
        if b is None:
            self.bins[t] = [flow]
            heapq.heappush(self.heap, t)
            if t - 1 < self.next_tick:
                self.next_tick = t - 1.0        # a float: compared with every packet's time
        else:
            b.append(flow)

    def tick(self, ts):
        """Advance the packet clock to ``ceil(ts)`` and run every bin that became due.

        Bins are run in time order: an idle flow completes (and is re-armed for expiry), a flow
        whose idle bin comes up but that saw packets since is re-armed for its new idle time,
        expiring flows are emitted. Work is proportional to the flows in due bins only.
        """
        clock = math.ceil(ts)
        if self.clock is not None and clock <= self.clock:
            # a bin armed for the current second runs when the clock next advances (as 1.0)
            self.next_tick = max(self.next_tick, float(self.clock))
            return
        self.clock = clock
        heap, bins = self.heap, self.bins
        idle = self.idle_timeout
        emitted = self.emitted
        nemitted = 0
        while heap and heap[0] <= clock:
            t = heapq.heappop(heap)
            for flow in bins.pop(t):
                state = flow.state
                if state == EXPIRING:
                    if flow.expires == t:       # not a stale idle-bin entry: emit (_emit)
                        flow.state = GONE
                        tab = flow.tab
                        tab.pop(flow.fkey, None)
                        if flow.rkey != flow.fkey:
                            tab.pop(flow.rkey, None)
                        emitted.append(flow.rec)
                        nemitted += 1
                    continue
                if state != ACTIVE and state != IGNORED:
                    continue
                due = math.ceil(flow.rec["last"] + idle)
                if due > t:
                    self._schedule(due, flow)
                elif state == ACTIVE:
                    self._complete(flow, t)
                else:
                    self._forget(flow)
        self.ct.emitted += nemitted
        self.next_tick = heap[0] - 1.0 if heap else math.inf

    def _complete(self, flow, now):
        """Move an active flow to expiring; it is emitted when bin ``now + expiry`` comes up."""
        flow.state = EXPIRING
        t = flow.expires = math.ceil(now + self.expiry_timeout)
        b = self.bins.get(t)
        if b is None:
            self._schedule(t, flow)
        else:
            b.append(flow)

    def _forget(self, flow):
        flow.state = GONE
        tab = flow.tab
        tab.pop(flow.fkey, None)
        if flow.rkey != flow.fkey:
            tab.pop(flow.rkey, None)

    def _emit(self, flow):
        self._forget(flow)
        self.emitted.append(flow.rec)
        self.ct.emitted += 1

    def flush(self):
        """Emit every flow still in the table: completed ones first, then active ones.

        Within each group flows come in creation order. Vetoed flows are dropped. Timers are
        cleared, so the table can be reused (the clock keeps its value).
        """
        seen = []
        for tab in self.tabs:
            if tab:
                for key, (rec, rev, flow) in tab.items():
                    if not rev and flow.state != GONE:
                        seen.append(flow)
        seen.sort(key=lambda f: (f.state != EXPIRING, f.seq))
        for flow in seen:
            if flow.state == IGNORED:
                self._forget(flow)
            else:
                self._emit(flow)
        self.bins.clear()
        self.heap.clear()
        self.next_tick = math.inf
        self.fragmap.clear()

    # ------------------------------------------------------------------ packets

    def process(self, pkts, meta):
        """Run every packet of a pcapy-ng batch ``(pkts, meta)`` through the table.

        The common case (IPv4 without options or IPv6 without extension headers, carrying a
        complete TCP or UDP header, not fragmented) is handled inline here: one ``struct`` call
        reads the fields it needs and the flow key, one dict lookup finds the flow, the header
        views handed to the chains are reused from packet to packet (and only filled in when a
        chain function that is called needs them), and the per-packet chains run as one
        compiled runner (:func:`compile_runner`). A pure SYN on a known flow goes through
        :meth:`_fresh_syn` (it may end the flow and start a new one). Everything else (ICMP,
        fragments, other protocols, VLAN tags, anything short or malformed) goes through
        :meth:`_slow_packet`, which applies the same rules with freshly parsed views.

        This method is also the template of the table's specialised copy (see
        :func:`specialise_process`), which has the chains pasted in place of the runner call
        between the ``chains >>>`` and ``<<< chains`` comments. Both are covered by the same
        tests.
        """
        ct = self.ct
        eth = self.linktype == dissector.DLT_EN10MB
        link = self.link
        slow = self._slow_packet
        tcptab, udptab = self.tabs[6], self.tabs[17]
        new_flow = self._new_flow
        bins, expiry = self.bins, self.expiry_timeout
        r4t, r4u, r6t, r6u = (r and r.run for r in self.runners)
        views = self._views
        v4t, v4u, v6t, v6u = self._v4t, self._v4u, self._v6t, self._v6u
        tcpv, udpv = self._tcpv, self._udpv
        for v in (v4t, v4u, v6t, v6u, tcpv, udpv):
            v.buf = pkts
        eth4, eth6, hdr4, hdr6 = _ETH4, _ETH6, _HDR4, _HDR6
        hlen4, hlen6, ns, tc6hi, tc6lo = _TCP_HLEN4, _TCP_HLEN6, _TCP_NS, _TC6_HI, _TC6_LO
        unfragmented = _UNFRAGMENTED
        puresyn, seqat, seqoff, fresh_syn = _PURE_SYN, _SEQ, _SEQ_AT, self._fresh_syn
        lo = 14                             # the link header length (Ethernet)
        packets = META.iter_unpack(meta)
        # the packet count at any point is total - packets.__length_hint__()
        total = ct.packets + len(meta) // META.size
        next_tick = self.next_tick
        lsec = fsec = None
        ip = tv = None                      # unused by the chains unless ``views`` is set
        for sec, usec, off, caplen in packets:
            if sec != lsec:                 # float(sec) once per second of packets
                lsec, fsec = sec, float(sec)
            ts = fsec + usec / 1e6          # == sec + usec / 1e6
            if ts > next_tick:
                self.tick(ts)
                next_tick = self.next_tick
            # ---- link layer and the fixed IP/transport fields, in one struct call; then
            # only the plain cases stay here (``lo``: link header length)
            version = 0
            if eth:
                if caplen >= 48:
                    e0 = pkts[off + 12]
                    if e0 == 8:
                        etype, vb, tc, size, frag, proto, key, doff, flags = eth4(pkts, off)
                        if etype == 0x0800:
                            version = 4
                    elif e0 == 0x86 and caplen >= 68:
                        etype, vb, tc, size, proto, key, doff, flags = eth6(pkts, off)
                        if etype == 0x86DD:
                            version = 6
            else:
                try:
                    ipoff = link(pkts, off, off + caplen)
                except DissectError:
                    pass
                else:
                    lo = ipoff - off
                    vb = pkts[ipoff] if lo < caplen else 0
                    if vb == 0x45 and caplen - lo >= 34:
                        vb, tc, size, frag, proto, key, doff, flags = hdr4(pkts, ipoff)
                        version = 4
                    elif 0x60 <= vb <= 0x6F and caplen - lo >= 54:
                        vb, tc, size, proto, key, doff, flags = hdr6(pkts, ipoff)
                        version = 6
            if version == 4:
                if vb != 0x45 or frag not in unfragmented:     # IHL 5, not a fragment
                    version = 0
                hlens, udp_min = hlen4, 28
            elif version == 6:
                size += 40                  # the IP length: payload length + fixed header
                if not 0x60 <= vb <= 0x6F:  # (no extension header: proto is the transport)
                    version = 0
                hlens, udp_min = hlen6, 48
            if version:
                # a TCP or UDP header complete within the IP length and the capture
                if proto == 6:
                    hl = hlens[doff]
                    if hl <= size and hl + lo <= caplen:
                        tab = tcptab
                        flags += ns[doff]
                    else:
                        version = 0
                elif proto == 17 and size >= udp_min:
                    tab = udptab
                else:
                    version = 0
                if version == 6:
                    tc = tc6hi[vb] + tc6lo[tc]
            if not version:
                ct.packets = total - packets.__length_hint__()
                slow(pkts, off, off + caplen, ts)
                next_tick = self.next_tick
                continue
            # ---- flow lookup: one dict lookup, the entry says the direction
            v = tab.get(key)
            if v is not None:
                rec, rev, flow = v
                # a pure SYN may open a new connection on a reused port (module docstring):
                # one tuple lookup per packet of a known flow; ``flags`` is garbage for UDP,
                # hence the protocol test after it; the sequence number is read for pure
                # SYNs only (``off + lo``: the IP header)
                if puresyn[flags] and proto == 6 and fresh_syn(
                        flow, rev, seqat(pkts, off + lo + seqoff[version])[0]):
                    v = None                # the old flow was emitted: start a new one
                elif rec is None:           # vetoed flow
                    flow.rec["last"] = ts
                    continue
            if v is None or views:
                # the reused views (valid during this packet's chain calls only); each
                # attribute store sees one view class, so CPython keeps it specialised (the
                # two branches written as one cost 10 % with called chains, 5 % without)
                if eth:
                    ipoff = off + 14
                end = off + caplen
                ipend = ipoff + size
                if ipend > end:
                    ipend = end
                if version == 4:
                    l4 = ipoff + 20
                    ip = v4t if proto == 6 else v4u
                    ip.off = ipoff
                    ip.end = ipend
                    ip.l4 = l4
                    ip.seconds = ts
                    ip.capend = end
                    ip.size = size
                    ip.traffic_class = tc
                else:
                    l4 = ipoff + 40
                    ip = v6t if proto == 6 else v6u
                    ip.off = ipoff
                    ip.end = ipend
                    ip.l4 = l4
                    ip.seconds = ts
                    ip.capend = end
                    ip.size = size
                    ip.traffic_class = tc
                if proto == 6:
                    tv = tcpv
                    tv.off = l4
                    tv.end = ipend
                    tv.flags = flags
                else:
                    tv = udpv
                    tv.off = l4
                    tv.end = ipend
                if v is None:
                    ct.packets = total - packets.__length_hint__()
                    # a pure SYN gives the flow its ISN (_new_flow)
                    rec = new_flow(ip, ts, tab, key, False,
                                   seqat(pkts, l4 + 4)[0] if puresyn[flags] and proto == 6
                                   else None)
                    next_tick = self.next_tick
                    if rec is None:
                        continue
                    rev = False
            rec["last"] = ts
            # ---- chains: the first falsy return stops this packet and completes the flow
            try:
                # chains >>>
                if proto == 6:
                    run = r4t if version == 4 else r6t
                else:
                    run = r4u if version == 4 else r6u
                if run is None or run(rec, rev, ip, tv, size, tc, flags):
                    continue
                # <<< chains
            except Exception as err:            # a chain bug must not stop the observer
                ct.packets = total - packets.__length_hint__()
                ct.chain_errors += 1
                self._log_error("in a chain function", err)
                continue
            flow = (v or tab[key])[2]
            if flow.state == ACTIVE:        # complete the flow (what _complete does)
                flow.state = EXPIRING
                t = flow.expires = math.ceil(ts + expiry)
                b = bins.get(t)
                if b is None:
                    self._schedule(t, flow)
                    next_tick = self.next_tick
                else:
                    b.append(flow)
        ct.packets = total

    def process_packet(self, buf, ts):
        """Run one packet (link-layer bytes captured at ``ts``) through the table.

        The timestamp is rounded to microseconds, as a pcap file would store it.
        """
        sec = int(ts // 1)
        usec = round((ts - sec) * 1e6)
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        self.process(buf, META.pack(sec, usec, 0, len(buf)))

    def _slow_packet(self, pkts, off, end, ts):
        """The general path: any link layer, any IP packet (see :meth:`process`)."""
        ct = self.ct
        ct.slowpath += 1
        try:
            ip = parse_ip(pkts, self.link(pkts, off, end), end, ts)
        except Short:
            ct.short += 1
            return
        except NotIP:
            ct.nonip += 1
            return
        except Malformed:
            ct.malformed += 1
            return
        self._process_ip(ip, ts)

    def _process_ip(self, ip, ts):
        """Key one IP packet, find or create its flow, run the chains."""
        ct = self.ct
        try:
            tab, key, q, quoted = self._key(ip)
        except Short:
            ct.short += 1
            return
        except Malformed:
            ct.malformed += 1
            return
        except (IndexError, ValueError) as err:     # defensive: never let a packet kill us
            ct.malformed += 1
            self._log_error("dissecting", err)
            return
        # the sequence number of a pure SYN (``_tcp`` is falsy unless the packet is TCP: an
        # ICMP error quoting a SYN is no SYN)
        tcp = ip._tcp
        syn = _SEQ(tcp.buf, tcp.off + 4)[0] if tcp and _PURE_SYN[tcp.flags] else None
        v = tab.get(key)
        if v is not None:
            rec, rev, flow = v
            if quoted:                      # an ICMP error travels against the quoted packet
                rev = not rev
            if syn is not None and self._fresh_syn(flow, rev, syn):
                v = None                    # the old flow was emitted: start a new one
            elif rec is None:               # vetoed flow
                flow.rec["last"] = ts
                return
        if v is None:
            rec = self._new_flow(ip, ts, tab, key, quoted, syn)
            if rec is None:
                return
            flow = tab[key][2]
            rev = False
        rec["last"] = ts
        try:
            ok = self._run_chains(rec, ip, q, rev)
        except Exception as err:            # a chain bug must not stop the observer
            ct.chain_errors += 1
            self._log_error("in a chain function", err)
            return
        if not ok and flow.state == ACTIVE:
            self._complete(flow, ts)

    def _key(self, ip):
        """Return ``(table, key, quoted_view, key_is_quoted)`` for an IP view.

        Checks that the transport header the chains will be handed is complete.
        """
        proto = ip.proto
        buf, l4, end = ip.buf, ip.l4, ip.end
        q = None
        if l4 >= 0:
            if proto == dissector.PROTO_TCP:
                if l4 + 20 > end:
                    raise self._short_or_malformed(ip, "TCP header")
                hl = (buf[l4 + 12] >> 4) << 2
                if hl < 20:
                    raise Malformed("TCP data offset %d" % hl)
                if l4 + hl > end:
                    raise self._short_or_malformed(ip, "TCP options")
                ip._tcp = TCP(buf, l4, end)
            elif proto == dissector.PROTO_UDP:
                if l4 + 8 > end:
                    raise self._short_or_malformed(ip, "UDP header")
                ip._udp = UDP(buf, l4, end)
            elif proto == dissector.PROTO_ICMP or proto == dissector.PROTO_ICMP6:
                if l4 + 4 > end:
                    raise self._short_or_malformed(ip, "ICMP header")
                # ICMPv4 over IPv6 or ICMPv6 over IPv4: keyed by 3-tuple, no ICMP view
                if (proto == dissector.PROTO_ICMP) == (ip.version == 4):
                    cls = ICMP if proto == dissector.PROTO_ICMP else ICMP6
                    icmp = ip._icmp = cls(buf, l4, end, ip.seconds)
                    if buf[l4] in icmp.ERROR_TYPES:
                        q = icmp.quoted
                        if q is not None:
                            qkey = self._quote_key(q)
                            if qkey is not None:
                                self.ct.icmp_linked += 1
                                return self.tabs[q.proto], qkey, q, True
            elif proto in PORT_PROTOS:
                if l4 + 4 > end:
                    raise self._short_or_malformed(ip, "transport ports")
        elif ip.version == 4 and ip.is_fragment or ip.version == 6 and ip.frag >= 0:
            return self._fragment_key(ip) + (None, False)
        return self.tabs[proto], self._fast_key(ip), q, False

    def _fast_key(self, ip):
        buf, off, l4 = ip.buf, ip.off, ip.l4
        if ip.version == 4:
            if ip.proto in PORT_PROTOS and l4 >= 0:
                key = buf[off + 12:off + 20] + buf[l4:l4 + 4]
            else:
                key = buf[off + 12:off + 20]
        else:
            if ip.proto in PORT_PROTOS and l4 >= 0:
                key = buf[off + 8:off + 40] + buf[l4:l4 + 4]
            else:
                key = buf[off + 8:off + 40]
        if ip.is_fragment and l4 >= 0 and ip.has_mf:
            self._remember_fragment(ip, key)
        return key

    def _quote_key(self, q):
        """Key of a quoted packet, or None if less than its IP header + 8 bytes was quoted."""
        if q.l4 < 0 or q.l4 + 8 > q.end:
            return None
        return packet_key(q)

    @staticmethod
    def _short_or_malformed(ip, what):
        if ip.off + ip.size > ip.capend:
            return Short("%s truncated" % what)
        return Malformed("%s does not fit in the IP length" % what)

    def _fragment_id(self, ip):
        buf, off = ip.buf, ip.off
        if ip.version == 4:
            return (buf[off + 12:off + 20], buf[off + 4:off + 6], ip.proto)
        return (buf[off + 8:off + 40], buf[ip.frag + 4:ip.frag + 8], ip.proto)

    def _remember_fragment(self, ip, key):
        fm = self.fragmap
        if len(fm) >= FRAGMAP_SIZE:
            del fm[next(iter(fm))]
        fm[self._fragment_id(ip)] = (self.tabs[ip.proto], key)

    def _fragment_key(self, ip):
        """Table and key of a non-first fragment: its first fragment's flow, else its 3-tuple."""
        self.ct.fragments += 1
        hit = self.fragmap.get(self._fragment_id(ip))
        if hit is not None:
            return hit
        buf, off = ip.buf, ip.off
        addrs = buf[off + 12:off + 20] if ip.version == 4 else buf[off + 8:off + 40]
        return self.tabs[ip.proto], addrs

    def _new_flow(self, ip, ts, tab, key, quoted, isn=None):
        """Create (or veto) the flow of a packet whose key is not in the table.

        ``isn``: the sequence number of the packet if it is a pure SYN (see
        :meth:`_fresh_syn`), else None. Returns the new record, or None if the flow was vetoed
        or a new_flow function raised.
        """
        rec = {"first": ts}
        seq = self._seq = self._seq + 1
        try:
            keep = self._keep(rec, ip)
        except Exception as err:            # no flow; its next packet tries again
            self.ct.chain_errors += 1
            self._log_error("in a new_flow chain function", err)
            return None
        n = len(key)
        if n == 12:                         # a 5-tuple: what reverse_key does
            src, dst, sp, dp = _SWAP4_UNPACK(key)
            other = _SWAP4_PACK(dst, src, dp, sp)
        elif n == 36:
            src, dst, sp, dp = _SWAP6_UNPACK(key)
            other = _SWAP6_PACK(dst, src, dp, sp)
        else:
            other = reverse_key(key)
        if quoted:                          # the ICMP error's direction is the forward one
            fkey, rkey = other, key
        else:
            fkey, rkey = key, other
        if keep:
            flow = Flow(rec, ACTIVE, tab, fkey, rkey, seq, isn)
            self.ct.flows += 1
        else:
            rec = None
            flow = Flow({"last": ts}, IGNORED, tab, fkey, rkey, seq, isn)
            self.ct.ignored += 1
        tab[fkey] = (rec, False, flow)
        if rkey != fkey:
            tab[rkey] = (rec, True, flow)
        t = math.ceil(ts + self.idle_timeout)
        b = self.bins.get(t)
        if b is None:
            self._schedule(t, flow)
        else:
            b.append(flow)
        return rec

    def _fresh_syn(self, flow, rev, seq):
        """A pure SYN with sequence number ``seq`` arrived on ``flow`` (``rev``: against the
        flow's forward direction). True if it opens a new connection: the old flow has then
        been emitted (forgotten if vetoed) and the caller starts a new flow with the packet.
        False if the SYN belongs to the flow (recorded as its ISN if it had none).

        The rule (module docstring): a SYN in the ISN's direction opens a new connection iff
        its sequence number differs from the ISN (the same number is a retransmission). With
        no ISN (the flow did not start with a pure SYN: capture started mid-connection, or an
        ICMP error quoting the SYN came first) or in the opposite direction (a simultaneous
        open has a pure SYN with its own sequence number from each end), a fresh connection
        cannot be told from a SYN of this one while the flow is active, so the SYN stays;
        once the flow is completed (FIN+FIN or RST seen: expiring), it opens a new one.
        """
        isn = flow.isn
        if isn is not None and rev == flow.isn_rev:
            if seq == isn:
                return False                # a retransmission of the flow's SYN
        elif flow.state != EXPIRING:        # no ISN or the other direction, still open
            if isn is None:
                flow.isn = seq
                flow.isn_rev = rev
            return False
        # a new connection over this key: end the old flow now; its timer entries skip it
        # (state GONE), so it is emitted exactly once, before the flow the SYN starts
        if flow.state == IGNORED:
            self._forget(flow)
        else:
            self._emit(flow)
        self.ct.syn_restarts += 1
        return True

    def _run_chains(self, rec, ip, q, rev):
        """Run the per-packet chains; False as soon as one function returns a falsy value."""
        if ip.version == 4:
            for fn in self.ip4_chain:
                if not fn(rec, ip, rev):
                    return False
            icmp_chain = self.icmp4_chain
        else:
            for fn in self.ip6_chain:
                if not fn(rec, ip, rev):
                    return False
            icmp_chain = self.icmp6_chain
        if ip._icmp:
            for fn in icmp_chain:
                if not fn(rec, ip, q, rev):
                    return False
        if ip._tcp:
            for fn in self.tcp_chain:
                if not fn(rec, ip._tcp, rev):
                    return False
        elif ip._udp:
            for fn in self.udp_chain:
                if not fn(rec, ip._udp, rev):
                    return False
        elif ip.proto != dissector.PROTO_TCP and ip.proto != dissector.PROTO_UDP:
            for fn in self.l4_chain:
                if not fn(rec, ip, rev):
                    return False
        return True

    def _log_error(self, where, err):
        """Log the first errors with the packet number and the function that raised."""
        self._errors_logged += 1
        if self._errors_logged <= _MAX_LOGGED_ERRORS:
            logger.warning("packet %d: error %s%s: %s: %s%s", self.ct.packets, where,
                           _culprit(err), type(err).__name__, err,
                           " (further errors are only counted)"
                           if self._errors_logged == _MAX_LOGGED_ERRORS else "")


def _culprit(err):
    """`` fn (file:line)`` of the chain function an exception came from, if it is visible.

    A function inlined into a compiled runner has no frame of its own: the runner's line
    number says which one it was (its definition is named then).
    """
    tb = traceback.extract_tb(err.__traceback__)
    frames = [f for f in tb if not f.filename.startswith("<composed") and f.filename != __file__]
    if frames:
        f = frames[0]
        return " %s (%s:%d)" % (f.name, os.path.basename(f.filename), f.lineno)
    t = err.__traceback__
    while t is not None:
        fn = t.tb_frame.f_globals.get("__chain_lines__", {}).get(t.tb_lineno)
        if fn is not None:
            code = fn.__code__
            return " %s (%s:%d, inlined)" % (fn.__name__, os.path.basename(code.co_filename),
                                            code.co_firstlineno)
        t = t.tb_next
    return ""
