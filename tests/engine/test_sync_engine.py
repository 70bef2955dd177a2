"""The synchronized engine against real loopback TCP targets: every connect runs in its own
configuration, every job yields its records with the right local port and state."""
import collections
import threading

import pytest

from pathspider.base import NO_FLOW, Conn, DesynchronizedSpider, SynchronizedSpider
from pathspider.observer.dummy import Observer as DummyObserver
from pathspider.engine.output import write_records

from loopback import LoopbackTargets

Result = collections.namedtuple("Result", ["ip", "port", "rport", "config", "state", "kind"])


class RecordingSpider(SynchronizedSpider):
    """Records when each configuration became active and what was in force at each connect."""

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = 0.3
        self.active = None
        self.inflight = 0
        self.violations = []
        self.config_calls = 0
        self._lock = threading.Lock()

    def _configure(self, config):
        with self._lock:
            if self.inflight:
                self.violations.append(f"config {config} applied with {self.inflight} "
                                       "connects in flight")
            self.active = config
            self.config_calls += 1

    def config_zero(self):
        self._configure(0)

    def config_one(self):
        self._configure(1)

    def connect(self, job, pcs, config):
        with self._lock:
            self.inflight += 1
            if self.active != config:
                self.violations.append(f"connect for config {config} ran in {self.active}")
        try:
            return self.tcp_connect(job)
        finally:
            with self._lock:
                self.inflight -= 1
                if self.active != config:
                    self.violations.append(f"config changed during a config {config} connect")

    def post_connect(self, job, conn, pcs, config):
        if conn.state == Conn.OK:
            conn.client.close()
        return Result(job[0], conn.port, job[1], config, conn.state, job[2])

    def create_observer(self):
        return DummyObserver()

    def merge(self, flow, res):
        assert flow is NO_FLOW
        self.outqueue.put(res)


def run_jobs(spider, jobs):
    spider.start()
    records = []

    def feed():
        for job in jobs:
            spider.add_job(job)
        spider.shutdown()

    feeder = threading.Thread(target=feed)
    feeder.start()

    class Sink:
        def write(self, text):
            pass

        def flush(self):
            pass

    write_records(spider.outqueue, Sink(), on_record=records.append)
    feeder.join()
    return records


@pytest.fixture
def targets():
    t = LoopbackTargets()
    yield t
    t.close()


def make_jobs(targets, count, silent_every=20, refused_every=7):
    jobs = []
    for i in range(count):
        if i % silent_every == 0:
            jobs.append(["127.0.0.1", targets.silent, "silent", i])
        elif i % refused_every == 0:
            jobs.append(["127.0.0.1", targets.refusing, "refusing", i])
        else:
            jobs.append(["127.0.0.1", targets.accepting, "accepting", i])
    return jobs


EXPECTED_STATE = {"accepting": Conn.OK, "refusing": Conn.FAILED, "silent": Conn.TIMEOUT}


def test_2000_jobs_give_4000_records_in_the_right_configuration(targets):
    spider = RecordingSpider(100, "int:lo", None)
    jobs = make_jobs(targets, 2000)
    records = run_jobs(spider, jobs)

    assert spider.violations == []
    assert len(records) == 4000
    per_job = collections.Counter((r.kind, r.config) for r in records)
    kinds = collections.Counter(job[2] for job in jobs)
    for kind, count in kinds.items():
        assert per_job[(kind, 0)] == count and per_job[(kind, 1)] == count
    for record in records:
        assert record.state == EXPECTED_STATE[record.kind], record
        assert record.port > 0, record
    ok_ports = {r.port for r in records if r.kind == "accepting"}
    assert ok_ports <= targets.client_ports            # the real local ports
    assert spider.config_calls >= 2


def test_many_fast_jobs_never_connect_in_the_wrong_configuration(targets):
    """Thousands of quick jobs with 100 workers: many configuration flips, no violation."""
    spider = RecordingSpider(100, "int:lo", None)
    jobs = [["127.0.0.1", targets.refusing if i % 2 else targets.accepting, "x", i]
            for i in range(5000)]
    records = run_jobs(spider, jobs)
    assert spider.violations == []
    assert len(records) == 10000
    assert spider.engine.model.gate.flips >= 2


def test_idle_workers_do_not_flip_configurations(targets):
    spider = RecordingSpider(100, "int:lo", None)
    spider.start()
    threading.Event().wait(0.3)
    assert spider.config_calls == 0       # nothing to connect: nothing configured
    spider.add_job(["127.0.0.1", targets.accepting, "accepting", 1])
    threading.Thread(target=spider.shutdown).start()    # shutdown waits for the consumer
    records = []
    while True:
        item = spider.outqueue.get()
        spider.outqueue.task_done()
        if isinstance(item, str):
            break
        records.append(item)
    assert len(records) == 2 and spider.config_calls == 2


def test_post_connect_no_result_skips_a_record(targets):
    class Skipping(RecordingSpider):
        def post_connect(self, job, conn, pcs, config):
            result = super().post_connect(job, conn, pcs, config)
            return None if config == 1 else result

    records = run_jobs(Skipping(10, "int:lo", None), make_jobs(targets, 50, 1000, 1000))
    assert len(records) == 50 and {r.config for r in records} == {0}


def test_plugin_errors_are_counted_and_the_run_goes_on(targets):
    class Flaky(RecordingSpider):
        def connect(self, job, pcs, config):
            if job[3] == 3:
                raise ValueError("broken job")
            return super().connect(job, pcs, config)

    spider = Flaky(10, "int:lo", None)
    records = run_jobs(spider, make_jobs(targets, 20, 1000, 1000))
    assert len(records) == 38 and spider.engine.job_errors == 1


class Desync(DesynchronizedSpider):
    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = 0.3

    def connect(self, job, pcs, config):
        return self.tcp_connect(job)

    post_connect = RecordingSpider.post_connect
    create_observer = RecordingSpider.create_observer
    merge = RecordingSpider.merge


def test_desynchronized_spider_makes_both_connections(targets):
    records = run_jobs(Desync(20, "int:lo", None), make_jobs(targets, 200))
    assert len(records) == 400
    for record in records:
        assert record.state == EXPECTED_STATE[record.kind]


class ReturningMerge(RecordingSpider):
    """merge() returns the record, as the 1.0 guide says; some put it and return it too."""

    def merge(self, flow, res):
        record = {"ip": res.ip, "config": res.config, "kind": res.kind}
        if res.config == 1:
            self.outqueue.put(record)           # 1.0.1's way, and returned as well
        return record


def test_a_merge_that_returns_its_record_is_written_once(targets):
    records = run_jobs(ReturningMerge(10, "int:lo", None), make_jobs(targets, 30, 1000, 1000))
    assert len(records) == 60
    assert sorted(r["config"] for r in records) == [0] * 30 + [1] * 30


ENGINE_NAMES_BEFORE = ("_finish", "_finish_run", "_complete_jobs", "_hand_over", "_prepare",
                       "_connect_all", "_merge_safely", "_job_failed", "_count", "_thread",
                       "_deliver_flows", "_observer_failed", "_advance", "_close_output",
                       "_done", "connect_jobs", "stop_configurator", "completers",
                       "merger_state", "observer_runner", "run_phase", "gate", "job_errors")


def test_plugin_helpers_cannot_replace_engine_internals(targets):
    """A plugin with helpers named like the engine's former internals runs unharmed."""
    def helper(self, *args, **kwargs):
        raise AssertionError("a plugin helper was called by the engine")

    names = {name: helper for name in ENGINE_NAMES_BEFORE}
    names["_done"] = names["completers"] = names["gate"] = "the plugin's own"
    Clashing = type("Clashing", (RecordingSpider,), names)
    records = run_jobs(Clashing(10, "int:lo", None), make_jobs(targets, 20, 1000, 1000))
    assert len(records) == 40


def test_a_plugin_redefining_an_engine_name_is_told_at_class_definition():
    with pytest.raises(TypeError, match="defines outqueue, which the engine sets on every "
                                        "spider; rename it"):
        type("Bad", (SynchronizedSpider,), {"outqueue": None})


def test_a_plugin_replacing_spider_engine_is_told_at_start():
    from pathspider.engine.spider import EngineError

    class Replaces(RecordingSpider):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.engine = "my search engine"

    with pytest.raises(EngineError, match="replaced spider.engine"):
        Replaces(2, "int:lo", None).start()


class Completed:
    """A connection that tells when it is done (as the reactor's jobs do); done at once."""

    def __init__(self, job, config):
        self.job, self.config = job, config

    def add_done_callback(self, fn):
        fn(self)


class SelfCompleting(RecordingSpider):
    """``connect`` only starts something that completes by itself: nothing to wait for."""

    post_connect_overlaps = True

    def connect(self, job, pcs, config):
        return Completed(job, config)

    def post_connect(self, job, conn, pcs, config):
        return Result(job[0], 1000 + job[3], job[1], config, Conn.OK, job[2])


def batch_sizes(monkeypatch):
    from pathspider.engine import sync
    sizes = []
    connect_jobs = sync.SynchronizedModel.connect_jobs

    def recording(self, jobs):
        sizes.append(len(jobs))
        return connect_jobs(self, jobs)

    monkeypatch.setattr(sync.SynchronizedModel, "connect_jobs", recording)
    return sizes


def test_connections_that_complete_by_themselves_are_made_in_batches(monkeypatch):
    """However long a connect takes by the clock (with many workers mostly waiting for the
    interpreter), connects that only start a connection are batched from the first ones on."""
    from pathspider.engine.machinery import SELF_COMPLETING_BATCH_MAX, DurationAverage
    monkeypatch.setattr(DurationAverage, "FAST_SECONDS", 0.0)      # never "fast" by timing
    sizes = batch_sizes(monkeypatch)
    spider = SelfCompleting(4, "int:lo", None)
    records = run_jobs(spider, [["198.18.64.1", 80, "x", i] for i in range(2000)])
    assert len(records) == 4000 and spider.violations == []
    assert sum(sizes) == 2000 and max(sizes) <= SELF_COMPLETING_BATCH_MAX
    assert len(sizes) < 2000 // 4          # one-job batches only until the first hand-over
    assert spider.engine.connects_complete_by_themselves


def test_connections_that_block_are_still_made_one_job_at_a_time(targets, monkeypatch):
    from pathspider.engine.machinery import DurationAverage
    monkeypatch.setattr(DurationAverage, "FAST_SECONDS", 0.0)
    sizes = batch_sizes(monkeypatch)
    spider = RecordingSpider(4, "int:lo", None)
    records = run_jobs(spider, make_jobs(targets, 40, 1000, 1000))
    assert len(records) == 80 and set(sizes) == {1}
    assert not spider.engine.connects_complete_by_themselves
