"""A growing pool of threads that finish jobs after their connections were started.

``post_connect`` is where a plugin waits for answers (1.0 already ran it outside the
configuration lock-step). Running it in the connect workers would let one silent target hold a
worker for its whole timeout, so the engine hands finished-connecting jobs to this pool instead.
Threads are started only when every existing one is busy, up to ``max_threads``; a full pool
blocks the submitter (back-pressure), so memory stays bounded.
"""

import logging
import queue
import threading

log = logging.getLogger("pathspider.engine.completer")

_STOP = object()


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

    def close(self):
        """Let every thread finish the queued items, then stop them and wait for them."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join()

    def _start_thread(self):
        thread = threading.Thread(target=self._run, daemon=True,
                                  name=f"{self._name}_{len(self._threads)}")
        self._threads.append(thread)
        thread.start()

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
