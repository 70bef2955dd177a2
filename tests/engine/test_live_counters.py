"""The Observer's counters while a run goes on: the Observer process sends them down the flow
queue when its queue is ticked (pathspider.observer.process), the engine's flow pump keeps the
latest (pathspider.engine.handoff), and the meter ticks its queue flows or not
(pathspider.observer.meter)."""
import queue
import threading
import time
from pathlib import Path

from pathspider.constants import SHUTDOWN_SENTINEL
from pathspider.engine.handoff import ObserverRunner
from pathspider.observer import Observer, basic_flow
from pathspider.observer.process import STATS_SECONDS, STATS_TAG, _WithCounters

PCAP = Path(__file__).resolve().parents[1] / "data" / "core" / "link_eth.pcap"


class TickingObserver:
    """Ticks its queue until asked to stop; its counters say 3 packets were dropped."""

    def start_capture(self):
        return self

    def run_flow_batches(self, flowqueue, irqueue=None):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            flowqueue.tick()
            try:
                irqueue.get(timeout=0.05)
                break
            except queue.Empty:
                pass
        flowqueue.put(SHUTDOWN_SENTINEL)

    def stats(self):
        return {"dropped": 3, "ifdropped": 1, "packets": 10}


def test_the_pump_keeps_the_counters_sent_while_the_observer_runs():
    ended = threading.Event()
    runner = ObserverRunner(TickingObserver(),
                            lambda flows: ended.set() if flows == SHUTDOWN_SENTINEL else None,
                            lambda exc: None)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while runner.live_stats is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.live_stats == {"dropped": 3, "ifdropped": 1, "packets": 10}
        assert runner.stats is None and runner.counters == runner.live_stats
    finally:
        runner.request_stop()
        assert runner.join(10)
    assert ended.is_set()                   # the counters never reached the merger as flows
    assert runner.counters == runner.stats == {"dropped": 3, "ifdropped": 1, "packets": 10}


def test_counters_are_sent_at_most_every_few_seconds():
    sent = queue.Queue()
    wrapped = _WithCounters(sent, lambda: {"dropped": 0})
    for _ in range(5):
        wrapped.tick()
    assert sent.qsize() == 1 and sent.get() == (STATS_TAG, {"dropped": 0})
    wrapped._next -= STATS_SECONDS
    wrapped.tick()
    assert sent.qsize() == 1


def test_counters_that_fail_are_not_asked_for_again():
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("no counters")

    wrapped = _WithCounters(queue.Queue(), broken)
    wrapped.tick()
    wrapped._next = 0
    wrapped.tick()
    assert len(calls) == 1


class TickedQueue(list):
    ticks = 0

    def put(self, item, block=True, timeout=None):
        self.append(item)

    def tick(self):
        self.ticks += 1


def test_the_meter_ticks_its_queue_and_puts_only_flows():
    flows = TickedQueue()
    Observer(f"pcap:{PCAP}", new_flow_chain=[basic_flow]).run_flow_batches(flows)
    assert flows.ticks >= 1                 # the first heartbeat comes at once
    assert flows[-1] == SHUTDOWN_SENTINEL
    assert all(type(batch) is list and batch for batch in flows[:-1])
