"""How a run ends: its phase as shared state, and the job queue that the phase closes.

A run is ``RUNNING``, then ``DRAINING`` (no more jobs come in; the jobs already taken by a
worker are finished), or ``ABORTING`` (jobs not yet taken are dropped, jobs in flight are
abandoned), then ``ENDED`` (the output is closed). The phase only moves forward. Every thread
reads it instead of being sent stop markers, so a second request to stop can never undo or
block the first (1.0 drained the job queue on terminate, stop markers included, and hung).

:class:`RunPhase` also offers a wake-up descriptor that becomes readable when the run stops
taking input, so a thread blocked reading a pipe or terminal can ``poll`` on both and stop at
once, and one condition variable that the engine's threads notify when something the ending
waits for happened (a worker exited, the last job in flight completed).
"""

import collections
import os
import threading

RUNNING, DRAINING, ABORTING, ENDED = range(4)
PHASE_NAMES = ("running", "draining", "aborting", "ended")


class RunPhase:
    """The phase of one run (see the module docstring) and the condition to wait on it."""

    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.phase = RUNNING
        self.reason = None                  # why the run left RUNNING (for the summary)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    @property
    def wake_fd(self):
        """A descriptor that is readable once the phase has left ``RUNNING``."""
        return self._wake_r

    def advance(self, phase, reason=None):
        """Move to ``phase`` if it is later than the current one; True if it moved."""
        with self.cond:
            if phase <= self.phase:
                return False
            self.phase = phase
            if self.reason is None:
                self.reason = reason
            self.cond.notify_all()
        if phase >= DRAINING:
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):
                pass                        # already readable, or closed at the very end
        return True

    def notify(self):
        """Wake the threads waiting in :meth:`wait_until` to test their predicate again."""
        with self.cond:
            self.cond.notify_all()

    def wait_until(self, predicate, timeout=None):
        """Block until ``predicate()`` holds (tested under the condition's lock) or
        ``timeout`` seconds passed; returns the predicate's last value."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def close(self):
        """Release the wake-up pipe (the phase stays readable as an attribute)."""
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class JobQueue:
    """The bounded FIFO between the feeder and the workers, which the run's ending closes.

    :meth:`put` blocks while the queue is full (back-pressure on the input) and returns False
    once the queue is closed; :meth:`take` blocks until jobs are queued and returns ``[]`` once
    the queue is closed and empty. :meth:`close` with ``discard`` drops the queued jobs (an
    interrupted run does not start them) and returns how many.
    """

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self._items = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.closed = False

    def put(self, job, block=True, timeout=None):
        """Queue ``job``; False if the queue is closed (the job is not queued)."""
        with self._not_full:
            if block:
                self._not_full.wait_for(
                    lambda: self.closed or len(self._items) < self.maxsize, timeout)
            if self.closed or len(self._items) >= self.maxsize:
                return False
            self._items.append(job)
            self._not_empty.notify()
            return True

    def take(self, most=1):
        """Up to ``most`` jobs, waiting for the first; ``[]`` once closed and empty."""
        with self._not_empty:
            self._not_empty.wait_for(lambda: self._items or self.closed)
            items = self._items
            jobs = [items.popleft() for _ in range(min(most, len(items)))]
            if jobs:
                self._not_full.notify(len(jobs))
            return jobs

    def close(self, discard=False):
        """No more jobs are accepted; with ``discard`` the queued ones are dropped too.
        Returns the number of jobs dropped."""
        with self._lock:
            self.closed = True
            dropped = len(self._items) if discard else 0
            if discard:
                self._items.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()
        return dropped

    def qsize(self):
        """Jobs queued now (1.0's ``Queue.qsize``)."""
        return len(self._items)

    def empty(self):
        """True if no job is queued (1.0's ``Queue.empty``)."""
        return not self._items
