"""``--locate`` in the engine: which jobs are held for a trace, what their records get, and
that none is lost or written twice — the collector and the Locator with a stand-in tracer
that answers from a table (the real tracer on the lab: tests/client/test_trace.py and
tests/plugins/test_locate_lab.py)."""
import collections
import threading
import types

from pathspider.base import NO_FLOW
from pathspider.client.locatekit import CHANGED, LocatePlugin, path_conditions
from pathspider.engine.jobs import JobCollector
from pathspider.engine.locating import Locator, wants_locate
from test_jobs import FakeEngine

Result = collections.namedtuple("Result", ["ip", "port", "config"])
Reply = collections.namedtuple("Reply", "ttl address kind rtt quote_len fields")


class Plugin(LocatePlugin):
    """Broken targets (config 1 failed) are dropped; ``x.changed`` ones changed."""

    command_name = "toy"
    locate_fields = ("ecn",)

    @staticmethod
    def conditions(baseline, experiment):
        if experiment and experiment.get("changed"):
            return ["toy.connectivity.works", "x.changed"]
        ok = [bool(r and r.get("ok")) for r in (baseline, experiment)]
        return ["toy.connectivity." + {(True, True): "works", (True, False): "broken",
                                       (False, True): "transient",
                                       (False, False): "offline"}[tuple(ok)]]

    def locate_effect(self, conditions, flows):
        if "x.changed" in conditions:
            return CHANGED
        return super().locate_effect(conditions, flows)

    def locate_probes(self, job):
        if job[2] == "explode":
            raise ValueError("no probe for this one")
        return {"A": "syn", "B": "ecn-syn"}


def trace_result(dst, drop_after=None, change_after=None, aborted=False):
    """A 4-router trace: B dropped after hop ``drop_after``, or its ECN field changed
    after hop ``change_after``; A always reaches the destination at TTL 5."""
    sent = {"ecn": 2, "quote_len": 40, "full": True}
    a = {k: Reply(k, f"198.18.0.{k}", "time-exceeded", 0.001, 40, dict(sent))
         for k in range(1, 5)}
    b = {}
    for k in range(1, 5):
        if drop_after is not None and k > drop_after:
            break
        fields = dict(sent)
        if change_after is not None and k > change_after:
            fields["ecn"] = 0
        b[k] = Reply(k, f"198.18.0.{k}", "time-exceeded", 0.001, 40, fields)
    dest_b = {"reached": drop_after is None, "ttl": 5 if drop_after is None else None}
    return types.SimpleNamespace(
        family=2, dst=dst, probes={"A": dict(sent), "B": dict(sent)},
        replies={"A": a, "B": b}, destination={"A": {"reached": True, "ttl": 5}, "B": dest_b},
        packets_sent=16, rounds=1, aborted=aborted, duration=0.01, max_ttl_sent=8,
        errors=[])


class TableTracer:
    """Calls back from its own thread with the trace the table has for the target; a target
    missing from the table is never answered (until :meth:`close`)."""

    def __init__(self, table):
        self.table = table
        self.submitted = []
        self.pending = []
        self.closed = False

    def submit(self, family, dst, probes, callback):
        self.submitted.append((dst, probes))
        if dst not in self.table:
            self.pending.append((dst, callback))
            return
        thread = threading.Thread(target=callback, args=(self.table[dst](dst),))
        thread.start()
        thread.join()

    def close(self):
        self.closed = True
        for dst, callback in self.pending:
            callback(trace_result(dst, aborted=True))
        self.pending = []


def run_jobs(jobs, tracer, job_lines=False, abort=False):
    """Merge each job's two results through a collector with a Locator; returns the items
    written, the locator and the engine."""
    engine = FakeEngine()
    spider = Plugin()
    locator = Locator(spider, None, tracer=tracer)
    collector = JobCollector(spider, job_lines, locator)
    collector.attach(engine)
    merge = collector.merging(lambda flow, res: engine.outqueue.put(
        {"dip": res.ip, "config": res.config, "ok": flow[res.config]["ok"],
         "changed": flow[res.config].get("changed", False)}))
    for i, (job, flows) in enumerate(jobs):
        results = [Result(job[0], 1000 + 2 * i + c, c) for c in (0, 1)]
        collector.issue(job, list(enumerate(results)), 2)
        for res in results:
            merge(flows, res)
    collector.flush(abort=abort)
    items = []
    while engine.outqueue.qsize():
        items.append(engine.outqueue.get_nowait())
    return items, locator, engine


BROKEN = [{"ok": True}, {"ok": False}]
CLEAN = [{"ok": True}, {"ok": True}]
OFFLINE = [{"ok": False}, {"ok": False}]
BLEACHED = [{"ok": True}, {"ok": True, "changed": True}]


def test_only_jobs_with_an_effect_are_traced_and_clean_ones_are_written_untouched():
    tracer = TableTracer({"198.18.66.1": lambda d: trace_result(d, drop_after=2),
                          "198.18.67.1": lambda d: trace_result(d, change_after=3)})
    jobs = [(["198.18.66.1", 80, "drop", 1], BROKEN), (["198.18.64.1", 80, "clean", 2], CLEAN),
            (["198.18.71.1", 80, "off", 3], OFFLINE), (["198.18.67.1", 80, "bleach", 4], BLEACHED)]
    items, locator, _ = run_jobs(jobs, tracer)
    assert [dst for dst, _ in tracer.submitted] == ["198.18.66.1", "198.18.67.1"]
    assert tracer.submitted[0][1] == {"A": "syn", "B": "ecn-syn"}
    assert len(items) == 8 and all(isinstance(item, dict) for item in items)
    by_ip = collections.defaultdict(list)
    for item in items:
        by_ip[item["dip"]].append(item)
    assert all("locate" not in r for ip in ("198.18.64.1", "198.18.71.1") for r in by_ip[ip])
    dropped = [r["locate"] for r in by_ip["198.18.66.1"]]
    assert dropped[0] is dropped[1]             # one object, in both records
    assert dropped[0]["effect"] == "dropped" and dropped[0]["dropped_at"] == 2
    assert dropped[0]["changed_at"] is None
    changed = by_ip["198.18.67.1"][0]["locate"]
    assert changed["effect"] == "changed" and changed["changed_at"] == 3
    assert changed["changed_fields"] == {"ecn": 3}
    assert locator.counters() == {"traced": 2, "hop_named": 2, "unknown": 0, "aborted": 0,
                                  "not_traced": 0, "packets_sent": 32, "held": 0}


def test_job_lines_get_the_locate_object_and_a_path_condition():
    tracer = TableTracer({"198.18.66.1": lambda d: trace_result(d, drop_after=3)})
    items, _, _ = run_jobs([(["198.18.66.1", 80, "drop", 1], BROKEN),
                            (["198.18.64.1", 80, "clean", 2], CLEAN)], tracer, job_lines=True)
    lines = {line["dip"]: line for line in items}
    assert lines["198.18.66.1"]["conditions"] == ["toy.connectivity.broken",
                                                  "toy.path.dropped_at:3"]
    assert lines["198.18.66.1"]["locate"]["dropped_at"] == 3
    assert "locate" not in lines["198.18.64.1"]
    assert lines["198.18.64.1"]["conditions"] == ["toy.connectivity.works"]


def test_a_trace_that_never_ends_is_written_aborted_when_the_run_aborts():
    tracer = TableTracer({})                    # never answers by itself
    items, locator, _ = run_jobs([(["198.18.66.1", 80, "drop", 1], BROKEN)], tracer,
                                 job_lines=True, abort=True)
    assert tracer.closed
    [line] = items
    assert line["locate"]["aborted"] is True
    assert line["conditions"][-1] == "toy.path.aborted"
    assert locator.counters()["aborted"] == 1 and locator.held == 0


def test_a_tracer_that_loses_a_callback_still_loses_no_record(monkeypatch):
    """Even if the tracer's close() forgets a pending trace, finish() writes the job."""
    import pathspider.engine.locating as locating
    monkeypatch.setattr(locating, "ABORT_SECONDS", 0.01)
    tracer = TableTracer({})
    tracer.close = lambda: None                 # a tracer that drops its pending traces
    items, locator, _ = run_jobs([(["198.18.66.1", 80, "drop", 1], BROKEN)], tracer,
                                 abort=True)
    assert len(items) == 2 and all(r["locate"] == {"aborted": True} for r in items)


def test_a_plugin_that_cannot_make_probes_gets_its_job_written_unlocated():
    tracer = TableTracer({})
    items, locator, _ = run_jobs([(["198.18.66.1", 80, "explode", 1], BROKEN)], tracer)
    assert len(items) == 2 and all("locate" not in r for r in items)
    assert locator.counters()["not_traced"] == 1 and not tracer.submitted


def test_path_conditions():
    assert path_conditions("ecn", "dropped", {"dropped_at": 2}) == ["ecn.path.dropped_at:2"]
    assert path_conditions("ecn", "changed", {"changed_at": 0}) == ["ecn.path.changed_at:0"]
    assert path_conditions("ecn", "changed", {"changed_at": None}) == ["ecn.path.unknown"]
    assert path_conditions("ecn", None, {"aborted": True}) == ["ecn.path.aborted"]


def test_locate_needs_a_plugin_that_supports_it(caplog):
    args = types.SimpleNamespace(locate=True)
    assert wants_locate(Plugin(), args)
    assert not wants_locate(object(), args)
    assert "cannot locate" in caplog.text
    assert not wants_locate(Plugin(), types.SimpleNamespace(locate=False))
