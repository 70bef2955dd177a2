"""The tracer of ``--locate``: a probe sent with TTL / hop limit 1..N, all at once, and the
routers' ICMP time-exceeded quotations matched back to it.

:class:`Tracer` is one long-lived object per run. ``submit(family, dst, probes, callback)``
queues a *trace* of ``dst`` with the probes of a plugin (an ordered dict name ->
:class:`pathspider.client.packets.TCPSyn` / :class:`~pathspider.client.packets.UDPDatagram`,
usually ``{"A": baseline, "B": experiment}``) and returns at once; ``callback(TraceResult)``
is called from the tracer's thread when the trace ends. At most ``concurrency`` traces are in
flight, the rest wait in order. :mod:`pathspider.client.hops` analyses a result.

How a trace probes (Paris-traceroute style)
--------------------------------------------
* One source port per probe name, reserved for the whole trace
  (:func:`~pathspider.client.forging.reserve_tcp` / :func:`~pathspider.client.forging.reserve_udp`):
  the 5-tuple is the same at every TTL, so per-flow load balancing keeps every TTL of a probe
  on one path.
* The TTL travels where a quotation keeps it. TCP: the sequence number, ``MAGIC`` (0x5053,
  "PS") in its top 16 bits, 8 bits of per-trace tag, the TTL in the low 8 bits (a SYN-ACK or
  RST from the destination acknowledges seq + 1, so its TTL is known too); the IPv4
  identification carries tag and TTL as well, the IPv6 flow label is 0. UDP: the IPv4
  identification / the IPv6 flow label (tag << 8 | TTL). A flow label that varies with the TTL
  is a flow identifier to routers that hash it (RFC 6438): IPv6 UDP traces are Paris-style only
  where the load balancers hash the 5-tuple. A DNS query (UDP to port 53) also carries tag and
  TTL in its query id, so the destination's answer tells at which TTL the packet arrived;
  other UDP answers mark the destination reached with ``ttl`` None.
* Rounds: TTLs 1..``first_round`` at once, then further rounds of ``first_round`` TTLs up to
  ``max_ttl`` only while the path goes on (no probe drew the destination's answer, and the
  round's highest TTL drew a time-exceeded). A round ends at the earliest of: every probe of
  the round answered; ``timeout``; a *quiet period* after the last reply,
  max(4 x the slowest reply's RTT in the trace, 50 ms). The trade-off: without the quiet
  period every trace with a silent hop or a dropped probe (the very traces ``--locate`` is
  for) would wait the whole ``timeout`` each round; with it, a router that answers more than
  4 RTTs later than the slowest reply so far (ICMP generated on a slow path, rate limits that
  delay rather than drop) is counted silent.

Receiving: one receiver thread per address family waits (epoll, with a wake-up pipe) on a
raw ICMP / ICMPv6 socket that lets only error messages through (``ICMP_FILTER`` /
``ICMP6_FILTER``), on a raw TCP socket with a classic BPF filter (``SO_ATTACH_FILTER``) that
accepts only segments with ACK set whose acknowledgment number carries ``MAGIC`` (answers
to our SYNs; IPv4 raw sockets see the IP header, IPv6 ones start at the TCP header, so the
filter differs), and on the traces' reserved UDP sockets (the destination's answers). An
ICMP error is matched to its probe by the quoted packet: family, protocol and source port
-> trace and probe name, then destination address and port, then tag and TTL. Anything
else is counted (:attr:`Tracer.stats`) and dropped.

A scheduler thread starts traces, sends rounds through one shared
:class:`~pathspider.client.forging.RawSender`, ends rounds and calls the callbacks
(an exception in a callback is logged, never kills the tracer). Send errors (EPERM from a
firewall, no route) are recorded in the result, not raised.

Bounds and safety: the tracer sends only to the ``dst`` it is given (the engine applies its
scope rules before); ``max_ttl`` is at most 64 and a trace has at most 255 probes; a round is
probes x TTLs packets; ``concurrency`` traces in flight.
"""
import collections
import errno
import ipaddress
import logging
import math
import os
import random
import select
import socket
import struct
import threading
import time

from pathspider.client import forging, hops, packets
from pathspider.observer import dissector

log = logging.getLogger("pathspider.client.trace")

__all__ = ["Tracer", "TraceResult", "Reply", "MAGIC", "MAX_TTL", "MAX_PROBES"]

#: Top 16 bits of every TCP probe's sequence number ("PS").
MAGIC = 0x5053
#: Highest TTL / hop limit a tracer accepts.
MAX_TTL = 64
#: Most probes (names) in one trace.
MAX_PROBES = 255
#: Shortest quiet period (seconds) after the last reply before a round ends.
MIN_QUIET = 0.05
#: Packets read from one socket per wake-up before the others get their turn.
_BATCH = 256
_RCVBUF = 4 << 20

_SO_ATTACH_FILTER = 26
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
_SO_RCVBUFFORCE = 33

#: ICMP types (v4, v6) that say the TTL / hop limit ran out, and destination unreachable.
_TIME_EXCEEDED = {socket.AF_INET: 11, socket.AF_INET6: 3}
_UNREACHABLE = {socket.AF_INET: 3, socket.AF_INET6: 1}
_ERROR_TYPES = {socket.AF_INET: (3, 11, 12), socket.AF_INET6: (1, 2, 3, 4)}
_DNS_PORT = 53
_TCP_ACK = 0x10
_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_PORTS_SEQ = struct.Struct("!HHI")


class Reply:
    """One answer to one probe: the ``ttl`` it was sent with, the ``address`` (text) of the
    router or destination that answered, ``kind`` ("time-exceeded", "unreachable" with
    ``code``, "destination", or "icmp-<type>"), ``rtt`` (seconds), ``quote_len`` (bytes of the
    quoted packet, 0 for a destination's answer), ``fields``
    (:func:`pathspider.client.hops.packet_fields` of the quote) and ``sent``: the fields
    whose sent value differs from TTL to TTL (a DNS probe's ``udp_checksum``, which covers
    the query id that carries the TTL), as sent with this ``ttl``; the analysis compares the
    quote with them rather than with the probe's fields."""

    __slots__ = ("ttl", "address", "kind", "code", "rtt", "quote_len", "fields", "sent")

    def __init__(self, ttl, address, kind, rtt=None, quote_len=0, fields=None, code=None,
                 sent=None):
        self.ttl, self.address, self.kind, self.code = ttl, address, kind, code
        self.rtt, self.quote_len, self.fields = rtt, quote_len, fields or {}
        self.sent = sent or {}

    def as_dict(self):
        """JSON-ready."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self):
        return f"Reply(ttl={self.ttl}, {self.kind} from {self.address})"


class TraceResult:
    """What a trace found: ``family``, ``dst``, ``probes`` (name -> the sent packet's fields,
    with ``sport``), ``replies`` (name -> {ttl: :class:`Reply`}), ``destination`` (name ->
    ``{"reached": bool, "ttl": int or None, "answers": n}``), ``packets_sent``, ``rounds``,
    ``max_ttl_sent``, ``aborted`` (the tracer was closed first), ``duration`` (seconds) and
    ``errors`` (send and setup failures, text)."""

    def __init__(self, family, dst, names=()):
        self.family, self.dst = family, dst
        self.probes = {}
        self.replies = {name: {} for name in names}
        self.destination = {name: {"reached": False, "ttl": None, "answers": 0}
                            for name in names}
        self.packets_sent = self.rounds = self.max_ttl_sent = 0
        self.aborted = False
        self.duration = 0.0
        self.errors = []

    def as_dict(self):
        """JSON-ready."""
        return {"family": 6 if self.family == socket.AF_INET6 else 4, "dst": self.dst,
                "probes": self.probes,
                "replies": {name: {ttl: r.as_dict() for ttl, r in sorted(by_ttl.items())}
                            for name, by_ttl in self.replies.items()},
                "destination": self.destination, "packets_sent": self.packets_sent,
                "rounds": self.rounds, "max_ttl_sent": self.max_ttl_sent,
                "aborted": self.aborted, "duration": self.duration, "errors": self.errors}

    def __repr__(self):
        return (f"TraceResult({self.dst}, {self.packets_sent} packets, {self.rounds} rounds"
                f"{', aborted' if self.aborted else ''})")


# ---- one trace's state ---------------------------------------------------------------------

class _Trace:
    """The state of one trace (owned by the tracer; fields change under its lock)."""

    def __init__(self, family, dst, probes, callback):
        self.family, self.dst, self.probes, self.callback = family, dst, probes, callback
        self.result = TraceResult(family, dst, probes)
        self.tag = random.getrandbits(8)
        self.socks = {}             # name -> reserved socket
        self.ports = {}             # name -> source port
        self.keys = []              # flow keys registered with the tracer
        self.src = self.src_packed = self.dst_packed = None
        self.lo = self.hi = 0
        self.sent_at = {}           # ttl -> monotonic time its round was sent
        self.varying = {}           # (name, ttl) -> fields sent that differ per TTL
        self.expect = set()         # (name, ttl) not answered yet this round
        self.round_start = None     # None: no round in flight
        self.last_reply = None
        self.slowest = 0.0
        self.started = time.monotonic()
        self.done = False

    def deadline(self, timeout):
        """When the current round ends (monotonic seconds; inf with no round in flight)."""
        if self.round_start is None:
            return math.inf
        if not self.expect:
            return self.round_start
        end = self.round_start + timeout
        if self.last_reply is not None:
            end = min(end, self.last_reply + max(4 * self.slowest, MIN_QUIET))
        return end

    def ttl_of(self, value):
        """The TTL encoded in a 16-bit ``value`` (tag << 8 | ttl), or None if not ours."""
        if (value >> 8) & 0xFF != self.tag:
            return None
        ttl = value & 0xFF
        return ttl if ttl in self.sent_at else None

    def ttl_of_seq(self, seq):
        """The TTL in a TCP sequence number we sent, or None."""
        if seq >> 16 != MAGIC:
            return None
        return self.ttl_of(seq & 0xFFFF)


def _check_probes(probes):
    """``probes`` as an ordered dict, or ValueError."""
    probes = dict(probes)
    if not probes:
        raise ValueError("a trace needs at least one probe")
    if len(probes) > MAX_PROBES:
        raise ValueError(f"at most {MAX_PROBES} probes per trace, got {len(probes)}")
    for name, probe in probes.items():
        if getattr(probe, "proto", None) not in (packets.PROTO_TCP, packets.PROTO_UDP):
            raise ValueError(f"probe {name!r} is not a TCPSyn or a UDPDatagram")
    return probes


# ---- packets ---------------------------------------------------------------------------------

def _tagged(tag, ttl):
    return (tag << 8) | ttl


def build_probe(probe, family, src, dst, sport, ttl, tag):
    """The bytes of ``probe`` sent with TTL / hop limit ``ttl`` for a trace with ``tag``
    (addresses packed): the TTL encoded as the module docstring says."""
    mark = _tagged(tag, ttl)
    if probe.proto == packets.PROTO_TCP:
        segment = probe.transport(src, dst, sport, seq=(MAGIC << 16) | mark)
        flow = 0
    else:
        payload = probe.payload
        if probe.dport == _DNS_PORT and len(payload) >= 12:
            payload = _u16.pack(mark) + payload[2:]
        segment = packets.udp(src, dst, sport, probe.dport, payload, probe.zero_checksum)
        flow = mark
    if family == socket.AF_INET:
        return packets.ip4_header(src, dst, probe.proto, len(segment), mark, ttl, probe.tos,
                                  True, probe.evil) + segment
    if probe.evil:
        raise ValueError("IPv6 has no evil bit (RFC 3514 is about IPv4)")
    return packets.ip6_header(src, dst, probe.proto, len(segment), ttl, probe.tos,
                              flow) + segment


# ---- sockets -------------------------------------------------------------------------------

def _bpf(program):
    """``SO_ATTACH_FILTER``'s ``struct sock_fprog`` for a list of (code, jt, jf, k), and the
    buffer it points to (keep it alive until the setsockopt is done)."""
    import ctypes
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    return struct.pack("HL", len(program), ctypes.addressof(buf)), buf


def tcp_answer_filter(family):
    """Classic BPF accepting TCP segments with ACK set whose ack number's top 16 bits are
    :data:`MAGIC`. IPv4 raw sockets hand the filter the IP header first (``ldxb 4*([0]&0xf)``
    finds the TCP header), IPv6 raw sockets the TCP header."""
    accept, reject = (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)
    if family == socket.AF_INET:
        return [(0xB1, 0, 0, 0),            # ldxb 4*([0]&0xf)
                (0x50, 0, 0, 13),           # ldb [x+13]      TCP flags
                (0x45, 0, 3, _TCP_ACK),     # jset #ACK
                (0x48, 0, 0, 8),            # ldh [x+8]       ack number, top half
                (0x15, 0, 1, MAGIC),        # jeq #MAGIC
                accept, reject]
    return [(0x30, 0, 0, 13),               # ldb [13]
            (0x45, 0, 3, _TCP_ACK),         # jset #ACK
            (0x28, 0, 0, 8),                # ldh [8]
            (0x15, 0, 1, MAGIC),            # jeq #MAGIC
            accept, reject]


def _big_buffer(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)


def open_icmp(family):
    """A raw ICMP (ICMPv6) socket that receives only error messages, non-blocking."""
    if family == socket.AF_INET:
        sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        allowed = sum(1 << t for t in _ERROR_TYPES[family])
        sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~allowed & 0xFFFFFFFF))
    else:
        sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        words = [0xFFFFFFFF] * 8            # a set bit blocks the type (Linux)
        for t in _ERROR_TYPES[family]:
            words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *words))
    _big_buffer(sock)
    sock.setblocking(False)
    return sock


def open_tcp_answers(family):
    """A raw TCP socket that receives only answers to our SYNs (BPF), non-blocking."""
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
    try:
        fprog, keep = _bpf(tcp_answer_filter(family))
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        del keep
        _big_buffer(sock)
        sock.setblocking(False)
        while True:                         # what came before the filter was attached
            try:
                sock.recv(65535)
            except BlockingIOError:
                break
    except BaseException:
        sock.close()
        raise
    return sock


# ---- the tracer ----------------------------------------------------------------------------

class Tracer:
    """Concurrent, bounded traces (module docstring). Thread-safe; a context manager."""

    def __init__(self, max_ttl=16, first_round=8, timeout=1.0, concurrency=100,
                 sender=None):
        if not 1 <= int(max_ttl) <= MAX_TTL:
            raise ValueError(f"max_ttl must be from 1 to {MAX_TTL}, got {max_ttl}")
        if int(first_round) < 1 or int(concurrency) < 1 or not timeout > 0:
            raise ValueError("first_round and concurrency must be at least 1, timeout > 0")
        self.max_ttl, self.first_round = int(max_ttl), min(int(first_round), int(max_ttl))
        self.timeout, self.concurrency = float(timeout), int(concurrency)
        self.sender = sender or forging.RawSender()
        self._own_sender = sender is None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = collections.deque()
        self._active = set()
        self._flows = {}                    # (family, proto, sport) -> (trace, name)
        self._udp = {}                      # fd -> (trace, name, socket)
        self._closed = False
        self._wake_at = -math.inf           # when the scheduler will look next
        self._pending = 0                   # submitted, not yet called back
        self._idle = threading.Condition(self._lock)
        self.stats = collections.Counter()
        self._receivers = {}
        self._threads = []
        self._scheduler = None

    # ---- public API ------------------------------------------------------------------------

    def submit(self, family, dst, probes, callback):
        """Queue a trace of ``dst`` (text address of ``family``) with ``probes`` (name ->
        probe); ``callback(TraceResult)`` is called from the tracer's thread when it ends.
        Returns at once. ValueError for a bad address or probes; RuntimeError once closed."""
        dst = str(ipaddress.ip_address(dst))
        if (":" in dst) != (family == socket.AF_INET6):
            raise ValueError(f"{dst} is not an address of family {family!r}")
        trace = _Trace(family, dst, _check_probes(probes), callback)
        with self._cond:
            if self._closed:
                raise RuntimeError("the tracer is closed")
            self._start_threads()
            self._waiting.append(trace)
            self._pending += 1
            self.stats["submitted"] += 1
            self._cond.notify()

    def trace(self, family, dst, probes, timeout=None):
        """Trace ``dst`` and return the :class:`TraceResult` (blocking; at most ``timeout``
        seconds if given, then None). Not from a callback: it runs on the thread that
        would have to do the tracing."""
        done = threading.Event()
        box = []
        self.submit(family, dst, probes, lambda result: (box.append(result), done.set()))
        done.wait(timeout)
        return box[0] if box else None

    def drain(self, timeout=None):
        """Wait until every submitted trace has called back; True if all did in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self):
        """Stop the threads and close the sockets; traces still queued or in flight call
        back with ``aborted=True``. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for receiver in self._receivers.values():
            receiver.wake()
        me = threading.current_thread()
        for thread in self._threads:
            if thread is not me:
                thread.join(10)
        if self._scheduler is None or self._scheduler is me or not self._scheduler.is_alive():
            self._abort_all()
        for receiver in self._receivers.values():
            receiver.close()
        if self._own_sender:
            self.sender.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- threads ---------------------------------------------------------------------------

    def _start_threads(self):
        """Start the scheduler and the receivers on first use (under the lock)."""
        if self._scheduler is not None:
            return
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._receivers[family] = _Receiver(self, family)
            except OSError as exc:
                log.warning("no %s receiver (%s): its traces see no replies",
                            "IPv6" if family == socket.AF_INET6 else "IPv4", exc)
        for family, receiver in self._receivers.items():
            thread = threading.Thread(target=receiver.run, daemon=True,
                                      name=f"pathspider-trace-rx{4 if family == 2 else 6}")
            self._threads.append(thread)
            thread.start()
        self._scheduler = threading.Thread(target=self._run, daemon=True,
                                           name="pathspider-tracer")
        self._threads.append(self._scheduler)
        self._scheduler.start()

    def _run(self):
        """The scheduler: start traces, end rounds, send the next ones, call back."""
        try:
            while True:
                with self._cond:
                    starting, ending = self._due()
                    if starting is None:
                        break
                for trace in starting:
                    self._start(trace)
                for trace in ending:
                    self._end_round(trace)
        except Exception:
            log.exception("the tracer's scheduler failed; pending traces are aborted")
        finally:
            self._abort_all()

    def _due(self):
        """(traces to start, traces whose round is over), waiting until there are some;
        (None, None) once closed. Called with the lock held."""
        while not self._closed:
            now = time.monotonic()
            ending = [t for t in self._active if t.deadline(self.timeout) <= now]
            starting = []
            while self._waiting and len(self._active) < self.concurrency:
                trace = self._waiting.popleft()
                self._active.add(trace)
                starting.append(trace)
            if starting or ending:
                self._wake_at = -math.inf
                return starting, ending
            wake = min((t.deadline(self.timeout) for t in self._active), default=math.inf)
            self._wake_at = wake
            self._cond.wait(None if wake == math.inf else max(0.0, wake - now))
        return None, None

    # ---- one trace: start, rounds, end ----------------------------------------------------

    def _start(self, trace):
        """Reserve the ports, note the sent fields, send the first round."""
        if self._closed:
            self._finish(trace, aborted=True)
            return
        try:
            self._prepare(trace)
        except (OSError, ValueError) as exc:
            trace.result.errors.append(f"setup: {exc}")
            self._finish(trace)
            return
        self._send_round(trace, 1, self.first_round)

    def _prepare(self, trace):
        family = trace.family
        trace.src = forging.route_source(family, trace.dst)
        trace.src_packed = socket.inet_pton(family, trace.src)
        trace.dst_packed = socket.inet_pton(family, trace.dst)
        for name, probe in trace.probes.items():
            if probe.proto == packets.PROTO_TCP:
                sock, port = forging.reserve_tcp(family, trace.src)
            else:
                sock, port = forging.reserve_udp(family, trace.src, trace.dst, probe.dport)
                sock.setsockopt(*forging._RECVERR[family], 0)
                sock.setblocking(False)
            trace.socks[name], trace.ports[name] = sock, port
            sent = build_probe(probe, family, trace.src_packed, trace.dst_packed, port, 1,
                               trace.tag)
            fields = hops.packet_fields(dissector.parse_ip(sent, 0, len(sent)))
            fields.update(proto=probe.proto, sport=port, dport=probe.dport)
            trace.result.probes[name] = fields
        with self._lock:
            for name, probe in trace.probes.items():
                key = (family, probe.proto, trace.ports[name])
                self._flows[key] = (trace, name)
                trace.keys.append(key)
                if probe.proto == packets.PROTO_UDP and family in self._receivers:
                    sock = trace.socks[name]
                    self._udp[sock.fileno()] = (trace, name, sock)
                    self._receivers[family].watch(sock)

    def _send_round(self, trace, lo, hi):
        """Send TTLs ``lo``..``hi`` of every probe at once."""
        built = []
        for name, probe in trace.probes.items():
            for ttl in range(lo, hi + 1):
                built.append((name, ttl, build_probe(probe, trace.family, trace.src_packed,
                                                     trace.dst_packed, trace.ports[name],
                                                     ttl, trace.tag)))
        for name, ttl, packet in built:
            if trace.probes[name].proto == packets.PROTO_UDP:
                l4 = 20 if trace.family == socket.AF_INET else 40
                trace.varying[(name, ttl)] = {
                    "udp_checksum": _u16.unpack_from(packet, l4 + 6)[0]}
        with self._lock:
            now = time.monotonic()
            trace.lo, trace.hi = lo, hi
            trace.result.rounds += 1
            trace.result.max_ttl_sent = hi
            for ttl in range(lo, hi + 1):
                trace.sent_at[ttl] = now
            trace.expect = {(name, ttl) for name, ttl, _ in built}
            trace.round_start = now
        failed = []
        for name, ttl, packet in built:
            try:
                self.sender.send(trace.family, packet, trace.dst)
            except OSError as exc:
                failed.append((name, ttl))
                text = f"send: {errno.errorcode.get(exc.errno, exc)}"
                if text not in trace.result.errors:
                    trace.result.errors.append(text)
        sent = len(built) - len(failed)
        with self._cond:
            trace.result.packets_sent += sent
            self.stats["packets_sent"] += sent
            trace.expect.difference_update(failed)
            if not trace.expect:
                self._cond.notify()

    def _end_round(self, trace):
        """The round is over: send the next one while the path goes on, else finish."""
        with self._lock:
            if trace.done:
                return
            trace.round_start = None
            result = trace.result
            reached = any(d["reached"] for d in result.destination.values())
            top = any((r.get(trace.hi) is not None and r[trace.hi].kind == "time-exceeded")
                      for r in result.replies.values())
            go_on = not reached and top and trace.hi < self.max_ttl
        if self._closed:
            self._finish(trace, aborted=True)
        elif go_on:
            self._send_round(trace, trace.hi + 1,
                             min(trace.hi + self.first_round, self.max_ttl))
        else:
            self._finish(trace)

    def _finish(self, trace, aborted=False):
        """Release the trace's ports and flows and call back (once)."""
        with self._cond:
            if trace.done:
                return
            trace.done = True
            trace.round_start = None
            self._active.discard(trace)
            for key in trace.keys:
                if self._flows.get(key, (None,))[0] is trace:
                    del self._flows[key]
            for name, sock in trace.socks.items():
                entry = self._udp.get(sock.fileno())
                if entry is not None and entry[0] is trace:
                    del self._udp[sock.fileno()]
                    self._receivers[trace.family].unwatch(sock)
                sock.close()
            trace.result.aborted = aborted
            trace.result.duration = time.monotonic() - trace.started
            self.stats["aborted" if aborted else "traced"] += 1
        try:
            trace.callback(trace.result)
        except Exception:
            log.exception("a trace callback failed (trace of %s)", trace.dst)
        finally:
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()

    def _abort_all(self):
        """Call back every trace still queued or in flight with ``aborted=True``."""
        with self._lock:
            left = list(self._waiting) + list(self._active)
            self._waiting.clear()
        for trace in left:
            self._finish(trace, aborted=True)

    # ---- replies (receiver threads) ---------------------------------------------------------

    def _record(self, family, proto, sport, dst, dport, ttl_of, reply):
        """Give ``reply`` to the probe it answers: the flow (family, proto, sport) names the
        trace and probe, ``dst``/``dport`` must be the trace's, ``ttl_of(trace)`` decodes the
        TTL (None: not ours). Counts what does not match."""
        with self._lock:
            found = self._flows.get((family, proto, sport))
            if found is None:
                self.stats["unmatched"] += 1
                return
            trace, name = found
            if dst != trace.dst or dport != trace.probes[name].dport:
                self.stats["unmatched"] += 1
                return
            ttl = ttl_of(trace)
            if ttl is None and reply.kind != "destination":
                self.stats["unmatched"] += 1
                return
            self._add(trace, name, ttl, reply)

    def _add(self, trace, name, ttl, reply):
        """Record a matched reply (lock held) and wake the scheduler if the round may end."""
        now = time.monotonic()
        if reply.kind == "destination":
            dest = trace.result.destination[name]
            dest["reached"] = True
            dest["answers"] += 1
            if ttl is not None and (dest["ttl"] is None or ttl < dest["ttl"]):
                dest["ttl"] = ttl
            if ttl is None:
                trace.last_reply = now
                return
        by_ttl = trace.result.replies[name]
        if ttl in by_ttl:
            self.stats["duplicates"] += 1
            return
        reply.ttl = ttl
        reply.rtt = now - trace.sent_at[ttl]
        if reply.kind != "destination":
            reply.sent = trace.varying.get((name, ttl), {})
        by_ttl[ttl] = reply
        trace.slowest = max(trace.slowest, reply.rtt)
        trace.last_reply = now
        trace.expect.discard((name, ttl))
        if trace.deadline(self.timeout) < self._wake_at:
            self._cond.notify()

    def _on_icmp(self, family, data, source):
        """An ICMP error: match its quotation to a probe."""
        try:
            if family == socket.AF_INET:
                outer = dissector.parse_ip(data, 0, len(data))
                icmp, address = outer.icmp, outer.src_addr
            else:
                icmp = dissector.ICMP6(data, 0, len(data), 0.0)
                address = str(ipaddress.ip_address(source.split("%")[0]))
            quoted = icmp.quoted if icmp is not None else None
        except (ValueError, IndexError):
            quoted = None
        if quoted is None or quoted.l4 < 0 or quoted.l4 + 8 > quoted.end:
            self.stats["unmatched"] += 1
            return
        sport, dport, seq = _PORTS_SEQ.unpack_from(quoted.buf, quoted.l4)
        proto = quoted.proto
        if proto == packets.PROTO_TCP:
            def ttl_of(trace):
                return trace.ttl_of_seq(seq)
        elif proto == packets.PROTO_UDP:
            mark = quoted.ident if family == socket.AF_INET else quoted.flow_label
            def ttl_of(trace):
                return trace.ttl_of(mark & 0xFFFF)
        else:
            self.stats["unmatched"] += 1
            return
        kind, code = _kind(family, icmp.type, icmp.code)
        if address == quoted.dst_addr:
            kind = "destination"
        reply = Reply(None, address, kind, quote_len=quoted.end - quoted.off,
                      fields=hops.packet_fields(quoted), code=code)
        self._record(family, proto, sport, quoted.dst_addr, dport, ttl_of, reply)

    def _on_tcp(self, family, data, source):
        """A TCP segment with ACK and our magic: the destination's SYN-ACK or RST."""
        try:
            if family == socket.AF_INET:
                ip = dissector.parse_ip(data, 0, len(data))
                tcp, address = ip.tcp, ip.src_addr
            else:
                tcp = dissector.TCP(data, 0, len(data)) if len(data) >= 20 else None
                address = str(ipaddress.ip_address(source.split("%")[0]))
        except (ValueError, IndexError):
            tcp = None
        if tcp is None:
            self.stats["unmatched"] += 1
            return
        seq = (tcp.ack_nbr - 1) & 0xFFFFFFFF
        reply = Reply(None, address, "destination", fields={"tcp_flags": tcp.flags & 0xFF})
        self._record(family, packets.PROTO_TCP, tcp.dst_port, address, tcp.src_port,
                     lambda trace: trace.ttl_of_seq(seq), reply)

    def _on_udp(self, fd):
        """The reserved UDP socket ``fd`` is readable: the destination answered (lock held
        by the caller, so the socket cannot be closed meanwhile)."""
        entry = self._udp.get(fd)
        if entry is None:
            return
        trace, name, sock = entry
        for _ in range(_BATCH):
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                continue                    # an ICMP error: the raw socket has it
            ttl = None
            if trace.probes[name].dport == _DNS_PORT and len(data) >= 2:
                ttl = trace.ttl_of(_u16.unpack_from(data)[0])
            self._add(trace, name, ttl, Reply(None, trace.dst, "destination"))


def _kind(family, icmp_type, code):
    """(kind, code) of an ICMP error."""
    if icmp_type == _TIME_EXCEEDED[family]:
        return "time-exceeded", code
    if icmp_type == _UNREACHABLE[family]:
        return "unreachable", code
    return f"icmp-{icmp_type}", code


class _Receiver:
    """One family's receiving sockets and the epoll its thread waits on."""

    def __init__(self, tracer, family):
        self.tracer, self.family = tracer, family
        self.icmp = open_icmp(family)
        try:
            self.tcp = open_tcp_answers(family)
        except OSError:
            self.icmp.close()
            raise
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poll = select.epoll()
        for fd in (self.wake_r, self.icmp.fileno(), self.tcp.fileno()):
            self.poll.register(fd, select.EPOLLIN)

    def watch(self, sock):
        self.poll.register(sock.fileno(), select.EPOLLIN | select.EPOLLERR)

    def unwatch(self, sock):
        try:
            self.poll.unregister(sock.fileno())
        except (OSError, ValueError):
            pass

    def wake(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def run(self):
        """Wait for packets until the tracer closes; hand each to the tracer."""
        tracer, family = self.tracer, self.family
        icmp_fd, tcp_fd = self.icmp.fileno(), self.tcp.fileno()
        try:
            while not tracer._closed:
                for fd, _ in self.poll.poll():
                    if fd == self.wake_r:
                        return
                    if fd == icmp_fd:
                        self._drain(self.icmp, tracer._on_icmp)
                    elif fd == tcp_fd:
                        self._drain(self.tcp, tracer._on_tcp)
                    else:
                        with tracer._lock:
                            tracer._on_udp(fd)
        except Exception:
            log.exception("the tracer's %s receiver failed", family)

    def _drain(self, sock, handle):
        for _ in range(_BATCH):
            try:
                data, source = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("receive: %s", exc)
                return
            try:
                handle(self.family, data, source[0])
            except Exception:       # one hostile packet must not end the receiver
                self.tracer.stats["malformed"] += 1
                log.debug("a %d-byte packet from %s could not be read", len(data), source[0],
                          exc_info=True)

    def close(self):
        for item in (self.icmp, self.tcp, self.poll):
            item.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
