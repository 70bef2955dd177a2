"""The threads that finish jobs after their connections were started (``post_connect``).

``post_connect`` is where a plugin waits for answers (1.0 already ran it outside the
configuration lock-step). Running it in the connect workers would let one silent target hold a
worker for its whole timeout, so the engine hands started jobs to a :class:`CompleterPool`:
threads are started only when every existing one is busy, up to ``max_threads``; a full pool
blocks the submitter (back-pressure), so memory stays bounded.

Jobs whose connections tell when they have completed (the reactor's) need no waiting thread:
they go, once complete, to the single :class:`ReadyCompleter`, which finishes many at a time.
"""

import logging
import queue
import threading

log = logging.getLogger("pathspider.engine.completer")

_STOP = object()

#: Most items one thread takes from the queue at once.
BATCH = 64


class CompleterPool:
    """Runs ``handler(item)`` for submitted items on up to ``max_threads`` threads."""

    def __init__(self, handler, max_threads, name="completer"):
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._handler = handler
        self._max = max_threads
        self._name = name
        self._queue = queue.Queue(max_threads)
        self._lock = threading.Lock()
        self._threads = []
        self._idle = 0

    @property
    def thread_count(self):
        return len(self._threads)

    def submit(self, item):
        """Queue ``item``; start a thread if none is idle and the pool may grow."""
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._max:
                self._start_thread()
            else:
                self._idle -= 1
        self._queue.put(item)

    def close(self, wait=True):
        """Let every thread finish the queued items, then stop them; with ``wait``, wait for
        them (an aborted run does not: a thread may be stuck in a plugin)."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()

    def _start_thread(self):
        thread = threading.Thread(target=self._run, daemon=True,
                                  name=f"{self._name}_{len(self._threads)}")
        thread.start()
        self._threads.append(thread)

    def _run(self):
        get = self._queue.get
        handler = self._handler
        while True:
            item = get()
            if item is _STOP:
                return
            try:
                handler(item)
            except Exception:           # a handler must never kill the pool
                log.exception("job completion failed")
            with self._lock:
                self._idle += 1


class ReadyCompleter:
    """One thread that runs ``handler(entries)`` for jobs whose connections have already
    completed (their ``post_connect`` does not wait), many at a time.

    :meth:`submit` never blocks and may be called from any thread (a reactor callback); the
    thread takes every item waiting when it wakes (up to ``BATCH``), so under load one wake-up
    serves many jobs and their results reach the merger as one item.
    """

    def __init__(self, handler, name="ready-completer"):
        self._handler = handler
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, entry):
        self._queue.put(entry)

    def close(self, wait=True):
        """Finish the queued entries, then stop; with ``wait``, wait for that."""
        self._queue.put(_STOP)
        if wait:
            self._thread.join()

    def _run(self):
        get, get_nowait = self._queue.get, self._queue.get_nowait
        handler = self._handler
        while True:
            batch = [get()]
            while len(batch) < BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            entries = batch[:-1] if stop else batch
            if entries:
                try:
                    handler(entries)
                except Exception:       # a handler must never kill the completer
                    log.exception("job completion failed")
            if stop:
                return
