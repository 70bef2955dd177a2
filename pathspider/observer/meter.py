"""The Observer: reads a packet source and turns its packets into flow records (1.0 API).

``Observer(lturi, new_flow_chain=[], ip4_chain=[], ip6_chain=[], icmp4_chain=[],
icmp6_chain=[], tcp_chain=[], udp_chain=[], l4_chain=[], idle_timeout=30, expiry_timeout=5)``
reads packets from a libtrace-style URI (:mod:`pathspider.observer.source`), hands header views
with python-libtrace's attribute names (:mod:`pathspider.observer.dissector`) to the chain
functions and emits one record (a plain dict of JSON-ready values) per flow. The flow semantics
(keys, directions, veto, short-circuit, packet-clock timers, ICMP linking) are described in
:mod:`pathspider.observer.flowtable`.

Chain signatures::

    new_flow_chain: fn(rec, ip) -> keep the flow?
    ip4_chain / ip6_chain: fn(rec, ip, rev) -> go on?
    icmp4_chain / icmp6_chain: fn(rec, ip, q, rev) -> go on?   (q: quoted packet view or None)
    tcp_chain: fn(rec, tcp, rev); udp_chain: fn(rec, udp, rev)
    l4_chain: fn(rec, ip, rev)  (any packet that is neither TCP nor UDP)

``rev`` is passed positionally. A falsy return (``None`` included) stops the functions after
it for that packet and completes the flow, as in 1.0. Header views are only valid during the
call (they are reused): keep values, not views. Chain functions must be module-level
functions so the Observer can be pickled for a ``spawn``-ed observer process. Every record
has ``first`` and ``last`` (packet timestamps, float seconds) plus what the chains write; no
internal key ever appears in it. 1.0 imported the class and :func:`simple_observer` from
``pathspider.observer``, which re-exports them from here.
"""

import logging
import queue as _queue
import time

from pathspider.constants import SHUTDOWN_SENTINEL
from pathspider.observer.basic import basic_count, basic_flow
from pathspider.observer.build import log_meter_mode
from pathspider.observer.flowtable import FlowTable
from pathspider.observer.source import PacketSource, PacketSourceError

__all__ = ["Observer", "simple_observer"]

logger = logging.getLogger("pathspider.observer.meter")

BATCH = 1024
"""Packets read per pcapy-ng call."""
POLL = 0.1
"""Longest wait for packets before looking for a shutdown request again (seconds)."""
DRAIN_QUIET = 0.15
"""At shutdown, stop draining the capture once it stayed quiet this long (seconds)."""
DRAIN_MAX = 3.0
"""At shutdown, never drain for longer than this (seconds)."""
WALLCLOCK_LAG = 1.0
"""On a quiet live source the packet clock follows the wall clock, this far behind."""
HEARTBEAT = 2.0
"""Running for the engine, the Observer calls its flow queue's ``tick()`` (if it has one) at
least this often (seconds), flows or not: the Observer process sends its counters then."""


def _shutdown_requested(irqueue):
    """True if the engine asked to stop: a value on an interrupt queue, or a set Event."""
    if irqueue is None:
        return False
    if hasattr(irqueue, "is_set"):
        return irqueue.is_set()
    try:
        irqueue.get_nowait()
    except _queue.Empty:
        return False
    return True


class Observer:
    """Flow meter over a libtrace-style URI (see the module docstring for chains).

    Process model (the engine's contract): the object is picklable until it starts; in the
    observer process the engine calls :meth:`start_capture` (opens the source, raises
    :class:`PacketSourceError` with a one-line reason), then :meth:`run_flow_batches` (puts
    lists of records on the flow queue, notices a shutdown request within ``POLL`` seconds,
    drains the capture, flushes, puts ``SHUTDOWN_SENTINEL``), then :meth:`stats`. 1.0's
    :meth:`run_flow_enqueuer` does the same with one record per queue item.

    Synchronous use (the ``observe`` command, tests)::

        for rec in Observer("pcap:trace.pcap", new_flow_chain=[basic_flow]).flows():
            ...

    :meth:`flows` yields records as they are emitted and the flushed rest at the end: for an
    offline source until end of file, for a live one until ``stop`` (a
    ``threading.Event``/``multiprocessing.Event``) is set. ``bpf`` is an optional kernel
    capture filter in tcpdump syntax.
    """

    def __init__(self, lturi, new_flow_chain=[], ip4_chain=[], ip6_chain=[], icmp4_chain=[],
                 icmp6_chain=[], tcp_chain=[], udp_chain=[], l4_chain=[], idle_timeout=30,
                 expiry_timeout=5, bpf=None):
        self.lturi = lturi
        self.source = PacketSource(lturi, bpf=bpf)      # parses the URI; opens nothing
        self.chains = {"new_flow": tuple(new_flow_chain), "ip4": tuple(ip4_chain),
                       "ip6": tuple(ip6_chain), "icmp4": tuple(icmp4_chain),
                       "icmp6": tuple(icmp6_chain), "tcp": tuple(tcp_chain),
                       "udp": tuple(udp_chain), "l4": tuple(l4_chain)}
        self.idle_timeout = idle_timeout
        self.expiry_timeout = expiry_timeout
        self.table = None
        self._reported = False
        self._source_stats = {"received": 0, "dropped": 0, "ifdropped": 0}

    # ------------------------------------------------------------------ process model

    def start_capture(self):
        """Open the packet source (in the process that will read it)."""
        if self.table is None:
            self.source.open()
            log_meter_mode()
            self.table = FlowTable(self.source.linktype, self.chains,
                                   self.idle_timeout, self.expiry_timeout)
        return self

    def run_flow_enqueuer(self, flowqueue, irqueue=None):
        """1.0's call: put each flow record on ``flowqueue`` as it is emitted, until end of file
        or a shutdown request, then ``SHUTDOWN_SENTINEL`` (also after an error)."""
        self._enqueue(flowqueue, irqueue, batched=False)

    def run_flow_batches(self, flowqueue, irqueue=None):
        """As :meth:`run_flow_enqueuer`, but each item is a list of the records emitted
        together: one queue item per batch instead of per flow. The engine's Observer
        process uses this when the observer has it."""
        self._enqueue(flowqueue, irqueue, batched=True)

    def _enqueue(self, flowqueue, irqueue, batched):
        try:
            self.start_capture()
            put = flowqueue.put
            tick = getattr(flowqueue, "tick", None)
            for batch in self._batches(lambda: _shutdown_requested(irqueue),
                                       HEARTBEAT if tick is not None else None):
                if not batch:
                    tick()
                elif batched:
                    put(batch)
                else:
                    for record in batch:
                        put(record)
        finally:
            flowqueue.put(SHUTDOWN_SENTINEL)
            self._finish()

    def stats(self):
        """JSON-ready counters: packets, dropped, short, nonip, malformed, flows, ignored..."""
        out = self.table.ct.as_dict() if self.table is not None else {}
        src = self.source.stats() if self.source.is_open else self._source_stats
        out["dropped"] = src["dropped"]
        out["ifdropped"] = src["ifdropped"]
        out["received"] = src["received"]
        return out

    # ------------------------------------------------------------------ synchronous API

    def flows(self, stop=None):
        """Yield flow records (see the class docstring)."""
        self.start_capture()
        try:
            for batch in self._batches(stop.is_set if stop is not None else (lambda: False)):
                yield from batch
        finally:
            self._finish()

    # ------------------------------------------------------------------ internals

    def _batches(self, stopping, heartbeat=None):
        """Read the source, yield non-empty lists of emitted records, flush at the end; with
        ``heartbeat`` (seconds) also an empty list whenever that long passed since the last.

        If the source fails (a live interface went down or disappeared), the flows seen so far
        are still flushed and yielded, then :class:`PacketSourceError` is raised: the engine
        merges them with their results and ends the run with the error.
        """
        source, table = self.source, self.table
        live = source.live
        failure = None
        beat = time.monotonic() if heartbeat else None     # the first one at once
        try:
            while True:
                if live and stopping():
                    self._drain()
                    break
                pkts, meta = source.next_batch(BATCH)
                if meta:
                    table.process(pkts, meta)
                elif not live:
                    break
                elif not source.wait(POLL):
                    table.tick(time.time() - WALLCLOCK_LAG)
                if table.emitted:
                    out, table.emitted = table.emitted, []
                    yield out
                if beat is not None and time.monotonic() >= beat:
                    beat = time.monotonic() + heartbeat
                    yield []
        except Exception as exc:        # pcapy.PcapError, e.g. "The interface went down"
            failure = exc
        table.flush()
        if table.emitted:
            out, table.emitted = table.emitted, []
            yield out
        if failure is not None:
            raise PacketSourceError(f"reading {self.lturi} failed: {failure}") from failure

    def _drain(self):
        """Read what is still buffered in the kernel after a shutdown request."""
        source, table = self.source, self.table
        deadline = time.monotonic() + DRAIN_MAX
        while time.monotonic() < deadline:
            pkts, meta = source.next_batch(BATCH)
            if meta:
                table.process(pkts, meta)
            elif not source.wait(DRAIN_QUIET):
                break

    def _finish(self):
        if self.source.is_open:
            self._source_stats = self.source.stats()
        if self.table is not None and not self._reported:
            self._reported = True
            s = self.stats()
            logger.info("observer %s: %d packets, %d dropped by the kernel, %d short, "
                        "%d non-IP, %d malformed, %d flows, %d ignored, %d chain errors",
                        self.lturi, s["packets"], s["dropped"], s["short"], s["nonip"],
                        s["malformed"], s["flows"], s["ignored"], s["chain_errors"])
            if s["dropped"] or s["ifdropped"]:
                logger.warning("observer %s: the kernel dropped %d packets (%d by the "
                               "interface): flows may be incomplete", self.lturi,
                               s["dropped"], s["ifdropped"])
        self.source.close()


def simple_observer(lturi):
    """An Observer with just the basic chains, as in 1.0."""
    return Observer(lturi, new_flow_chain=[basic_flow], ip4_chain=[basic_count],
                    ip6_chain=[basic_count])
