"""The Observer's side of running in its own process (the engine's side is
:mod:`pathspider.engine.handoff`).

The child process, in order:

1. ``observer.start_capture()`` if the observer has it: opens the packet source, so that the
   parent knows capture runs before any connection is made;
2. sends ``("ready", None)`` on the status pipe;
3. ``observer.run_flow_enqueuer(flowqueue, irqueue)``: the 1.0 call. Flow dicts (or lists of
   them) go on ``flowqueue``; a ``True`` on ``irqueue`` asks for shutdown; the observer ends the
   stream with ``SHUTDOWN_SENTINEL``;
4. sends ``("stats", observer.stats())`` (``None`` if the observer has no ``stats``).

An exception at any step is sent as ``("error", "Type: message")`` and the process exits 1.
Any object with ``run_flow_enqueuer`` works (1.0's dummy Observer included).
"""

import logging
import signal

log = logging.getLogger("pathspider.observer.process")


def _describe(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def observer_main(observer, flowqueue, irqueue, status, log_level):
    """Body of the Observer process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent decides when to stop
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        start_capture = getattr(observer, "start_capture", None)
        if callable(start_capture):
            start_capture()
        status.send(("ready", None))
        observer.run_flow_enqueuer(flowqueue, irqueue)
        stats = getattr(observer, "stats", None)
        status.send(("stats", stats() if callable(stats) else None))
    except Exception as exc:           # reported to the parent, which decides the exit status
        log.debug("observer failed", exc_info=True)
        status.send(("error", _describe(exc)))
        raise SystemExit(1) from None
