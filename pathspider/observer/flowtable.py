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
  What is left is emitted by :meth:`FlowTable.flush`. A flow has one timer entry at a time
  (its idle bin, then its expiry bin), and an emitted or forgotten flow has none: the table
  holds nothing of a flow once it is gone, so its memory stays proportional to the flows
  alive, however long the run (1.0 kept every ended flow and its record until its idle time
  had passed).
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

How a packet goes through: plain packets (TCP or UDP over IPv4 with a 20-byte header and no
fragmentation, or over IPv6 without extension headers, on any supported link layer) are read
in place (:meth:`FlowTable._plain_packet`): their fields go straight into header views that are
reused from packet to packet, and the flow key is one slice of the packet (addresses and ports
are contiguous there). Every other packet is parsed by the dissector
(:meth:`FlowTable._general_packet`). From the flow lookup on, both take the same code
(:meth:`FlowTable._dispatch`): one dict lookup finds the flow (stored under its forward and its
reverse key; the direction is whether the packet's key is the forward one), idle timers are
re-armed lazily when their bin comes up, and every chain function, the library's and plugins'
alike, is called as ``fn(rec, header, rev)`` in chain order (compiled, the library's
per-packet functions as C functions: :mod:`pathspider.observer.native`). The reused views
are valid during the call only, as python-libtrace's packet object was: store values in the
record, never a view.

Speed: when pathspider is installed with a C compiler this module, the dissector and the chain
library are compiled (Cython's pure-Python mode: ``flowtable.pxd`` gives the names here C
types, this file stays the only source); without one they run as they are. Both give the same
records and counters (the test suite runs both). ``benchmarks/observer.py`` measures them.
"""

import heapq
import logging
import math
import operator
import os
import struct
import traceback

from pathspider.observer import dissector
from pathspider.observer.dissector import (IP4, IP6, TCP, UDP, ICMP, ICMP6, DissectError,
                                           Malformed, NotIP, Short, parse_ip)
from pathspider.observer.native import (IP_FUNCTIONS, TCP_FUNCTIONS, UDP_FUNCTIONS, call_ip,
                                        call_tcp, call_udp, steps)
from pathspider.observer.source import META

logger = logging.getLogger("pathspider.observer.flowtable")

# Flow states.
ACTIVE = 0      # receiving packets, idle timer armed
EXPIRING = 1    # completed; still receiving packets until its expiry bin comes up
IGNORED = 2     # vetoed by the new_flow chain; packets dropped until idle
GONE = 3        # emitted or forgotten; stale timer entries skip it

# The protocol numbers the per-packet code tests (C constants when compiled: flowtable.pxd).
_TCP, _UDP = dissector.PROTO_TCP, dissector.PROTO_UDP

#: Transport protocols keyed by 5-tuple (they start with 16-bit source and destination ports).
PORT_PROTOS = frozenset((dissector.PROTO_TCP, dissector.PROTO_UDP, dissector.PROTO_SCTP,
                         dissector.PROTO_UDPLITE))

FRAGMAP_SIZE = 4096
"""How many first fragments are remembered to key later fragments of the same datagram."""

CHAIN_NAMES = ("new_flow", "ip4", "ip6", "icmp4", "icmp6", "tcp", "udp", "l4")

COUNTER_NAMES = ("packets", "short", "nonip", "malformed", "flows", "ignored", "emitted",
                 "chain_errors", "icmp_linked", "fragments", "slowpath", "syn_restarts")

_MAX_LOGGED_ERRORS = 10

_CREATION_ORDER = operator.attrgetter("seq")

_SEQ = struct.Struct("!I").unpack_from
"""The TCP sequence number at a given offset (read for pure SYNs only)."""


class Flow:
    """Table entry: the record plus the state that must never leak into it.

    The table maps both keys of the flow to it; a packet goes the reverse direction when its
    key is not ``fkey``. Made by :func:`_flow`.
    """

    __slots__ = ("rec", "state", "tab", "fkey", "rkey", "seq", "due", "isn", "isn_rev")


def _flow(rec, state, tab, fkey, rkey, seq, isn):
    """A new :class:`Flow` (without a constructor call: compiled, this is a C function)."""
    flow = Flow.__new__(Flow)
    flow.rec = rec
    flow.state = state
    flow.tab = tab          # the per-protocol dict holding both keys
    flow.fkey = fkey        # key of the forward direction (first packet)
    flow.rkey = rkey        # key of the reverse direction
    flow.seq = seq          # creation order, for a deterministic flush
    flow.due = None         # the bin holding the flow's one timer entry, or None
    flow.isn = isn          # TCP: sequence number of the first pure SYN, or None
    flow.isn_rev = False    # ... and its direction (True: reverse)
    return flow


def reverse_key(key):
    """The key of the opposite direction: swap addresses (and ports for 5-tuple keys)."""
    n = len(key)
    k = key
    if n == 12 or n == 36:              # two addresses (4 or 16 bytes), two ports
        a = (n - 4) >> 1
        return k[a:2 * a] + k[:a] + k[2 * a + 2:n] + k[2 * a:2 * a + 2]
    a = n >> 1                          # 3-tuple: 2 addresses (protocol = the table)
    return k[a:n] + k[:a]


def packet_key(ip):
    """The forward key of an IP view: addresses, then the ports of a 5-tuple protocol.

    Raises :class:`Short` when the ports are not captured.
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
    """What the table saw (:data:`COUNTER_NAMES`); ``as_dict()`` is JSON-ready.

    ``slowpath``: packets that were not plain (see the module docstring) and went through
    the dissector. ``syn_restarts``: flows ended early because a fresh SYN started a new flow
    on their key (see the module docstring).
    """

    __slots__ = COUNTER_NAMES

    def __init__(self):
        self.packets = self.short = self.nonip = self.malformed = 0
        self.flows = self.ignored = self.emitted = self.chain_errors = 0
        self.icmp_linked = self.fragments = self.slowpath = self.syn_restarts = 0

    def as_dict(self):
        return {name: getattr(self, name) for name in COUNTER_NAMES}


class FlowTable:
    """Flow state and timers for one packet stream of one link type.

    ``chains`` maps chain names (:data:`CHAIN_NAMES`) to sequences of functions. Feed packets
    with :meth:`process` (a pcapy-ng batch) or :meth:`process_packet`; take finished records
    from :attr:`emitted` (a list the caller may swap out) and call :meth:`flush` at the end.

    ``plain_path=False`` sends every packet through the dissector (the general path); the
    records and counters are the same except ``slowpath``. It exists for tests.
    """

    def __init__(self, linktype, chains, idle_timeout=30, expiry_timeout=5, plain_path=True):
        self.link = dissector.link_offset(linktype)
        self.linktype = linktype
        self.ethernet = linktype == dissector.DLT_EN10MB
        self.plain_path = plain_path
        self.new_flow_chain = tuple(chains.get("new_flow", ()))
        self.ip4_chain = tuple(chains.get("ip4", ()))
        self.ip6_chain = tuple(chains.get("ip6", ()))
        self.icmp4_chain = tuple(chains.get("icmp4", ()))
        self.icmp6_chain = tuple(chains.get("icmp6", ()))
        self.tcp_chain = tuple(chains.get("tcp", ()))
        self.udp_chain = tuple(chains.get("udp", ()))
        self.l4_chain = tuple(chains.get("l4", ()))
        # the per-packet chains as the table runs them (native.py)
        self._ip4_steps = steps(self.ip4_chain, IP_FUNCTIONS)
        self._ip6_steps = steps(self.ip6_chain, IP_FUNCTIONS)
        self._tcp_steps = steps(self.tcp_chain, TCP_FUNCTIONS)
        self._udp_steps = steps(self.udp_chain, UDP_FUNCTIONS)
        self.idle_timeout = idle_timeout
        self.expiry_timeout = expiry_timeout
        self.tabs = [dict() for _ in range(256)]     # one table per IP protocol number
        self.bins = {}                               # bin time -> {Flow: None, ...}
        self.heap = []                               # bin times, min-heap
        self.next_tick = math.inf                    # process bins when a packet is later
        self.clock = None                            # quantised packet clock (int seconds)
        self.fragmap = {}                            # (addrs, ident, proto) -> (tab, key)
        self.emitted = []
        self.ct = Counters()
        # the header views of plain packets, reused (one per IP version x transport)
        self._tcpv = TCP.__new__(TCP)
        self._udpv = UDP.__new__(UDP)
        self._v4t = self._reused(IP4.__new__(IP4), _TCP)
        self._v4u = self._reused(IP4.__new__(IP4), _UDP)
        self._v6t = self._reused(IP6.__new__(IP6), _TCP)
        self._v6u = self._reused(IP6.__new__(IP6), _UDP)
        self._seq = 0
        self._errors_logged = 0

    def _reused(self, view, proto):
        """Prepare a reused IP view: its protocol and transport view never change."""
        view.proto = proto
        view._tcp = self._tcpv if proto == _TCP else None
        view._udp = self._udpv if proto == _UDP else None
        view._icmp = None
        if type(view) is IP6:
            view.frag = -1
        return view

    def __getstate__(self):
        raise TypeError("a FlowTable holds live state and is not meant to be pickled")

    # ------------------------------------------------------------------ timers

    def _schedule(self, t, flow):
        """Put ``flow``'s timer entry in bin ``t`` (an int second of the packet clock), taking
        it out of the bin it was in: a flow is in one bin at most, so a completed or emitted
        flow leaves no stale entry (and no record) behind for its idle time."""
        self._unschedule(flow)
        flow.due = t
        b = self.bins.get(t)
        if b is None:
            self.bins[t] = {flow: None}
            heapq.heappush(self.heap, t)
            if t - 1 < self.next_tick:
                self.next_tick = t - 1.0        # a float: compared with every packet's time
        else:
            b[flow] = None

    def _unschedule(self, flow):
        """Take ``flow``'s timer entry out of its bin (a bin being run is no longer in
        ``bins``: its entries are taken as they come)."""
        t = flow.due
        if t is not None:
            flow.due = None
            b = self.bins.get(t)
            if b is not None:
                b.pop(flow, None)

    def tick(self, ts):
        """Advance the packet clock to ``ceil(ts)`` and run every bin that became due.

        Bins are run in time order: an idle flow completes (and is re-armed for expiry), a flow
        whose idle bin comes up but that saw packets since is re-armed for its new idle time,
        expiring flows are emitted. Work is proportional to the flows in due bins only (each
        flow is in one bin at most).
        """
        clock = math.ceil(ts)
        if self.clock is not None and clock <= self.clock:
            # a bin armed for the current second runs when the clock next advances (as 1.0)
            self.next_tick = max(self.next_tick, float(self.clock))
            return
        self.clock = clock
        heap, bins = self.heap, self.bins
        while heap and heap[0] <= clock:
            t = heapq.heappop(heap)
            for flow in bins.pop(t):
                flow.due = None
                self._due(flow, t)
        self.next_tick = heap[0] - 1.0 if heap else math.inf

    def _due(self, flow, t):
        """Bin ``t`` came up with ``flow`` in it (see :meth:`tick`)."""
        state = flow.state
        if state == EXPIRING:
            self._emit(flow)
        elif state == ACTIVE or state == IGNORED:
            due = math.ceil(flow.rec["last"] + self.idle_timeout)
            if due > t:
                self._schedule(due, flow)
            elif state == ACTIVE:
                self._complete(flow, t)
            else:
                self._forget(flow)

    def _complete(self, flow, now):
        """Move an active flow to expiring; it is emitted when bin ``now + expiry`` comes up."""
        flow.state = EXPIRING
        self._schedule(math.ceil(now + self.expiry_timeout), flow)

    def _forget(self, flow):
        """Drop ``flow`` from the table and from the timers (emitted, vetoed or ended)."""
        flow.state = GONE
        self._unschedule(flow)
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
        completed, active = [], []
        for tab in self.tabs:
            for key, flow in tab.items():
                if key is flow.fkey and flow.state != GONE:
                    (completed if flow.state == EXPIRING else active).append(flow)
        completed.sort(key=_CREATION_ORDER)
        active.sort(key=_CREATION_ORDER)
        for flow in completed + active:
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
        """Run every packet of a pcapy-ng batch through the table.

        ``pkts`` holds the packets' bytes, ``meta`` a :data:`~pathspider.observer.source.META`
        entry ``(sec, usec, offset, caplen)`` per packet. Plain packets take the plain path,
        the others the general path (module docstring).
        """
        if len(meta) % META.size:
            raise ValueError("packet metadata of %d bytes is not a whole number of %d-byte "
                             "entries" % (len(meta), META.size))
        fields = memoryview(meta).cast("I")
        for view in (self._v4t, self._v4u, self._v6t, self._v6u, self._tcpv, self._udpv):
            view.buf = pkts
        ct = self.ct
        nbytes = len(pkts)
        plain = self.plain_path
        i, n = 0, len(fields)
        while i < n:
            sec, usec, off, caplen = fields[i], fields[i + 1], fields[i + 2], fields[i + 3]
            i += 4
            ts = sec + usec / 1e6
            ct.packets += 1
            if ts > self.next_tick:
                self.tick(ts)
            end = off + caplen
            if end > nbytes:                    # metadata past the buffer: not a packet
                ct.short += 1
            elif not (plain and self._plain_packet(pkts, off, end, ts)):
                self._general_packet(pkts, off, end, ts)

    def process_packet(self, buf, ts):
        """Run one packet (link-layer bytes captured at ``ts``) through the table.

        The timestamp is rounded to microseconds, as a pcap file would store it.
        """
        sec = int(ts // 1)
        usec = round((ts - sec) * 1e6)
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        self.process(buf, META.pack(sec, usec, 0, len(buf)))

    def _plain_packet(self, pkts, off, end, ts):
        """Handle the packet at ``pkts[off:end]`` if it is plain (module docstring); return
        False, having done nothing, if it is not.

        Plain also means: the IP length is not 0 (TSO) and the TCP or UDP header lies within
        it and within the capture. ``p[i]`` is one byte of the packets; the fields go into the
        reused views, the addresses and ports (contiguous here) make the flow key.
        """
        p = pkts
        if self.ethernet:
            ipoff = off + 14
            if ipoff > end:
                return False
            etype = (p[off + 12] << 8) | p[off + 13]
            if etype != 0x0800 and etype != 0x86DD:
                return False
        else:
            try:
                ipoff = self.link(pkts, off, end)
            except DissectError:
                return False
        # ---- the fixed IP header: IPv4 without options, not a fragment; IPv6 without
        # extension headers (its next header is the transport)
        if ipoff + 20 > end:
            return False
        vb = p[ipoff]
        if vb == 0x45:
            if (p[ipoff + 6] & 0x3F) or p[ipoff + 7]:       # MF or a fragment offset
                return False
            v4 = True
            size = (p[ipoff + 2] << 8) | p[ipoff + 3]
            proto = p[ipoff + 9]
            tc = p[ipoff + 1]
            l4 = ipoff + 20
            key_at = ipoff + 12
        elif (vb >> 4) == 6 and ipoff + 40 <= end:
            v4 = False
            size = (p[ipoff + 4] << 8) | p[ipoff + 5]
            if size:
                size += 40
            proto = p[ipoff + 6]
            tc = ((vb & 0x0F) << 4) | (p[ipoff + 1] >> 4)
            l4 = ipoff + 40
            key_at = ipoff + 8
        else:
            return False
        ipend = ipoff + size
        if ipend > end:
            ipend = end
        # ---- the transport header, complete within the IP length and the capture
        syn = None
        if proto == _TCP:
            if l4 + 20 > end:
                return False
            doff = p[l4 + 12]
            hlen = l4 - ipoff + ((doff >> 4) << 2)        # IP + TCP header length
            if doff < 0x50 or hlen > size or ipoff + hlen > end:
                return False
            flags = ((doff & 0x0F) << 8) | p[l4 + 13]
            if (flags & 0x12) == 0x02:                  # a pure SYN: its sequence number
                syn = p[l4 + 4]
                syn = (syn << 24) | (p[l4 + 5] << 16) | (p[l4 + 6] << 8) | p[l4 + 7]
            tcp = self._tcpv
            tcp.off = l4
            tcp.end = ipend
            tcp.flags = flags
            ip = self._v4t if v4 else self._v6t
        elif proto == _UDP:
            if l4 - ipoff + 8 > size or l4 + 8 > end:
                return False
            udp = self._udpv
            udp.off = l4
            udp.end = ipend
            ip = self._v4u if v4 else self._v6u
        else:
            return False
        ip.off = ipoff
        ip.end = ipend
        ip.l4 = l4
        ip.seconds = ts
        ip.capend = end
        ip.size = size
        ip.traffic_class = tc
        self._dispatch(ip, self.tabs[proto], p[key_at:l4 + 4], None, False, syn, ts)
        return True

    def _general_packet(self, pkts, off, end, ts):
        """Any link layer, any IP packet: parse it with the dissector, key it, dispatch it."""
        ct = self.ct
        ct.slowpath += 1
        try:
            ip = parse_ip(pkts, self.link(pkts, off, end), end, ts)
            tab, key, q, quoted = self._key(ip)
        except Short:
            ct.short += 1
            return
        except NotIP:
            ct.nonip += 1
            return
        except Malformed:
            ct.malformed += 1
            return
        except (IndexError, ValueError) as err:     # defensive: never let a packet kill us
            ct.malformed += 1
            self._log_error("dissecting", err)
            return
        # a pure SYN's sequence number (``_tcp`` is falsy unless the packet is TCP: an ICMP
        # error quoting a SYN is no SYN)
        tcp = ip._tcp
        syn = _SEQ(tcp.buf, tcp.off + 4)[0] if tcp and (tcp.flags & 0x12) == 0x02 else None
        self._dispatch(ip, tab, key, q, quoted, syn, ts)

    def _dispatch(self, ip, tab, key, q, quoted, syn, ts):
        """Find or create the flow of a keyed packet and run the chains for it.

        ``q``: the quoted packet's view of an ICMP error; ``quoted``: the key is the quoted
        packet's; ``syn``: the sequence number of a pure SYN, else None.
        """
        flow = tab.get(key)
        if flow is not None:
            # the direction: against the flow's first packet, or an ICMP error (which
            # travels against the packet it quotes) quoting a packet of the first direction
            rev = (key != flow.fkey) != quoted
            if syn is not None and self._fresh_syn(flow, rev, syn):
                flow = None                 # the old flow was emitted: start a new one
            elif flow.state == IGNORED:     # vetoed flow
                flow.rec["last"] = ts
                return
        if flow is None:
            flow = self._new_flow(ip, ts, tab, key, quoted, syn)
            if flow is None:
                return
            rev = False
        rec = flow.rec
        rec["last"] = ts
        # ---- the chains: the first falsy result stops them and completes the flow (a
        # number in a chain stands for a library function called natively, see native.py)
        try:
            ok = True
            for fn in (self._ip4_steps if type(ip) is IP4 else self._ip6_steps):
                if not (call_ip(fn, rec, ip, rev) if type(fn) is int else fn(rec, ip, rev)):
                    ok = False
                    break
            if ok and ip._icmp:
                for fn in (self.icmp4_chain if type(ip) is IP4 else self.icmp6_chain):
                    if not fn(rec, ip, q, rev):
                        ok = False
                        break
            if not ok:
                pass
            elif ip._tcp:
                tcp = ip._tcp
                for fn in self._tcp_steps:
                    if not (call_tcp(fn, rec, tcp, rev) if type(fn) is int
                            else fn(rec, tcp, rev)):
                        ok = False
                        break
            elif ip._udp:
                udp = ip._udp
                for fn in self._udp_steps:
                    if not (call_udp(fn, rec, udp, rev) if type(fn) is int
                            else fn(rec, udp, rev)):
                        ok = False
                        break
            elif ip.proto != _TCP and ip.proto != _UDP:     # (else: a fragment, no header)
                for fn in self.l4_chain:
                    if not fn(rec, ip, rev):
                        ok = False
                        break
        except Exception as err:            # a chain bug must not stop the observer
            self.ct.chain_errors += 1
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
            if proto == _TCP:
                if l4 + 20 > end:
                    raise self._short_or_malformed(ip, "TCP header")
                hl = (buf[l4 + 12] >> 4) << 2
                if hl < 20:
                    raise Malformed("TCP data offset %d" % hl)
                if l4 + hl > end:
                    raise self._short_or_malformed(ip, "TCP options")
                ip._tcp = TCP(buf, l4, end)
            elif proto == _UDP:
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
        elif ip.is_fragment:
            tab, key = self._fragment_key(ip)
            return tab, key, None, False
        key = packet_key(ip)
        if ip.is_fragment and l4 >= 0 and ip.has_mf:
            self._remember_fragment(ip, key)
        return self.tabs[proto], key, q, False

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

    def _new_flow(self, ip, ts, tab, key, quoted, isn):
        """Create (or veto) the flow of a packet whose key is not in the table.

        ``isn``: the sequence number of the packet if it is a pure SYN (see
        :meth:`_fresh_syn`), else None. Returns the new :class:`Flow`, or None if the flow was
        vetoed or a new_flow function raised.
        """
        rec = {"first": ts}
        self._seq += 1
        try:
            keep = self._keep(rec, ip)
        except Exception as err:            # no flow; its next packet tries again
            self.ct.chain_errors += 1
            self._log_error("in a new_flow chain function", err)
            return None
        other = reverse_key(key)
        if quoted:                          # the ICMP error's direction is the forward one
            fkey, rkey = other, key
        else:
            fkey, rkey = key, other
        if keep:
            flow = _flow(rec, ACTIVE, tab, fkey, rkey, self._seq, isn)
            self.ct.flows += 1
        else:
            flow = _flow({"last": ts}, IGNORED, tab, fkey, rkey, self._seq, isn)
            self.ct.ignored += 1
        tab[fkey] = flow                    # the direction: is the key the forward one?
        if rkey != fkey:
            tab[rkey] = flow
        self._schedule(math.ceil(ts + self.idle_timeout), flow)
        return flow if keep else None

    def _keep(self, rec, ip):
        """Run the new_flow chain: False as soon as a function vetoes the flow."""
        for fn in self.new_flow_chain:
            if not fn(rec, ip):
                return False
        return True

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

    def _log_error(self, where, err):
        """Log the first errors with the packet number and the function that raised."""
        self._errors_logged += 1
        if self._errors_logged <= _MAX_LOGGED_ERRORS:
            logger.warning("packet %d: error %s%s: %s: %s%s", self.ct.packets, where,
                           _culprit(err), type(err).__name__, err,
                           " (further errors are only counted)"
                           if self._errors_logged == _MAX_LOGGED_ERRORS else "")


def _culprit(err):
    """`` fn (file:line)`` of the chain function an exception came from: the first frame of
    its traceback outside this module (compiled functions have frames too)."""
    for frame in traceback.extract_tb(err.__traceback__):
        filename = os.path.basename(frame.filename)
        if filename != "flowtable.py":
            return " %s (%s:%d)" % (frame.name, filename, frame.lineno)
    return ""
