"""Engine benchmark: a synchronized no-op plugin through the whole job path.

Measures, for ``--jobs`` jobs and ``--workers`` workers: jobs/s from the first job queued to the
last record written, configuration flips/s, records out, and the CPU the process uses while a
started spider has no work (should be ~0: nothing polls).

    .venv/bin/python benchmarks/engine.py [--jobs 50000] [--workers 100]

Target (issue 2): >= 20,000 jobs/s on a 2-core machine (1.0 managed ~900).
"""

import argparse
import collections
import io
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


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(jobs, workers, idle_seconds):
    spider = NoOpSpider(workers, "int:none", None)
    spider.start()

    idle_cpu0 = cpu_seconds()
    threading.Event().wait(idle_seconds)        # measuring idle CPU: nothing to wait for
    idle_cpu = (cpu_seconds() - idle_cpu0) / idle_seconds

    def feed():
        for i in range(jobs):
            spider.add_job(["198.18.64.%d" % (i % 250 + 1), 1024 + (i % 60000), "h", i])
        spider.shutdown()

    sink = io.StringIO()
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
        "flips": spider.gate.flips, "flips_per_s": round(spider.gate.flips / elapsed),
        "cpu_per_s_busy": round(cpu / elapsed, 2), "cpu_per_s_idle": round(idle_cpu, 4),
        "completer_threads": spider.completers.thread_count,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle measurement")
    args = parser.parse_args()
    result = run(args.jobs, args.workers, args.idle)
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    if result["records"] != 2 * args.jobs:
        raise SystemExit(f"LOST RECORDS: {result['records']} != {2 * args.jobs}")


if __name__ == "__main__":
    main()
