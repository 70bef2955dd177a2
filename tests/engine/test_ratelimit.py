"""The ``--rate`` token bucket with a fake clock: exact over long runs, bounded bursts, late
wake-ups caught up, and a stop that ends a wait at once."""
import argparse
import random
import threading
import time

import pytest

from pathspider.engine.lifecycle import DRAINING, RunPhase
from pathspider.engine.ratelimit import (TokenBucket, bucket_for_run, paced, rate_value)


class FakeClock:
    """A clock that moves only when someone waits; ``late`` adds to every wait (a wake-up
    that comes late, as on a loaded machine)."""

    def __init__(self, late=lambda: 0.0):
        self.now = 1000.0
        self.late = late
        self.waits = []

    def __call__(self):
        return self.now

    def wait(self, seconds):
        assert seconds > 0
        self.waits.append(seconds)
        self.now += seconds + self.late()
        return False


def starts(bucket, clock, count):
    times = []
    for _ in range(count):
        assert bucket.acquire()
        times.append(clock.now)
    return times


def test_200_jobs_at_100_per_second_take_two_seconds():
    clock = FakeClock()
    bucket = TokenBucket(100, clock.wait, clock=clock)
    times = starts(bucket, clock, 200)
    assert bucket.burst == 5
    assert times[:5] == [1000.0] * 5                   # the burst goes at once
    assert times[-1] - times[0] == pytest.approx(1.95)
    gaps = [b - a for a, b in zip(times[4:], times[5:])]
    assert all(g == pytest.approx(0.01) for g in gaps)


@pytest.mark.parametrize("rate", [0.5, 1, 7, 100, 2500, 100000])
def test_no_window_ever_holds_more_than_burst_plus_rate_times_its_length(rate):
    rnd = random.Random(rate)
    clock = FakeClock(late=lambda: rnd.random() * 0.02)        # up to 20 ms late
    bucket = TokenBucket(rate, clock.wait, clock=clock)
    times = starts(bucket, clock, 3000)
    for i in range(0, len(times), 37):
        for j in range(i, min(len(times), i + 400), 13):
            assert j - i + 1 <= bucket.burst + rate * (times[j] - times[i]) + 1e-6


@pytest.mark.parametrize("rate", [50, 1000, 20000])
def test_late_wakeups_lose_nothing_over_a_long_run(rate):
    """Wake-ups up to 20 ms late: the long-run rate stays exact (to one burst)."""
    rnd = random.Random(3)
    clock = FakeClock(late=lambda: rnd.random() * 0.02)
    bucket = TokenBucket(rate, clock.wait, clock=clock)
    count = int(rate * 20)
    times = starts(bucket, clock, count)
    ideal = (count - bucket.burst) / rate
    assert ideal <= times[-1] - times[0] <= ideal + 0.02 + bucket.burst / rate


def test_after_an_idle_spell_at_most_a_burst_goes_at_once():
    clock = FakeClock()
    bucket = TokenBucket(100, clock.wait, clock=clock)
    starts(bucket, clock, 50)
    clock.now += 60.0                                   # a minute without jobs
    times = starts(bucket, clock, 20)
    assert times.count(times[0]) == bucket.burst


def test_a_slow_rate_has_a_burst_of_one():
    clock = FakeClock()
    bucket = TokenBucket(0.5, clock.wait, clock=clock)
    times = starts(bucket, clock, 3)
    assert bucket.burst == 1 and times == [1000.0, 1002.0, 1004.0]


def test_a_stop_ends_the_wait_and_no_job_passes():
    stops = []

    def wait(seconds):
        stops.append(seconds)
        return True                                     # the run is stopping
    bucket = TokenBucket(1, wait, clock=lambda: 5.0)
    assert bucket.acquire()
    assert not bucket.acquire() and stops == [1.0]
    assert list(paced(iter(range(10)), TokenBucket(1, wait, clock=lambda: 5.0))) == [0]


def test_paced_without_a_bucket_passes_everything():
    assert list(paced(iter(range(5)), None)) == [0, 1, 2, 3, 4]


def test_the_run_bucket_wakes_at_once_when_the_run_stops():
    """A real RunPhase and real time: a wait of 1 h ends when the phase advances."""
    phase = RunPhase()
    bucket = bucket_for_run(1 / 3600, phase)
    assert bucket.acquire()
    done = []
    thread = threading.Thread(target=lambda: done.append(bucket.acquire()))
    thread.start()
    time.sleep(0.2)                                     # let it block in the wait
    phase.advance(DRAINING, "test")
    thread.join(10)
    phase.close()
    assert not thread.is_alive() and done == [False]


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "abc", "", "1e7"])
def test_bad_rates_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        rate_value(text)


def test_good_rates():
    assert rate_value("100") == 100.0 and rate_value("0.25") == 0.25
    assert bucket_for_run(None, None) is None
