"""Running one measurement from parsed arguments: feed jobs, write records, report.

(PATHspider 1.0's ``pathspider.standalone``, which re-exports :func:`run_standalone` and
:func:`job_feeder` from here.)

:func:`run_standalone` is what ``pathspider [options] PLUGIN`` does once the arguments are
parsed. A feeder thread streams the target list into the spider (:func:`job_feeder`), the main
thread writes records as they arrive, and the run ends with a one-line summary on stderr.

Interruptions: the first Ctrl-C (or SIGTERM) stops reading targets, lets the jobs already
started finish, and writes every record; a second one abandons the jobs in flight. Either
way, system state changed by the plugin is restored before the process exits.
"""

import logging
import signal
import sys
import threading
import time

from pathspider.client import sysstate
from pathspider.engine.handoff import ObserverError
from pathspider.engine.interfaces import interface_up
from pathspider.engine.output import write_records
from pathspider.engine.targets import TargetStats, read_targets

log = logging.getLogger("pathspider.engine.coordinator")

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130


class _Interrupts:
    """First signal: stop feeding; second: terminate the spider."""

    def __init__(self):
        self.stop_feeding = threading.Event()
        self.spider = None
        self.count = 0
        self._previous = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            log.warning("%s: no more targets are read; finishing the jobs already started "
                        "(again to abandon them)", name)
            self.stop_feeding.set()
            if self.spider is not None:
                self.spider.discard_queued_jobs()
        elif self.spider is not None:
            log.warning("%s again: abandoning the jobs in flight", name)
            threading.Thread(target=self.spider.terminate, daemon=True).start()


def job_feeder(inputfile, spider, stats=None, stop=None, source="input"):
    """Read jobs from ``inputfile`` into ``spider``, then shut the spider down (1.0 name)."""
    try:
        for job in read_targets(inputfile, stats, source):
            if stop is not None and stop.is_set():
                break
            spider.add_job(job)
    except Exception:
        log.exception("reading %s failed; finishing the jobs read so far", source)
    finally:
        spider.shutdown()


def _open(path, mode):
    return open(path, mode, encoding="utf-8", errors="replace", newline="" if "r" in mode else None)


def _check_args(args):
    """One clear message for what would otherwise fail later, or None."""
    if getattr(args, "spider", None) is None:
        return "Plugin not found"
    if args.workers < 1:
        return f"--workers must be at least 1 (got {args.workers})"
    if not interface_up(args.interface):
        return (f"interface {args.interface!r} does not exist or is not up "
                "(choose the capture interface with -i)")
    return None


def run_standalone(args):
    """Run the measurement ``args.spider`` as the parsed arguments say; return the exit status."""
    problem = _check_args(args)
    if problem:
        log.error("%s", problem)
        return EXIT_ERROR
    try:
        inputfile = _open(args.input, "r")
        outputfile = _open(args.output, "w")
    except OSError as exc:
        log.error("cannot open %s: %s", exc.filename, exc.strerror)
        return EXIT_ERROR

    interrupts = _Interrupts()
    interrupts.install()
    spider = None
    try:
        spider = args.spider(worker_count=args.workers,
                             libtrace_uri="int:" + args.interface, args=args)
        interrupts.spider = spider
        return _measure(spider, inputfile, outputfile, interrupts, args)
    except ObserverError as exc:
        log.error("the observer could not start: %s", exc)
        return EXIT_ERROR
    finally:
        _restore(spider)
        interrupts.uninstall()
        inputfile.close()
        if outputfile is not sys.stdout:
            outputfile.close()


def _measure(spider, inputfile, outputfile, interrupts, args):
    stats = TargetStats()
    spider.start()
    started = time.monotonic()
    feeder = threading.Thread(target=job_feeder, name="feeder", daemon=True,
                              args=(inputfile, spider, stats, interrupts.stop_feeding,
                                    args.input))
    feeder.start()
    records = write_records(spider.outqueue, outputfile)
    feeder.join(timeout=None if spider.exception is None else 5)
    elapsed = time.monotonic() - started
    _summarise(spider, stats, records, elapsed)
    if spider.exception is not None:
        log.error("the run failed: %s", spider.exception)
        return EXIT_ERROR
    if interrupts.count:
        return EXIT_INTERRUPTED
    if spider.job_errors:
        log.error("%d plugin errors (see above)", spider.job_errors)
        return EXIT_ERROR
    return EXIT_OK


def _summarise(spider, stats, records, elapsed):
    observer = spider.observer_runner.stats if spider.observer_runner else None
    merger = spider.merger_state
    if spider.discarded_jobs:
        log.warning("%d queued jobs were not started because the run was interrupted",
                    spider.discarded_jobs)
    log.info("done: %d jobs from %d lines (%d bad rows skipped), %d records written in %.1f s "
             "(%.0f jobs/s); %d records without an observed flow; observer: %s",
             stats.jobs, stats.lines, stats.bad, records, elapsed,
             stats.jobs / elapsed if elapsed > 0 else 0,
             merger.unobserved if merger else 0, observer if observer else "no statistics")


def _restore(spider):
    """Put system state back: the plugin's own hook, then everything
    :mod:`pathspider.client.sysstate` holds."""
    if spider is not None:
        try:
            spider.restore_system_state()
        except Exception:
            log.exception("restoring system state failed")
    try:
        sysstate.restore_all()
    except Exception:
        log.exception("restoring system state failed")
