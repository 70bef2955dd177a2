"""``--rate JOBS_PER_S``: a token bucket that paces how fast jobs enter the run.

The bucket is kept as a theoretical arrival time (GCRA, the virtual-scheduling form of a token
bucket): job ``k`` may start no earlier than ``t0 + (k - burst + 1) / rate`` while the run is
busy, so the count of jobs started by time ``t`` never exceeds ``burst + rate * t``, and a
waiter that wakes late loses nothing (the next jobs go at once until the schedule is caught
up, never more than ``burst`` at a time). After an idle spell at most ``burst`` jobs go at
once. The burst is :data:`BURST_SECONDS` worth of jobs, at least one, so that the timer's
wake-up latency does not slow high rates down.

Waiting is a timed wait on the run's condition (``wait(seconds)`` returns True once the run
stops taking input), so Ctrl-C is never delayed by a slow rate.
"""

import argparse
import math
import time

from pathspider.engine.lifecycle import DRAINING

#: The burst: how many seconds' worth of jobs may start back to back.
BURST_SECONDS = 0.05
#: The highest rate accepted (jobs per second); far above what a run can start.
MAX_RATE = 1e6


class TokenBucket:
    """Paces events to ``rate`` per second with bursts of at most ``burst``.

    ``clock`` gives seconds (monotonic); ``wait(seconds)`` blocks up to that long and returns
    True if the caller should stop waiting for good (the run is stopping). Both can be fakes
    in tests.
    """

    def __init__(self, rate, wait, burst=None, clock=time.monotonic):
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0 < rate <= MAX_RATE):
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} per second")
        self.rate = float(rate)
        self.burst = burst if burst is not None else max(1, math.ceil(rate * BURST_SECONDS))
        self._interval = 1.0 / self.rate
        self._tolerance = (self.burst - 1) * self._interval
        self._clock = clock
        self._wait = wait
        self._tat = None                    # theoretical arrival time of the next event
        self.waits = 0                      # timed waits made (for tests and statistics)

    def acquire(self):
        """Block until the next event may happen; True when it may, False if ``wait`` said
        to stop."""
        while True:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            delay = tat - self._tolerance - now
            if delay <= 0:
                self._tat = tat + self._interval
                return True
            self.waits += 1
            if self._wait(delay):
                return False


def paced(jobs, bucket):
    """Yield the jobs of ``jobs`` no faster than ``bucket`` allows (all of them if it is
    None); stop early once the bucket's wait says the run is stopping."""
    if bucket is None:
        yield from jobs
        return
    for job in jobs:
        if not bucket.acquire():
            return
        yield job


def bucket_for_run(rate, phase):
    """The run's bucket for ``--rate`` (None without one): its waits end as soon as the run's
    ``phase`` (a :class:`pathspider.engine.lifecycle.RunPhase`) stops taking input."""
    if rate is None:
        return None

    def wait(seconds):
        return phase.wait_until(lambda: phase.phase >= DRAINING, seconds)
    return TokenBucket(rate, wait)


def rate_value(text):
    """argparse type for ``--rate``: a finite number of jobs per second, above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of jobs per second, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_RATE:
        raise argparse.ArgumentTypeError(
            f"must be above 0 and at most {MAX_RATE:g} jobs per second, got {text}")
    return value
