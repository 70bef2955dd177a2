"""The hand-off between the engine and the Observer process: start-up errors, a dying
Observer, and the spawn start method."""
import collections
import threading

import pytest

from pathspider.base import NO_FLOW, SynchronizedSpider
from pathspider.engine.handoff import ObserverError
from pathspider.engine.output import write_records

from loopback import LoopbackTargets

Result = collections.namedtuple("Result", ["ip", "port", "config"])


class FailingToStart:
    def start_capture(self):
        raise PermissionError("no permission to capture on eth9")

    def run_flow_enqueuer(self, flowqueue, irqueue=None):
        raise AssertionError("never reached")


class DyingObserver:
    """Starts, then dies mid-run without ending its stream."""

    def run_flow_enqueuer(self, flowqueue, irqueue=None):
        raise RuntimeError("capture device vanished")


class Plugin(SynchronizedSpider):
    observer_factory = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn_timeout = 1

    def config_zero(self):
        pass

    def config_one(self):
        pass

    def connect(self, job, pcs, config):
        return self.tcp_connect(job)

    def post_connect(self, job, conn, pcs, config):
        conn.client.close()
        return Result(job[0], conn.port, config)

    def create_observer(self):
        return self.observer_factory()

    def merge(self, flow, res):
        self.outqueue.put({"port": res.port, "observed": flow is not NO_FLOW,
                           "pkt_fwd": flow["pkt_fwd"] if flow else None})


class Sink:
    def write(self, text):
        pass

    def flush(self):
        pass


def test_start_up_failure_is_a_clear_error():
    spider = type("P", (Plugin,), {"observer_factory": FailingToStart})(2, "int:eth9", None)
    with pytest.raises(ObserverError, match="PermissionError: no permission to capture"):
        spider.start()


def test_a_dying_observer_ends_the_run_with_an_error_instead_of_a_hang():
    spider = type("P", (Plugin,), {"observer_factory": DyingObserver})(2, "int:lo", None)
    spider.start()
    done = threading.Event()

    def consume():
        write_records(spider.outqueue, Sink())
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(30), "the run hung after the observer died"
    assert isinstance(spider.exception, ObserverError)
    assert "capture device vanished" in str(spider.exception)


@pytest.mark.root
def test_real_observer_under_the_spawn_start_method(monkeypatch):
    """The Observer object crosses to a spawned process (Python 3.14's default) and flows
    still merge with their results."""
    from pathspider.observer import simple_observer

    monkeypatch.setenv("PATHSPIDER_MP_START", "spawn")
    targets = LoopbackTargets()
    try:
        spider = type("P", (Plugin,), {"observer_factory":
                                       staticmethod(lambda: simple_observer("int:lo"))})(
            4, "int:lo", None)
        spider.start()
        assert spider.engine.observer_runner._ctx.get_start_method() == "spawn"
        records = []

        def feed():
            for i in range(20):
                spider.add_job(["127.0.0.1", targets.accepting, "h", i])
            spider.shutdown()

        threading.Thread(target=feed, daemon=True).start()
        write_records(spider.outqueue, Sink(), on_record=records.append)
    finally:
        targets.close()
    assert len(records) == 40
    assert all(r["observed"] for r in records), records
    assert all(r["pkt_fwd"] >= 2 for r in records)
    assert spider.engine.observer_runner.stats["packets"] > 0
