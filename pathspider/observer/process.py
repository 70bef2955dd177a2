"""The Observer's side of running in its own process (the engine's side is
:mod:`pathspider.engine.handoff`).

The child process, in order:

1. ``observer.start_capture()`` if the observer has it: opens the packet source, so that the
   parent knows capture runs before any connection is made;
2. sends ``("ready", None)`` on the status pipe;
3. ``observer.run_flow_batches(flowqueue, irqueue)`` if the observer has it (this project's
   Observer: lists of flow dicts, one per batch), else the 1.0 call
   ``observer.run_flow_enqueuer(flowqueue, irqueue)`` (one flow dict per item); a ``True`` on
   ``irqueue`` asks for shutdown; the observer ends the stream with ``SHUTDOWN_SENTINEL``;
4. sends ``("stats", observer.stats())`` (``None`` if the observer has no ``stats``).

While it runs, an observer with ``stats`` also puts ``(STATS_TAG, observer.stats())`` on the
flow queue every ``STATS_SECONDS`` (:class:`_WithCounters`; the Observer calls its queue's
``tick()``, flows or not): the engine shows the capture's drops while the run goes on (the
flow pump keeps the last ones), at no cost per packet and without a second thread touching the
capture handle.

An exception at any step is sent as ``("error", "Type: message")`` and the process exits 1.
Any object with ``run_flow_enqueuer`` works (1.0's dummy Observer included).

Signals: the parent decides when the Observer stops (it asks on ``irqueue`` after the jobs
have finished, so that their flows are flushed), so the child ignores SIGINT, SIGTERM and
SIGHUP, which a terminal or a process-group kill sends to both. It dies with its parent: a
thread waits on the parent's liveness pipe and ends the process when the parent is gone
(SIGKILL included), so no orphaned capture runs on.
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time

log = logging.getLogger("pathspider.observer.process")

#: First item of the counters the Observer puts on the flow queue while it runs.
STATS_TAG = "pathspider.observer.stats"
#: Least seconds between two of them.
STATS_SECONDS = 2.0


def _describe(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def observer_main(observer, flowqueue, irqueue, status, log_level):
    """Body of the Observer process (see the module docstring)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)       # the parent decides when to stop
    _die_with_parent()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ready = False
    try:
        start_capture = getattr(observer, "start_capture", None)
        if callable(start_capture):
            start_capture()
        status.send(("ready", None))
        ready = True
        run = getattr(observer, "run_flow_batches", None) or observer.run_flow_enqueuer
        stats = getattr(observer, "stats", None)
        run(_WithCounters(flowqueue, stats) if callable(stats) else flowqueue, irqueue)
        status.send(("stats", stats() if callable(stats) else None))
    except Exception as exc:           # reported to the parent, which decides the exit status
        log.debug("observer failed", exc_info=True)
        if ready:                      # counters of the packets seen until the failure
            _send_stats(observer, status)
        status.send(("error", _describe(exc)))
        raise SystemExit(1) from None


class _WithCounters:
    """The flow queue as the observer sees it, plus ``tick()``: the Observer
    (:mod:`pathspider.observer.meter`) calls it at least every ``HEARTBEAT`` seconds between
    two batches, and it puts ``(STATS_TAG, stats())`` on the queue when ``STATS_SECONDS``
    have passed since the last time. It runs in the observer's own thread, so ``stats()``
    never races the capture loop; counters that cannot be read are not asked for again."""

    def __init__(self, flowqueue, stats):
        self._queue = flowqueue
        self._stats = stats
        self._next = time.monotonic()
        self.put = flowqueue.put

    def tick(self):
        now = time.monotonic()
        if self._stats is None or now < self._next:
            return
        self._next = now + STATS_SECONDS
        try:
            self._queue.put((STATS_TAG, self._stats()))
        except Exception:
            log.debug("the observer's counters cannot be sent while it runs", exc_info=True)
            self._stats = None

    def __getattr__(self, name):            # anything else the observer uses of its queue
        return getattr(self._queue, name)


def _send_stats(observer, status):
    """Report the counters also after a failure, if the observer can still give them."""
    stats = getattr(observer, "stats", None)
    if callable(stats):
        try:
            status.send(("stats", stats()))
        except Exception:
            log.debug("no statistics after the failure", exc_info=True)


def _die_with_parent():
    """Exit as soon as the parent process is gone (however it ended)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch():
        multiprocessing.connection.wait([sentinel])
        log.debug("the parent process is gone; the Observer stops")
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
