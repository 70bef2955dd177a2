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

log = logging.getLogger("pathspider.observer.process")


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
        run(flowqueue, irqueue)
        stats = getattr(observer, "stats", None)
        status.send(("stats", stats() if callable(stats) else None))
    except Exception as exc:           # reported to the parent, which decides the exit status
        log.debug("observer failed", exc_info=True)
        if ready:                      # counters of the packets seen until the failure
            _send_stats(observer, status)
        status.send(("error", _describe(exc)))
        raise SystemExit(1) from None


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
