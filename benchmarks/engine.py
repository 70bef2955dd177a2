"""Engine benchmark: a synchronized no-op plugin through the whole job path.

Measures, for ``--jobs`` jobs and ``--workers`` workers: jobs/s from the first job queued to the
last record written, configuration flips/s, records out, and the CPU the process uses while a
started spider has no work (should be ~0: nothing polls).

    .venv/bin/python benchmarks/engine.py [--jobs 50000] [--workers 100]

Target (issue 2): >= 20,000 jobs/s on a 2-core machine (1.0 managed ~900).

The records are encoded as a run writes them, then counted and discarded (:class:`CountingSink`),
so the peak RSS this prints is the engine's own (it stays flat however many jobs run; it grew
with ``--jobs`` while the records were kept in a StringIO). ``benchmarks/memory.py`` measures
whole runs through the command line.
"""

import argparse
import collections
import queue
import resource
import threading
import time

from pathspider.base import NO_FLOW, SynchronizedSpider
from pathspider.observer.dummy import Observer as DummyObserver
from pathspider.engine.output import write_records

Result = collections.namedtuple("Result", ["ip", "port", "config"])


class NoOpSpider(SynchronizedSpider):
    """Connect returns at once; every job yields two records."""

    def config_zero(self):
        pass

    def config_one(self):
        pass

    def connect(self, job, pcs, config):
        return config

    def post_connect(self, job, conn, pcs, config):
        return Result(job[0], job[1] + config, config)

    def create_observer(self):
        return DummyObserver()

    def merge(self, flow, res):
        record = {"dip": res.ip, "sp": res.port, "config": res.config,
                  "observed": flow is not NO_FLOW}
        self.outqueue.put(record)


class Completion:
    """A connection that completes on another thread, as a reactor's does (``--conns``)."""

    __slots__ = ("config", "done", "callbacks")

    def __init__(self, config):
        self.config = config
        self.done = threading.Event()
        self.callbacks = []

    def wait(self):
        self.done.wait()


class CallbackCompletion(Completion):
    """The same, telling the engine when it is done (``add_done_callback``)."""

    __slots__ = ()
    _lock = threading.Lock()

    def add_done_callback(self, fn):
        with self._lock:
            if not self.done.is_set():
                self.callbacks.append(fn)
                return
        fn(self)


class FakeReactor:
    """One thread that completes every submitted connection in order."""

    def __init__(self):
        self.inbox = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            conn = self.inbox.get()
            with CallbackCompletion._lock:
                conn.done.set()
                callbacks, conn.callbacks = conn.callbacks, []
            for fn in callbacks:
                fn(conn)


class ReactorLikeSpider(NoOpSpider):
    """Connections complete on a reactor-like thread (``--conns wait|callback``)."""

    post_connect_overlaps = True
    completion = Completion

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reactor = FakeReactor()

    def connect(self, job, pcs, config):
        conn = self.completion(config)
        self.reactor.inbox.put(conn)
        return conn

    def post_connect(self, job, conn, pcs, config):
        conn.wait()
        return Result(job[0], job[1] + config, config)


class CountingSink:
    """A text stream that counts what is written to it and keeps none of it."""

    def __init__(self):
        self.characters = 0
        self.lines = 0

    def write(self, text):
        self.characters += len(text)
        self.lines += text.count("\n")
        return len(text)

    def flush(self):
        pass


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(jobs, workers, idle_seconds, conns="none"):
    if conns == "none":
        spider = NoOpSpider(workers, "int:none", None)
    else:
        spider = type("Spider", (ReactorLikeSpider,), {
            "completion": CallbackCompletion if conns == "callback" else Completion})(
                workers, "int:none", None)
    spider.start()

    idle_cpu0 = cpu_seconds()
    threading.Event().wait(idle_seconds)        # measuring idle CPU: nothing to wait for
    idle_cpu = (cpu_seconds() - idle_cpu0) / idle_seconds

    def feed():
        for i in range(jobs):
            spider.add_job(["198.18.64.%d" % (i % 250 + 1), 1024 + (i % 60000), "h", i])
        spider.shutdown()

    sink = CountingSink()
    t0 = time.perf_counter()
    cpu0 = cpu_seconds()
    feeder = threading.Thread(target=feed)
    feeder.start()
    records = write_records(spider.outqueue, sink)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    feeder.join()
    return {
        "jobs": jobs, "workers": workers, "records": records,
        "seconds": round(elapsed, 3), "jobs_per_s": round(jobs / elapsed),
        "flips": spider.engine.model.gate.flips, "flips_per_s": round(spider.engine.model.gate.flips / elapsed),
        "cpu_per_s_busy": round(cpu / elapsed, 2), "cpu_per_s_idle": round(idle_cpu, 4),
        "completer_threads": spider.engine.completers.thread_count,
        "lines_written": sink.lines,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle measurement")
    parser.add_argument("--conns", choices=["none", "wait", "callback"], default="none",
                        help="none: connect returns at once; wait/callback: connections "
                             "complete on a reactor-like thread and post_connect waits for "
                             "them / the engine is called back when they are done")
    args = parser.parse_args()
    result = run(args.jobs, args.workers, args.idle, args.conns)
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    if result["records"] != 2 * args.jobs:
        raise SystemExit(f"LOST RECORDS: {result['records']} != {2 * args.jobs}")


if __name__ == "__main__":
    main()
