"""``--locate``: trace the targets whose result shows a path-dependent effect, and put the
trace's ``locate`` object into their records before they are written.

The :class:`~pathspider.engine.jobs.JobCollector` hands every complete job to
:meth:`Locator.consider` (in the merger thread) with the plugin's conditions and the job's
records. The plugin (a :class:`pathspider.client.locatekit.LocatePlugin`) says whether the
job shows an effect worth locating (``dropped`` / ``changed``) and which packets to send;
the job is then held while one :class:`pathspider.client.trace.Tracer` (per run, bounded:
``--locate-workers`` traces in flight, ``--locate-max-ttl`` hops) probes the path, and written
from the tracer's thread by the callback with the analysis of
:func:`pathspider.client.hops.analyse` added. Jobs the plugin does not locate (clean,
offline, not a plugin with ``--locate``) are written at once, unchanged.

Nothing is lost: :meth:`Locator.finish` (called before the output closes) waits for the
traces in flight, or, when the run aborts, stops the tracer and writes every job still
held with ``"locate": {"aborted": true}``; each held job is written exactly once (the
callback and the end race for it under a lock).
"""
import logging
import socket
import threading
import time

from pathspider.client import hops, locatekit, trace

log = logging.getLogger("pathspider.engine.locating")

#: Most seconds :meth:`Locator.finish` waits for the traces in flight at the end of a run
#: that was not aborted (a trace takes at most rounds x --locate-timeout).
FINISH_SECONDS = 120.0
#: Seconds an aborting run gives the tracer's callbacks after closing it.
ABORT_SECONDS = 5.0


def wants_locate(spider, args):
    """Whether this run locates: ``--locate`` given and the plugin supports it (a plugin
    without support gets a warning and the run goes on unlocated)."""
    if not getattr(args, "locate", False):
        return False
    if not isinstance(spider, locatekit.LocatePlugin):
        log.warning("%s cannot locate (no --locate support); measuring without it",
                    type(spider).__name__)
        return False
    return True


class Locator:
    """One run's locating: decides per job, traces, writes the held jobs (module docstring).

    ``tracer`` is made from the run's options unless given (tests give their own).
    """

    def __init__(self, spider, args, tracer=None):
        self.spider = spider
        self.name = getattr(spider, "command_name", None) or type(spider).__name__.lower()
        self.fields = tuple(spider.locate_fields)
        self.tracer = tracer or trace.Tracer(
            max_ttl=args.locate_max_ttl, timeout=args.locate_timeout,
            concurrency=args.locate_workers)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._held = {}                 # token -> write(locate, effect)
        self._tokens = iter(range(1 << 62))
        #: Counters for the run's metadata (:meth:`counters`).
        self.traced = self.named = self.unknown = self.aborted = self.packets = 0
        self.not_traced = 0             # the plugin failed to say, or the probes failed
        self.seconds = 0.0

    # ---- the merger thread -------------------------------------------------------------------

    def consider(self, job, conditions, flows, write):
        """Trace ``job`` if the plugin sees an effect; True if it is held (``write(locate,
        effect)`` is called later, exactly once), False if the caller writes it now."""
        try:
            effect = self.spider.locate_effect(list(conditions or ()), flows)
            if effect is None:
                return False
            probes = self.spider.locate_probes(job)
        except Exception:
            log.exception("%s: cannot decide how to locate job %r; written unlocated",
                          self.name, job)
            self.not_traced += 1
            return False
        family = socket.AF_INET6 if ":" in str(job[0]) else socket.AF_INET
        with self._lock:
            token = next(self._tokens)
            self._held[token] = write
        started = time.monotonic()
        try:
            self.tracer.submit(family, str(job[0]), probes,
                               lambda result: self._traced(token, effect, result, started))
        except Exception:
            log.exception("%s: cannot trace %s; written unlocated", self.name, job[0])
            with self._lock:
                self._held.pop(token, None)
                self.not_traced += 1
            return False
        return True

    # ---- the tracer's thread -----------------------------------------------------------------

    def _traced(self, token, effect, result, started):
        """The tracer's callback: analyse, count, write the held job (if still held)."""
        try:
            locate = self.analyse(effect, result)
        except Exception:
            log.exception("%s: analysing the trace of %s failed", self.name, result.dst)
            locate = {"effect": effect, "error": "analysis failed"}
        self._release(token, locate, effect, time.monotonic() - started)

    def analyse(self, effect, result):
        """The ``locate`` object of one trace: :func:`hops.analyse` plus the effect, and a
        single ``changed_at`` hop (the first of the plugin's fields to change)."""
        expect = self.fields if effect == locatekit.CHANGED else ()
        locate = hops.analyse(result, self.fields, expect=expect)
        locate["effect"] = effect
        per_field = locate.pop("changed_at", None) or {}
        known = [hop for hop in per_field.values() if hop is not None]
        locate["changed_fields"] = per_field
        locate["changed_at"] = min(known) if known else None
        if getattr(result, "aborted", False):
            locate["aborted"] = True
        return locate

    def _release(self, token, locate, effect, seconds=0.0):
        with self._lock:
            write = self._held.pop(token, None)
            if write is None:
                return
            self.traced += 1
            self.seconds += seconds
            self.packets += locate.get("packets") or 0
            if locate.get("aborted"):
                self.aborted += 1
            elif locate.get("dropped_at" if effect == locatekit.DROPPED
                            else "changed_at") is not None:
                self.named += 1
            else:
                self.unknown += 1
        try:
            write(locate, effect)
        finally:
            with self._lock:
                if not self._held:
                    self._idle.notify_all()

    # ---- the end -----------------------------------------------------------------------------

    @property
    def held(self):
        """Jobs waiting for their trace."""
        with self._lock:
            return len(self._held)

    def finish(self, abort=False):
        """Write every held job: wait for the traces (at most :data:`FINISH_SECONDS`) unless
        ``abort``; then stop the tracer and write what is still held as aborted."""
        if not abort and self.held:
            log.info("%s: waiting for %d traces to finish", self.name, self.held)
            with self._lock:
                self._idle.wait_for(lambda: not self._held, FINISH_SECONDS)
        self.tracer.close()
        with self._lock:
            self._idle.wait_for(lambda: not self._held, ABORT_SECONDS)
            left = list(self._held)
        for token in left:
            self._release(token, {"aborted": True}, None)
        if left:
            log.warning("%s: %d jobs written without their trace (the run was stopped)",
                        self.name, len(left))

    def counters(self):
        """What locating did, for the run's metadata."""
        with self._lock:
            return {"traced": self.traced, "hop_named": self.named, "unknown": self.unknown,
                    "aborted": self.aborted, "not_traced": self.not_traced,
                    "packets_sent": self.packets, "held": len(self._held)}
