"""One output line per job (``--format jobs``): PATHspider 2.0's job records.

In this mode a run writes, for every job, the job's fields (:func:`pathspider.engine.targets.
job_fields`: an ndjson job's object as read, extra fields included; ``dip``, ``dp``, ``domain``,
``rank`` for a CSV row) plus

* ``flow_results``: the job's records as the plugin's ``merge`` made them, in connection order;
* ``missed_flows``: how many of its results were merged without an observed flow (``NO_FLOW``);
* ``time``: ``{"from": earliest tstart, "to": latest tstop}`` of the records that have them;
* ``conditions``: the plugin's interpretation (:func:`interpret`), when it has one.

The problem is that the 1.0 API gives no handle on a job once its results are made: ``merge``
puts its records on ``outqueue`` (or returns them), records may be namedtuples that cannot be
tagged, and the records of one job reach the merger at different times (a flow can arrive
seconds after the other). So the job is followed from the outside:

1. when a completer has the results of a job (:meth:`JobCollector.issue`, called by the
   engine before the results go to the merger), it makes a :class:`Ticket` for the job and
   remembers ``id(result) -> (ticket, connection)`` for each result;
2. the merger calls ``merge`` through :meth:`JobCollector.merging`, which looks the result's
   ticket up and, for the duration of the call, has ``outqueue`` (a
   :class:`CapturingRecordQueue`) append every record the merger thread puts to that
   connection's list in the ticket instead of queueing it; records the engine puts for a
   ``merge`` that returned its record are captured the same way;
3. when every result of the ticket has been merged, the job line is built (the plugin's
   ``combine_flows`` runs in the merger thread, like ``merge``) and put on ``outqueue``, where
   the writer writes it as it writes any record.

A job's line is therefore written once, whole, when its last record is merged. At the end of a
run every result is merged (with ``NO_FLOW`` if need be), so every job is complete; only when an
aborted run stops waiting for the merger (``ABORT_SECONDS``) can a job be left incomplete, and
:meth:`JobCollector.flush`, called just before ``outqueue`` is closed, writes such jobs with what
they have (marked ``"incomplete": true``; a job with no record at all is not written, as it
would have no record in the per-connection format either). Records put on ``outqueue`` outside
``merge`` (by another thread) are written as they are, between the job lines.

None of this exists in the default per-connection format: the engine then uses its plain queue
and merge function and skips the ticket step (one ``None`` test per job and per result).
"""

import itertools
import logging
import threading

from pathspider.client import locatekit
from pathspider.constants import NO_FLOW
from pathspider.engine.machinery import RecordQueue
from pathspider.engine.output import record_to_dict
from pathspider.engine.targets import OUTPUT_KEYS, job_fields

log = logging.getLogger("pathspider.engine.jobs")

#: Output formats (``--format``): one record per connection (1.0), one line per job (2.0).
OUTPUT_FORMATS = ("flows", "jobs")
NOT_OBSERVED = "pathspider.not_observed"
MISSED_FLOWS = "pathspider.missed_flows:{}"


class Ticket:
    """One job on its way through the merger: its records per connection, and how many of its
    ``expected`` results have been merged (``merged``), how many without a flow (``missed``)."""

    __slots__ = ("serial", "job", "records", "expected", "merged", "missed", "closed")

    def __init__(self, serial, job, expected, connections):
        self.serial = serial
        self.job = job
        self.records = [[] for _ in range(connections)]
        self.expected = expected
        self.merged = 0
        self.missed = 0
        self.closed = False             # its line was written (or is being written)

    @property
    def has_records(self):
        return any(self.records)


class CapturingRecordQueue(RecordQueue):
    """``outqueue`` in jobs mode: a ``put`` from a thread inside :meth:`JobCollector.merging`
    appends the record to the job's list (``capture.records``, a ``threading.local``)
    instead of queueing it; every other ``put`` queues as usual. ``puts`` counts both, so the
    engine still tells a ``merge`` that put its record from one that returned it."""

    _capture = None                     # set by JobCollector.attach

    def put(self, item, block=True, timeout=None):
        records = getattr(self._capture, "records", None)
        if records is None:
            return super().put(item, block, timeout)
        with self.mutex:
            self.puts += 1
        records.append(item)
        return None


def time_span(records):
    """``{"from", "to"}``: the earliest start and latest stop of ``records`` (``tstart`` /
    ``tstop``, or 2.0's ``spdr_start`` / ``spdr_stop``), or None if none has them. The times
    are UTC text in one format, so text order is time order."""
    starts, stops = [], []
    for record in records:
        if isinstance(record, dict):
            start = record.get("tstart", record.get("spdr_start"))
            stop = record.get("tstop", record.get("spdr_stop"))
            if isinstance(start, str):
                starts.append(start)
            if isinstance(stop, str):
                stops.append(stop)
    if not starts and not stops:
        return None
    return {"from": min(starts) if starts else None, "to": max(stops) if stops else None}


def interpret(spider, flows):
    """The plugin's conditions for one job, or None if it has no interpretation.

    ``flows`` has one entry per connection of the job, in connection order: the record that
    connection's result was merged into (a dict), or None when it has none (a connection that
    returned ``NO_RESULT``, e.g. TFO's skipped experiment). PATHspider 2.0's hook
    ``combine_flows(flows)`` is used if the plugin defines it; otherwise a 1.0-style
    ``conditions(baseline, experiment)`` for a two-connection job (the bundled plugins'
    interpretation functions).
    """
    combine = getattr(spider, "combine_flows", None)
    if callable(combine):
        return combine(flows)
    conditions = getattr(spider, "conditions", None)
    if callable(conditions) and len(flows) == 2:
        return conditions(flows[0], flows[1])
    return None


def with_missed_flows(conditions, missed):
    """``conditions`` (a list, or None: no interpretation) with what 2.0.1's engine added when
    ``missed`` flows were not observed: ``pathspider.not_observed`` (unless the plugin's
    conditions have it already) and ``pathspider.missed_flows:<n>``."""
    if conditions is None:
        return None
    conditions = list(conditions)
    if missed:
        if NOT_OBSERVED not in conditions:
            conditions.append(NOT_OBSERVED)
        conditions.append(MISSED_FLOWS.format(missed))
    return conditions


class JobCollector:
    """Follows each job through the merger and puts one line per job on ``outqueue`` (see the
    module docstring). Attach it with ``engine.write_job_lines(collector)`` before the run
    starts."""

    def __init__(self, spider, job_lines=True, locator=None):
        self.spider = spider
        #: True: one line per job (``--format jobs``); False: the job's records one by one,
        #: as ``--format flows`` writes them (used when ``--locate`` needs whole jobs).
        self.job_lines = job_lines
        #: ``--locate``: a :class:`pathspider.engine.locating.Locator`, or None.
        self.locator = locator
        self.engine = None
        self.outqueue = None
        self.lines = 0                  # job lines put on outqueue
        self.records = 0                # records inside them
        self.incomplete = 0             # lines written by flush() with records missing
        self._on_error = None
        self._capture = threading.local()
        self._lock = threading.Lock()
        self._by_result = {}            # id(result) -> (ticket, connection) or a list of them
        self._open = set()              # tickets whose line is not written yet
        self._serial = itertools.count()

    def attach(self, engine):
        """Make ``engine.outqueue`` capture records during ``merge`` (its class becomes
        :class:`CapturingRecordQueue`; the object, which the plugin already holds as
        ``self.outqueue``, stays the same) and report plugin errors through the engine."""
        queue = engine.outqueue
        queue.__class__ = CapturingRecordQueue
        queue._capture = self._capture
        self.outqueue = queue
        self.engine = engine
        self._on_error = engine._job_failed

    # ---- completer threads ------------------------------------------------------------------

    def issue(self, job, made, connections):
        """A ticket for ``job``, whose results ``made`` (``(connection, result)`` pairs) go to
        the merger next; ``connections`` is the number of connections of the job."""
        ticket = Ticket(next(self._serial), job, len(made), connections)
        with self._lock:
            self._open.add(ticket)
            for config, res in made:
                entry = (ticket, config)
                key = id(res)
                earlier = self._by_result.get(key)
                if earlier is None:
                    self._by_result[key] = entry
                elif type(earlier) is list:     # the same object returned twice
                    earlier.append(entry)
                else:
                    self._by_result[key] = [earlier, entry]

    def _take(self, res):
        """The ``(ticket, connection)`` of ``res``, forgotten; None if it has none."""
        key = id(res)
        with self._lock:
            entry = self._by_result.pop(key, None)
            if type(entry) is list:
                first = entry.pop(0)
                if entry:
                    self._by_result[key] = entry if len(entry) > 1 else entry[0]
                entry = first
        return entry

    # ---- the merger thread ------------------------------------------------------------------

    def merging(self, merge):
        """``merge(flow, res)`` (the engine's call of the plugin's ``merge``) capturing the
        records it makes into the result's ticket, and writing the job's line once the last
        of its results is merged."""
        capture = self._capture

        def merge_into_job(flow, res):
            entry = self._take(res)
            if entry is None or entry[0].closed:
                merge(flow, res)
                return
            ticket, config = entry
            capture.records = ticket.records[config]
            try:
                merge(flow, res)
            finally:
                capture.records = None
            self._merged(ticket, flow is NO_FLOW)

        return merge_into_job

    def _merged(self, ticket, missed):
        with self._lock:
            ticket.merged += 1
            ticket.missed += bool(missed)
            if ticket.merged < ticket.expected or ticket.closed:
                return
            ticket.closed = True
            self._open.discard(ticket)
        self._emit(ticket)

    # ---- the end ----------------------------------------------------------------------------

    def flush(self, abort=False):
        """Write the jobs still waiting for records with what they have (see the module
        docstring); called once, just before ``outqueue`` is closed. Jobs held for
        ``--locate`` are written first (see :meth:`pathspider.engine.locating.Locator.finish`:
        their traces are waited for, or, when the run was ``abort``-ed, cut short)."""
        if self.locator is not None:
            self.locator.finish(abort=abort)
        with self._lock:
            waiting = sorted(self._open, key=lambda ticket: ticket.serial)
            self._open.clear()
            self._by_result.clear()
            for ticket in waiting:
                ticket.closed = True
        incomplete = [ticket for ticket in waiting if ticket.has_records]
        if incomplete:
            log.warning("%d jobs written with records missing (the run ended before all of "
                        "their results were merged)", len(incomplete))
        for ticket in incomplete:
            self._emit(ticket, complete=False)

    # ---- the job line ----------------------------------------------------------------------

    def _emit(self, ticket, complete=True):
        """Write ``ticket``'s job, or hand it to the locator, which writes it after its
        trace (only complete jobs are traced)."""
        per_connection = [[record_to_dict(record) for record in records]
                          for records in ticket.records]
        flows = [records[0] if records else None for records in per_connection]
        conditions = self._conditions(ticket, flows)

        def write(locate=None, effect=None):
            self._write(ticket, per_connection, conditions, complete, locate, effect)

        if complete and self.locator is not None and \
                self.locator.consider(ticket.job, conditions, flows, write):
            return
        write()

    def _write(self, ticket, per_connection, conditions, complete, locate, effect):
        """Put the job's line (or, without job lines, its records) on ``outqueue``, with the
        trace's ``locate`` object when there is one. Called from the merger thread, or from
        the tracer's for a located job."""
        if not self.job_lines:
            records = [record for records in per_connection for record in records]
            for record in records:
                if locate is not None:
                    record["locate"] = locate
                self.outqueue.put(record)
            with self._lock:
                self.records += len(records)
            return
        line = self.job_line(ticket, per_connection, conditions)
        if locate is not None:
            line["locate"] = locate
            if "conditions" in line:
                line["conditions"] += locatekit.path_conditions(
                    self.locator.name, effect, locate)
        if not complete:
            line["incomplete"] = True
        with self._lock:
            self.incomplete += not complete
            self.lines += 1
            self.records += len(line["flow_results"])
        self.outqueue.put(line)

    def job_line(self, ticket, per_connection, conditions):
        """The output line of ``ticket``'s job (see the module docstring), from its records
        as dicts per connection and its conditions (None: no interpretation)."""
        line = job_fields(ticket.job)
        for key in OUTPUT_KEYS:
            line.pop(key, None)
        line["flow_results"] = [record for records in per_connection for record in records]
        line["missed_flows"] = ticket.missed
        span = time_span(line["flow_results"])
        if span is not None:
            line["time"] = span
        if conditions is not None:
            line["conditions"] = list(conditions)
        return line

    def _conditions(self, ticket, flows):
        """The plugin's conditions with 2.0.1's additions, or None (no interpretation, or the
        plugin's function failed: a plugin error, the line is still written)."""
        try:
            return with_missed_flows(interpret(self.spider, flows), ticket.missed)
        except Exception:
            if self._on_error is not None:
                self._on_error(ticket.job, "combine_flows")
            else:
                log.exception("interpreting job %r failed", ticket.job)
            return None
