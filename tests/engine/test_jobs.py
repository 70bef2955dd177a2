"""One line per job (``--format jobs``): the job collector on its own, and through the engine."""
import collections
import io
import json
import threading

from pathspider.base import NO_FLOW, NO_RESULT, DesynchronizedSpider, SynchronizedSpider
from pathspider.engine.jobs import (CapturingRecordQueue, JobCollector, interpret, time_span,
                                    with_missed_flows)
from pathspider.engine.machinery import RecordQueue
from pathspider.engine.output import write_records
from pathspider.engine.targets import Job
from pathspider.observer.dummy import Observer as DummyObserver

Result = collections.namedtuple("Result", ["ip", "port", "config"])


# ---- the collector on its own ---------------------------------------------------------------

class FakeEngine:
    def __init__(self):
        self.outqueue = RecordQueue(1000)
        self.errors = []

    def _job_failed(self, job, stage):
        self.errors.append((list(job), stage))


class Interpreting:
    """A plugin with a 1.0-style ``conditions`` and no ``combine_flows``."""

    @staticmethod
    def conditions(baseline, experiment):
        return ["x." + ("both" if baseline and experiment else "one"), "pathspider.not_observed"]


def collector_for(spider=None):
    engine = FakeEngine()
    collector = JobCollector(spider or Interpreting())
    collector.attach(engine)
    return collector, engine.outqueue, engine


def queued(outqueue):
    items = []
    while outqueue.qsize():
        items.append(outqueue.get_nowait())
    return items


def putting_merge(outqueue):
    """A 1.0.1-style merge: the record goes on outqueue."""
    def merge(flow, res):
        record = {"dip": res.ip, "sp": res.port, "config": res.config,
                  "observed": flow is not NO_FLOW}
        outqueue.put(record)
    return merge


def test_attach_keeps_the_queue_object():
    collector, outqueue, engine = collector_for()
    assert type(outqueue) is CapturingRecordQueue and engine.outqueue is outqueue


def test_records_arriving_out_of_order_make_one_line_per_job_when_complete():
    collector, outqueue, _ = collector_for()
    merge = collector.merging(putting_merge(outqueue))
    a = [Result("198.18.64.1", 1000, 0), Result("198.18.64.1", 1001, 1)]
    b = [Result("198.18.64.2", 2000, 0), Result("198.18.64.2", 2001, 1)]
    collector.issue(Job(["198.18.64.1", 80, "a", "1"], {"dip": "198.18.64.1", "x": [1]}),
                    list(enumerate(a)), 2)
    collector.issue(["198.18.64.2", 80, "b", "2"], list(enumerate(b)), 2)
    merge({"flow": 1}, b[1])
    merge(NO_FLOW, a[1])
    assert queued(outqueue) == []                       # nothing complete yet
    merge({"flow": 2}, b[0])
    [line_b] = queued(outqueue)
    merge({"flow": 3}, a[0])
    [line_a] = queued(outqueue)
    assert line_b["dip"] == "198.18.64.2" and line_b["domain"] == "b" and line_b["rank"] == "2"
    assert [r["config"] for r in line_b["flow_results"]] == [0, 1]     # connection order
    assert line_b["missed_flows"] == 0 and line_b["conditions"] == [
        "x.both", "pathspider.not_observed"]          # the plugin's own, not duplicated
    assert line_a["x"] == [1] and line_a["missed_flows"] == 1
    assert line_a["conditions"] == ["x.both", "pathspider.not_observed",
                                    "pathspider.missed_flows:1"]
    assert (collector.lines, collector.records) == (2, 4)


def test_missing_connection_is_none_for_the_plugin():
    seen = []

    class Combining:
        @staticmethod
        def combine_flows(flows):
            seen.append(flows)
            return ["y.ok"]

    collector, outqueue, _ = collector_for(Combining())
    merge = collector.merging(putting_merge(outqueue))
    res = Result("198.18.64.1", 1000, 0)
    collector.issue(["198.18.64.1", 80, "", ""], [(0, res)], 2)     # config 1: NO_RESULT
    merge({}, res)
    [line] = queued(outqueue)
    assert seen == [[{"dip": "198.18.64.1", "sp": 1000, "config": 0, "observed": True}, None]]
    assert line["conditions"] == ["y.ok"] and "time" not in line


def test_returned_namedtuple_and_several_and_no_records():
    collector, outqueue, _ = collector_for(object())

    def merge(flow, res):
        if res.config == 0:
            outqueue.put(res)                  # a namedtuple, written as an object
            outqueue.put({"extra": True})      # a second record for the same connection
    merge_job = collector.merging(merge)
    results = [Result("198.18.64.1", 1000, 0), Result("198.18.64.1", 1001, 1)]
    collector.issue(["198.18.64.1", 80, "", ""], list(enumerate(results)), 2)
    for res in results:
        merge_job(NO_FLOW, res)
    [line] = queued(outqueue)
    assert line["flow_results"] == [{"ip": "198.18.64.1", "port": 1000, "config": 0},
                                    {"extra": True}]
    assert line["missed_flows"] == 2 and "conditions" not in line     # no interpretation


def test_other_threads_put_as_usual_during_a_merge():
    collector, outqueue, _ = collector_for(object())
    res = Result("198.18.64.1", 1000, 0)

    def merge(flow, res):
        other = threading.Thread(target=outqueue.put, args=({"from": "elsewhere"},))
        other.start()
        other.join()
        outqueue.put({"from": "merge"})
    collector.issue(["198.18.64.1", 80, "", ""], [(0, res)], 1)
    collector.merging(merge)({}, res)
    assert queued(outqueue) == [{"from": "elsewhere"}, {
        "dip": "198.18.64.1", "dp": 80, "domain": "", "rank": "",
        "flow_results": [{"from": "merge"}], "missed_flows": 0}]


def test_flush_writes_incomplete_jobs_once_and_skips_jobs_without_records():
    collector, outqueue, _ = collector_for()
    merge = collector.merging(putting_merge(outqueue))
    started = [Result("198.18.64.1", 1000, 0), Result("198.18.64.1", 1001, 1)]
    untouched = [Result("198.18.64.2", 2000, 0), Result("198.18.64.2", 2001, 1)]
    collector.issue(["198.18.64.1", 80, "", ""], list(enumerate(started)), 2)
    collector.issue(["198.18.64.2", 80, "", ""], list(enumerate(untouched)), 2)
    merge({}, started[0])
    collector.flush()
    [line] = queued(outqueue)
    assert line["incomplete"] is True and len(line["flow_results"]) == 1
    assert line["conditions"] == ["x.one", "pathspider.not_observed"]
    merge({}, started[1])                    # a merger that was still running: not captured
    assert queued(outqueue) == [{"dip": "198.18.64.1", "sp": 1001, "config": 1,
                                 "observed": True}]
    collector.flush()
    assert queued(outqueue) == [] and collector.incomplete == 1


def test_same_result_object_twice():
    collector, outqueue, _ = collector_for(object())
    merge = collector.merging(putting_merge(outqueue))
    res = Result("198.18.64.1", 1000, 0)
    collector.issue(["198.18.64.1", 80, "a", ""], [(0, res)], 1)
    collector.issue(["198.18.64.1", 80, "b", ""], [(0, res)], 1)
    merge({}, res)
    merge({}, res)
    assert [line["domain"] for line in queued(outqueue)] == ["a", "b"]


def test_failing_interpretation_is_a_plugin_error_and_the_line_is_written():
    class Broken:
        @staticmethod
        def combine_flows(flows):
            raise KeyError("tcp_connected")

    collector, outqueue, engine = collector_for(Broken())
    res = Result("198.18.64.1", 1000, 0)
    collector.issue(["198.18.64.1", 80, "", ""], [(0, res)], 1)
    collector.merging(putting_merge(outqueue))({}, res)
    [line] = queued(outqueue)
    assert "conditions" not in line and engine.errors == [
        (["198.18.64.1", 80, "", ""], "combine_flows")]


def test_input_fields_named_like_the_output_are_replaced():
    collector, outqueue, _ = collector_for(object())
    res = Result("198.18.64.1", 1000, 0)
    job = Job(["198.18.64.1", 80, "", ""], {"dip": "198.18.64.1", "conditions": ["old"],
                                            "time": 1, "keep": 2})
    collector.issue(job, [(0, res)], 1)
    collector.merging(putting_merge(outqueue))({}, res)
    [line] = queued(outqueue)
    assert "conditions" not in line and "time" not in line and line["keep"] == 2
    assert job.fields["conditions"] == ["old"]           # the job's own fields untouched


def test_helpers():
    assert time_span([{"tstart": "2024-01-01 00:00:02", "tstop": "2024-01-01 00:00:03"},
                      {"tstart": "2024-01-01 00:00:01", "tstop": "2024-01-01 00:00:02"},
                      "not a dict"]) == {"from": "2024-01-01 00:00:01",
                                         "to": "2024-01-01 00:00:03"}
    assert time_span([{"spdr_start": "a", "spdr_stop": "b"}]) == {"from": "a", "to": "b"}
    assert time_span([{}]) is None
    assert with_missed_flows(None, 2) is None
    assert with_missed_flows(("a",), 0) == ["a"]
    assert interpret(object(), [None, None]) is None
    assert interpret(Interpreting(), [None]) is None          # conditions(b, e) needs two


# ---- through the engine ---------------------------------------------------------------------

class JobsSpider(DesynchronizedSpider):
    """Two connections per job; job n: n % 3 == 1 skips its second connection (NO_RESULT),
    n % 3 == 2 returns its record from merge instead of putting it; n % 5 == 4 fails in
    post_connect for connection 1."""

    def connect(self, job, pcs, config):
        return config

    def post_connect(self, job, conn, pcs, config):
        n = int(job[3])
        if config == 1 and n % 3 == 1:
            return NO_RESULT
        if config == 1 and n % 5 == 4:
            raise RuntimeError("post_connect failed on purpose")
        return Result(job[0], 1000 + 2 * n + config, config)

    def create_observer(self):
        return DummyObserver()

    def merge(self, flow, res):
        record = {"dip": res.ip, "sp": res.port, "config": res.config,
                  "observed": flow is not NO_FLOW}
        if (res.port // 2) % 3 == 2:
            return record
        self.outqueue.put(record)
        return None

    @staticmethod
    def conditions(baseline, experiment):
        return ["t.works" if baseline and experiment else "t.partial"]


def run_jobs(spider, jobs):
    collector = JobCollector(spider)
    spider.engine.write_job_lines(collector)
    spider.start()

    def feed():
        for job in jobs:
            spider.add_job(job)
        spider.shutdown()

    feeder = threading.Thread(target=feed)
    feeder.start()
    sink = io.StringIO()
    write_records(spider.outqueue, sink)
    feeder.join(30)
    return [json.loads(line) for line in sink.getvalue().splitlines()], collector


def test_every_job_one_line_nothing_lost_nothing_doubled():
    spider = JobsSpider(8, "int:none", None)
    jobs = [Job([f"198.18.64.{n % 250 + 1}", 80, "", str(n)],
                {"dip": f"198.18.64.{n % 250 + 1}", "dp": 80, "rank": n, "n": {"v": n}})
            for n in range(600)]
    lines, collector = run_jobs(spider, jobs)
    assert sorted(line["rank"] for line in lines) == list(range(600))
    for line in lines:
        n = line["rank"]
        assert line["n"] == {"v": n}
        want = [0] if n % 3 == 1 or n % 5 == 4 else [0, 1]
        assert [r["config"] for r in line["flow_results"]] == want, line
        assert [r["sp"] for r in line["flow_results"]] == [1000 + 2 * n + c for c in want]
        assert line["missed_flows"] == len(want)
        assert line["conditions"][0] == ("t.works" if len(want) == 2 else "t.partial")
        assert line["conditions"][-1] == f"pathspider.missed_flows:{len(want)}"
    assert spider.engine.job_errors == len([n for n in range(600) if n % 5 == 4
                                            and n % 3 != 1])
    assert collector.lines == 600 and collector.incomplete == 0


class StuckMergerSpider(SynchronizedSpider):
    """The merge of job 0's experiment blocks until ``release`` is set: an aborted run must
    still write job 0 (incomplete) and every other job."""

    release = None

    def config_zero(self):
        pass

    def config_one(self):
        pass

    def connect(self, job, pcs, config):
        return config

    def post_connect(self, job, conn, pcs, config):
        return Result(job[0], 1000 + 2 * int(job[3]) + config, config)

    def create_observer(self):
        return DummyObserver()

    def merge(self, flow, res):
        if res.port == 1001:
            type(self).release.wait(30)
            return None
        self.outqueue.put({"sp": res.port, "config": res.config})
        return None


def test_aborted_run_with_a_stuck_merger_writes_incomplete_jobs():
    StuckMergerSpider.release = threading.Event()
    spider = StuckMergerSpider(2, "int:none", None)
    collector = JobCollector(spider)
    spider.engine.write_job_lines(collector)
    spider.start()
    spider.add_job(["198.18.64.1", 80, "", "0"])
    timer = threading.Timer(0.5, spider.terminate, args=("test abort",))
    timer.start()
    sink = io.StringIO()
    try:
        write_records(spider.outqueue, sink)
    finally:
        StuckMergerSpider.release.set()
        timer.join()
    [line] = [json.loads(text) for text in sink.getvalue().splitlines()]
    assert line["incomplete"] is True and line["flow_results"] == [{"sp": 1000, "config": 0}]
    assert collector.incomplete == 1


def test_flows_format_keeps_the_plain_queue():
    spider = JobsSpider(2, "int:none", None)
    assert type(spider.outqueue) is RecordQueue and spider.engine.job_collector is None
