"""The engine's side of the Observer hand-off: start the Observer process, pump its flows.

:class:`ObserverRunner` starts the child (whose side of the protocol is
:func:`pathspider.observer.process.observer_main`: open the packet source, say "ready", run
the 1.0 ``run_flow_enqueuer``, report statistics), waits until the child captures, then pumps
the flow batches it sends to the merger. The parent waits for "ready" before any worker
connects, so no early packet is missed, and a failure (no permission, no such interface) comes
back as one clear error message.

Everything passed to the child is picklable, so this works with the ``spawn`` start method too.
A child that dies without ending its stream is noticed by a monitor thread in the parent,
which reports the error and ends the flow stream so the merger cannot hang.
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time

from pathspider.constants import QUEUE_SIZE, SHUTDOWN_SENTINEL
from pathspider.observer.process import STATS_TAG, observer_main

log = logging.getLogger("pathspider.engine.handoff")

#: Seconds the parent waits for the child to open its packet source.
STARTUP_TIMEOUT = 60


class ObserverError(RuntimeError):
    """The Observer could not start, or died during the run."""


def start_method():
    """The multiprocessing start method: ``$PATHSPIDER_MP_START`` or the platform default."""
    return os.environ.get("PATHSPIDER_MP_START") or None


class ObserverRunner:
    """Starts the Observer process, pumps its flows to ``deliver`` and watches its health.

    ``deliver(flows)`` is called from the pump thread with each batch (a list) of flow dicts as
    the Observer sent it and, once, with ``SHUTDOWN_SENTINEL`` when the stream has ended
    (normally or because the child died).
    """

    def __init__(self, observer, deliver, on_failure):
        self._observer = observer
        self._deliver = deliver
        self._on_failure = on_failure
        self._ctx = multiprocessing.get_context(start_method())
        self.flowqueue = self._ctx.Queue(QUEUE_SIZE)
        self.irqueue = self._ctx.Queue()
        self.stats = None
        self.live_stats = None                  # the Observer's counters while it runs
        self.error = None
        self._process = None
        self._status = None
        self._pump = None
        self._monitor = None
        self._stream_ended = threading.Event()
        self._stopped_on_purpose = False        # killed by the engine: not a failure

    @property
    def process(self):
        return self._process

    @property
    def counters(self):
        """The Observer's latest counters: the final ones once reported, else the last sent
        while it runs (every few seconds, with its flows), else None."""
        return self.stats if self.stats is not None else self.live_stats

    def start(self, timeout=STARTUP_TIMEOUT):
        """Start the child and wait until its packet source is open (or raise ObserverError)."""
        reader, writer = self._ctx.Pipe(duplex=False)
        self._status = reader
        self._process = self._ctx.Process(
            target=observer_main, name="observer", daemon=True,
            args=(self._observer, self.flowqueue, self.irqueue, writer,
                  logging.getLogger("pathspider").getEffectiveLevel()))
        self._process.start()
        writer.close()
        ready = multiprocessing.connection.wait([reader, self._process.sentinel], timeout)
        if reader in ready:
            try:
                kind, payload = reader.recv()
            except EOFError:
                kind, payload = "error", "observer process exited during start-up"
        elif ready:
            kind, payload = "error", f"observer process exited (code {self._process.exitcode})"
        else:
            kind, payload = "error", f"observer did not open its packet source in {timeout} s"
        if kind != "ready":
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
            raise ObserverError(payload)
        self._pump = threading.Thread(target=self._pump_flows, name="flow-pump", daemon=True)
        self._monitor = threading.Thread(target=self._watch, name="observer-monitor",
                                         daemon=True)
        self._pump.start()
        self._monitor.start()

    def request_stop(self):
        """Ask the Observer to flush its flows and end the stream."""
        if self._process is not None and self._process.is_alive():
            self.irqueue.put(True)

    def join(self, timeout=None):
        """Wait (at most ``timeout`` seconds) for the stream to end and the child to exit;
        True if both happened."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._monitor, self._pump):
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t is not None and t.is_alive() for t in (self._monitor, self._pump))

    def kill(self):
        """Stop the child at once (an ending that cannot wait any longer); not a failure."""
        self._stopped_on_purpose = True
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    def _pump_flows(self):
        get = self.flowqueue.get
        deliver = self._deliver
        try:
            while True:
                item = get()
                if type(item) is list:
                    deliver(item)
                elif isinstance(item, str) and item == SHUTDOWN_SENTINEL:
                    break
                elif type(item) is tuple and len(item) == 2 and item[0] == STATS_TAG:
                    self.live_stats = item[1]
                else:
                    deliver([item])
        except Exception as exc:        # a child killed mid-message leaves a broken stream
            log.error("the Observer's flow stream broke: %s", _describe(exc))
        finally:
            self._stream_ended.set()
            deliver(SHUTDOWN_SENTINEL)

    def _watch(self):
        self._process.join()
        self._read_status()
        code = self._process.exitcode
        if not self._stopped_on_purpose and (code != 0 or self.error is not None):
            self.error = self.error or f"observer process {_exit_description(code)}"
            log.error("the Observer failed: %s", self.error)
            self._on_failure(ObserverError(self.error))
        # Ends the stream if the child could not (it died, or forgot its sentinel); after a
        # normal end the pump has already stopped and this extra marker is never read.
        self.flowqueue.put(SHUTDOWN_SENTINEL)

    def _read_status(self):
        try:
            while self._status.poll():
                kind, payload = self._status.recv()
                if kind == "stats":
                    self.stats = payload
                elif kind == "error":
                    self.error = payload
        except (EOFError, OSError):
            pass


def _describe(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _exit_description(code):
    """``died (exit code 3)`` or ``was killed by SIGKILL``."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"died (exit code {code})"
