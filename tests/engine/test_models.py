"""PATHspider 2.0's model lists on the engine: ``configurations = [...]`` (N synchronized
configurations) and ``connections = [...]`` (N desynchronized connections), beside 1.0's two."""

import collections
import threading
import time

import pytest

from pathspider.base import Conn, DesynchronizedSpider
from pathspider.engine.sync import ConfigGate

from test_sync_engine import EXPECTED_STATE, RecordingSpider, make_jobs, run_jobs  # noqa: F401
from test_sync_engine import targets  # noqa: F401  (fixture)


class ThreeConfigurations(RecordingSpider):
    """2.0 style: three configuration functions of the class body, in order."""

    def config_plain(self):
        self._configure(0)

    def config_middle(self):
        self._configure(1)

    def config_last(self):
        self._configure(2)

    configurations = [config_plain, config_middle, "config_last"]


def test_three_configurations_give_three_records_each_in_its_configuration(targets):
    spider = ThreeConfigurations(50, "int:lo", None)
    jobs = make_jobs(targets, 600)
    records = run_jobs(spider, jobs)

    assert spider.violations == []
    assert len(records) == 1800
    per_job = collections.Counter((r.kind, r.config) for r in records)
    kinds = collections.Counter(job[2] for job in jobs)
    for kind, count in kinds.items():
        assert [per_job[(kind, c)] for c in range(3)] == [count] * 3
    assert all(r.state == EXPECTED_STATE[r.kind] for r in records)


class OneConfiguration(RecordingSpider):
    configurations = ["config_zero"]


def test_a_single_configuration_is_applied_once(targets):
    spider = OneConfiguration(20, "int:lo", None)
    records = run_jobs(spider, make_jobs(targets, 100))
    assert len(records) == 100 and {r.config for r in records} == {0}
    assert spider.config_calls == 1 and spider.violations == []


class BadConfigurations(RecordingSpider):
    configurations = ["no_such_method"]


def test_a_configuration_that_is_not_a_method_is_refused_by_name():
    spider = BadConfigurations(1, "int:lo", None)
    with pytest.raises(TypeError, match="configurations holds None"):
        spider.start()


class ListedConnections(DesynchronizedSpider):
    """2.0 style: three connection functions, with both signatures."""

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = 0.3
        self.calls = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, name):
        with self._lock:
            self.calls[name] += 1

    def first(self, job, config):           # 2.0's signature
        self._count(("first", config))
        return self.tcp_connect(job)

    def second(self, job, pcs, config):     # 1.0's signature
        self._count(("second", config))
        return self.tcp_connect(job)

    connections = [first, second, first]
    post_connect = RecordingSpider.post_connect
    create_observer = RecordingSpider.create_observer
    merge = RecordingSpider.merge


def test_listed_connections_are_made_in_order_with_either_signature(targets):
    spider = ListedConnections(10, "int:lo", None)
    records = run_jobs(spider, make_jobs(targets, 100))
    assert len(records) == 300
    assert collections.Counter(r.config for r in records) == {0: 100, 1: 100, 2: 100}
    assert spider.calls == {("first", 0): 100, ("second", 1): 100, ("first", 2): 100}


def test_the_gate_serves_waiting_configurations_round_robin():
    """Workers wait for configurations 0 and 2 while 1 is in force: the configurator admits
    2 next (the one after the active one), then 0, so none starves."""
    gate = ConfigGate(3)
    applied = []
    configurator = threading.Thread(target=gate.run, args=(applied.append,), daemon=True)
    configurator.start()
    admitted = {c: threading.Event() for c in (0, 2)}

    def wait_for(config):
        if gate.enter(config):
            admitted[config].set()

    try:
        assert gate.enter(1)
        waiters = [threading.Thread(target=wait_for, args=(c,), daemon=True) for c in (0, 2)]
        for waiter in waiters:
            waiter.start()
        assert _soon(lambda: all(gate._cohorts[c] for c in (0, 2)))   # both queued
        gate.leave(1)
        assert admitted[2].wait(5) and not admitted[0].is_set()
        gate.leave(2)
        assert admitted[0].wait(5)
        gate.leave(0)
        assert applied == [1, 2, 0]
    finally:
        gate.stop()
        configurator.join(5)


def _soon(predicate, seconds=5.0):
    """True once ``predicate()`` holds (checked every millisecond), False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_gate_needs_a_configuration():
    with pytest.raises(ValueError):
        ConfigGate(0)


def test_a_single_spider_makes_one_connection_per_job(targets):
    from pathspider.base import SingleSpider

    class Plugin(SingleSpider):
        def __init__(self, worker_count, libtrace_uri, args):
            super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
            self.conn_timeout = 0.3

        def connect(self, job, pcs, config):
            return self.tcp_connect(job)

        post_connect = RecordingSpider.post_connect
        create_observer = RecordingSpider.create_observer
        merge = RecordingSpider.merge

    records = run_jobs(Plugin(10, "int:lo", None), make_jobs(targets, 100))
    assert len(records) == 100 and {r.config for r in records} == {0}
    assert all(r.state == EXPECTED_STATE[r.kind] for r in records)
