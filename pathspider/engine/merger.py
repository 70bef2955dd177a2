"""Matching observed flows with connection results.

A flow and a result belong together when they name the same target address and the same local
(source) port: flows are keyed on ``(flow['dip'], flow['sp'])`` and results on
``(res.ip, res.port)``, as in 1.0. Either side may arrive first.

Differences from 1.0, all about never losing a record:

* A second result with the same key is kept (1.0 dropped it: two failed connections that both
  reported port 0 lost one record). Results wait in arrival order and match flows in order.
* IPv6 addresses are compared in canonical form, so ``2001:DB8::1`` matches ``2001:db8::1``.
* Unmatched flows (traffic not made by the spider) are forgotten oldest first once more than
  ``reap_size`` are waiting, as 1.0 did; results are never aged: at the end every result still
  waiting is merged with ``NO_FLOW``.

Memory: tens of thousands of results wait for their flows during a run (the Observer emits a
flow some seconds after its connection ended), nearly always one per key. A key's one waiting
item is therefore stored as it is; only a second one turns the entry into a queue
(:class:`_Waiting`). A queue per key cost about 600 bytes each, more than the result itself.
"""

import collections
import logging
import socket

from pathspider.constants import NO_FLOW

log = logging.getLogger("pathspider.engine.merger")


def canonical_address(address):
    """Return the canonical text of an IP address (IPv6 compressed, lower case).

    IPv4 text is returned as given: the input reader has validated it already and the Observer
    renders it the same way. Unparseable text is returned unchanged so it can still match
    itself. IPv6 forms are remembered (a target's flow and results ask for the same text),
    up to ``_CANONICAL_KEPT`` of them.
    """
    if not isinstance(address, str) or ":" not in address:
        return address
    canonical = _canonical.get(address)
    if canonical is None:
        try:
            canonical = socket.inet_ntop(socket.AF_INET6,
                                         socket.inet_pton(socket.AF_INET6, address))
        except (OSError, ValueError):
            canonical = address
        if len(_canonical) >= _CANONICAL_KEPT:
            _canonical.clear()
        _canonical[address] = canonical
    return canonical


_canonical = {}
_CANONICAL_KEPT = 65536


class _Waiting(collections.deque):
    """Two or more items waiting under one key, oldest first (one is stored as it is)."""

    __slots__ = ()


def _push(table, key, item):
    """Add ``item`` to the items waiting under ``key`` in ``table``."""
    have = table.get(key, _NOTHING)
    if have is _NOTHING:
        table[key] = item
    elif type(have) is _Waiting:
        have.append(item)
    else:
        table[key] = _Waiting((have, item))


def _pop(table, key):
    """Take the oldest item waiting under ``key`` (which must be in ``table``)."""
    have = table[key]
    if type(have) is not _Waiting:
        del table[key]
        return have
    item = have.popleft()
    if len(have) == 1:
        table[key] = have[0]
    return item


def _first(have):
    """The oldest of the items stored for one key."""
    return have[0] if type(have) is _Waiting else have


def _items(have):
    """The items stored for one key, oldest first."""
    return have if type(have) is _Waiting else (have,)


_NOTHING = object()


def flow_key(flow):
    """The merge key of an Observer flow record, or None if it lacks ``dip``/``sp``."""
    try:
        return canonical_address(flow["dip"]), flow["sp"]
    except (KeyError, TypeError):
        return None


def result_key(res):
    """The merge key of a plugin result, or None if it has no ``ip``/``port``.

    A result is an object with ``ip`` and ``port`` attributes (1.0's namedtuples) or a dict
    with those keys.
    """
    try:
        if isinstance(res, dict):
            return canonical_address(res["ip"]), res["port"]
        return canonical_address(res.ip), res.port
    except (AttributeError, KeyError, TypeError):
        return None


class Merger:
    """Pairs flows with results and hands each pair to ``merge(flow, res)``.

    With ``match_flows`` false (an Observer that emits no flows) every result is merged with
    ``NO_FLOW`` at once instead of waiting for the end of the run. Not thread-safe: one merger
    thread owns it.
    """

    def __init__(self, merge, reap_size=10000, match_flows=True):
        self._merge = merge
        self.match_flows = match_flows
        self.reap_size = reap_size
        self._results = {}                         # key -> waiting result(s), see _push
        self._flows = {}                           # key -> waiting (serial, flow)(s)
        self._flow_order = collections.deque()     # (serial, key) of flows, oldest first
        self._flow_serial = 0
        self._live_flows = 0
        self.merged = 0
        self.unobserved = 0
        self.reaped_flows = 0
        self.unkeyed_flows = 0
        self.unkeyed_results = 0
        self.leftover_flows = 0                    # flows still without a result at the end

    @property
    def waiting_results(self):
        """How many results are waiting for their flow."""
        return sum(len(_items(have)) for have in self._results.values())

    @property
    def waiting_flows(self):
        """How many flows are waiting for their result."""
        return self._live_flows

    def add_result(self, res):
        """Merge ``res`` with its waiting flow, or keep it until the flow arrives."""
        key = result_key(res) if self.match_flows else None
        if key is None:
            if self.match_flows:
                self._unkeyed(res)
            self._emit(NO_FLOW, res)
            return
        if key in self._flows:
            _, flow = _pop(self._flows, key)
            self._live_flows -= 1
            self._emit(flow, res)
        else:
            _push(self._results, key, res)

    def add_flow(self, flow):
        """Merge ``flow`` with its waiting result, or keep it (bounded) until it arrives."""
        key = flow_key(flow)
        if key is None:
            self.unkeyed_flows += 1
            if self.unkeyed_flows == 1:
                log.warning("flow record without 'dip'/'sp' cannot be merged (is basic_flow in "
                            "the new_flow_chain?): %r", flow)
            return
        if key in self._results:
            self._emit(flow, _pop(self._results, key))
            return
        self._flow_serial += 1
        _push(self._flows, key, (self._flow_serial, flow))
        self._flow_order.append((self._flow_serial, key))
        self._live_flows += 1
        while self._live_flows > self.reap_size:
            self._reap_oldest_flow()
        if len(self._flow_order) > 4 * self.reap_size + 64:
            self._compact_flow_order()

    def finish(self):
        """Merge every result still waiting with ``NO_FLOW`` (end of run)."""
        results, self._results = self._results, {}
        for have in results.values():
            for res in _items(have):
                self._emit(NO_FLOW, res)
        self.leftover_flows = self._live_flows
        self._flows.clear()
        self._flow_order.clear()
        self._live_flows = 0

    def log_summary(self):
        """One line on how the merge went, with a hint when results could not be matched."""
        log.info("merger: %d records merged, %d without an observed flow, %d observed flows "
                 "without a result (%d of them forgotten during the run)", self.merged,
                 self.unobserved, self.leftover_flows + self.reaped_flows, self.reaped_flows)
        if (self.unobserved and self.unobserved == self.merged and self.leftover_flows
                and not self.unkeyed_results):
            log.warning("no result matched an observed flow: results are matched on (ip, "
                        "port), where port must be the connection's LOCAL port (the flow's "
                        "'sp'), not the target's")

    def _unkeyed(self, res):
        self.unkeyed_results += 1
        if self.unkeyed_results == 1:
            log.warning("a result without 'ip' and 'port' (attributes, or keys of a dict) "
                        "cannot be matched to its flow; it is merged with NO_FLOW: %r", res)

    def _reap_oldest_flow(self):
        """Forget the oldest flow still waiting (entries of flows merged since are skipped)."""
        while self._flow_order:
            serial, key = self._flow_order.popleft()
            flows = self._flows.get(key)
            if flows is not None and _first(flows)[0] == serial:
                _pop(self._flows, key)
                self._live_flows -= 1
                self.reaped_flows += 1
                return

    def _compact_flow_order(self):
        """Drop the order entries of flows merged since (bounds memory on long runs)."""
        live = [(serial, key) for key, flows in self._flows.items()
                for serial, _ in _items(flows)]
        live.sort()
        self._flow_order = collections.deque(live)

    def _emit(self, flow, res):
        if flow is NO_FLOW:
            self.unobserved += 1
        self.merged += 1
        self._merge(flow, res)
