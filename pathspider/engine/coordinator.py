"""One measurement run, from parsed arguments to exit status: the run's supervisor.

(PATHspider 1.0's ``pathspider.standalone``, which re-exports :func:`run_standalone` and
:func:`job_feeder` from here.)

:class:`Supervisor` owns everything a run starts: the spider (its threads and its Observer
process), a feeder thread that streams the target list into it, and the main thread, which
writes the records as they arrive. However the run ends, it ends the same way: every record
that was produced is written, system state changed by the plugin is restored, one summary line
goes to stderr, and the exit status says why it ended.

Signals (SIGINT, SIGTERM, SIGHUP):

* the first stops reading targets (also when the read is blocked on a pipe or terminal), drops
  the queued jobs no worker has started, and finishes the started ones;
* the second abandons the jobs in flight: the results already produced are merged and written,
  and the run ends within a few seconds;
* a third stops writing at once (system state is still restored).

Exit statuses: ``0`` the run completed; ``1`` it failed (bad arguments, no permission, another
run changing the same system state, a plugin error, the Observer failing, the output failing);
``128 + N`` it was stopped by signal N (129 SIGHUP, 130 SIGINT, 143 SIGTERM); ``141`` the
reader of the output went away (``| head``). The first cause wins.
"""

import contextlib
import gc
import logging
import os
import signal
import stat
import threading
import time

from pathspider.client import privileges, sysstate
from pathspider.engine import held_signals
from pathspider.engine.bookkeeping import Bookkeeping, BookkeepingError
from pathspider.engine.handoff import ObserverError
from pathspider.engine.interfaces import interface_up
from pathspider.engine.jobs import JobCollector
from pathspider.engine.locating import Locator, wants_locate
from pathspider.engine.output import describe_output_error, write_records
from pathspider.engine.ratelimit import bucket_for_run, paced
from pathspider.engine.scope import ScopeError, scope_for_run
from pathspider.engine.spider import EngineError
from pathspider.engine.targets import TargetStats, read_targets

log = logging.getLogger("pathspider.engine.coordinator")

EXIT_OK, EXIT_FAILURE, EXIT_OUTPUT_CLOSED = 0, 1, 141
#: 1.0 name of the failure status.
EXIT_ERROR = EXIT_FAILURE
#: Signals that stop a run (see the module docstring).
STOP_SIGNALS = held_signals.STOP_SIGNALS
#: Most connect workers: each is a thread, and completers grow to ten per worker.
MAX_WORKERS = 1000
_STDIN_NAMES = ("-", "/dev/stdin")
_STDOUT_NAMES = ("-", "/dev/stdout")


class _StopNow(BaseException):
    """Raised in the main thread by a third signal: stop writing at once."""


class RunRefused(Exception):
    """A run that cannot start; the message is the one line shown to the user."""


def run_standalone(args):
    """Run the measurement ``args.spider`` as the parsed arguments say; return the exit status."""
    return Supervisor(args).run()


def job_feeder(inputfile, spider, stats=None, stop=None, source="input"):
    """Read jobs from ``inputfile`` into ``spider``, then shut the spider down (1.0 name).

    ``stop`` (an Event) ends reading early. The supervisor uses its own feeder, which can also
    stop a read that blocks.
    """
    try:
        for job in read_targets(inputfile, stats, source):
            if stop is not None and stop.is_set():
                break
            spider.add_job(job)
    except Exception:
        log.exception("reading %s failed; finishing the jobs read so far", source)
    finally:
        spider.shutdown()


def check_args(args):
    """One clear message for what would otherwise fail later, or None."""
    if getattr(args, "spider", None) is None:
        return (f"the command {getattr(args, 'command', None)!r} names no spider: its plugin's "
                "register_args must call parser.set_defaults(spider=ThePluginClass)")
    if not 1 <= args.workers <= MAX_WORKERS:
        return f"--workers must be 1 to {MAX_WORKERS} (got {args.workers})"
    if not interface_up(args.interface):
        return (f"interface {args.interface!r} does not exist or is not up "
                "(choose the capture interface with -i)")
    missing = privileges.missing([privileges.CAP_NET_RAW])
    if missing:
        return f"capturing on {args.interface} needs {', '.join(missing)}: {privileges.HINT}"
    return None


class Supervisor:
    """Owns one run (see the module docstring); :meth:`run` returns its exit status."""

    def __init__(self, args):
        self.args = args
        self.spider = None
        self.collector = None               # --format jobs or --locate: the JobCollector
        self.locator = None                 # --locate: the Locator
        self.stats = TargetStats()
        self.scope = None                   # the ScopeFilter: which targets may be measured
        self.sink = None
        self.exit_status = None             # the first cause of the ending
        self.stop_reason = None             # what stopped the run early, for the summary
        self.signals = 0
        self.started = time.monotonic()
        self._input_fd = None
        self._writing = False               # a third signal may interrupt the writer
        self._handlers = {}
        self.books = Bookkeeping(self)      # progress, --metadata, --resume

    # ---- the run ----------------------------------------------------------------------------

    def run(self):
        problem = check_args(self.args)
        if problem:
            log.error("%s", problem)
            return EXIT_FAILURE
        try:
            self.scope = _scope_for_run(self.args, self.stats)
            self._open_files()
        except RunRefused as exc:
            log.error("%s", exc)
            self._close_files()
            return EXIT_FAILURE
        self._install_signal_handlers()
        try:
            return self._measure()
        except RunRefused as exc:
            log.error("%s", exc)
            self.books.failure = str(exc)
            return self._set_status(EXIT_FAILURE)
        finally:
            self.books.stop_progress()
            self._restore()
            self._uninstall_signal_handlers()
            self._close_files()
            self.books.ended()              # the metadata's last version

    def _measure(self):
        self.spider = self._make_spider()
        job_lines = getattr(self.args, "output_format", "flows") == "jobs"
        self.locator = (Locator(self.spider, self.args)
                        if wants_locate(self.spider, self.args) else None)
        if job_lines or self.locator is not None:
            self.collector = JobCollector(self.spider, job_lines, self.locator)
            self.spider.engine.write_job_lines(self.collector)
        if self.signals:
            log.info("stopped (%s) before the measurement started: nothing was measured",
                     self.stop_reason)
            return self.exit_status
        try:
            self.spider.start()
        except (ObserverError, EngineError) as exc:
            raise RunRefused(f"the run could not start: {exc}") from None
        try:
            self.books.measuring()          # resume's output, metadata, progress
        except BookkeepingError as exc:
            raise RunRefused(str(exc)) from None
        with collection_tuned_for_a_run():
            feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)
            feeder.start()
            records = self._write()
        feeder.join(5)                      # it stops reading once the run stops taking input
        if not feeder.is_alive():
            self.spider.engine.phase.close()
        self.books.stop_progress()
        self._summarise(records)
        return self._final_status()

    def _make_spider(self):
        args = self.args
        try:
            return args.spider(worker_count=args.workers, libtrace_uri="int:" + args.interface,
                               args=args)
        except sysstate.SystemStateError as exc:
            raise RunRefused(str(exc)) from None
        except Exception as exc:            # the plugin's own constructor failed
            log.debug("plugin constructor failed", exc_info=True)
            raise RunRefused(f"the {args.command} plugin could not start: "
                             f"{type(exc).__name__}: {exc}") from None

    def _feed(self):
        """The feeder thread: stream the target list into the spider until its end, or until
        the run stops taking input (the read is interrupted through the phase's wake-up fd)."""
        spider = self.spider
        try:
            jobs = read_targets(self._input_fd, self.stats, self._input_name,
                                wake_fd=spider.engine.phase.wake_fd,
                                input_format=getattr(self.args, "input_format", "auto"))
            jobs = self.books.feeder_step(jobs)                         # --resume: skip done
            jobs = self.scope.admit(jobs)                               # scope: in range only
            jobs = paced(jobs, bucket_for_run(getattr(self.args, "rate", None),
                                              spider.engine.phase))     # --rate
            for job in jobs:
                spider.add_job(job)
                if spider.stopping:
                    break
        except Exception:
            log.exception("reading %s failed; finishing the jobs read so far", self._input_name)
        finally:
            self.books.reading_done = True
            spider.end_input()

    def _write(self):
        """Write records until the run closes the output; returns the number written."""
        self._writing = True
        try:
            write_records(self.spider.outqueue, self.sink, on_failure=self._output_failed)
        except _StopNow:
            log.warning("stopped at once; the records of jobs in flight are lost")
            try:
                self.sink.flush()
            except OSError:
                pass
        finally:
            self._writing = False
        return self.sink.lines

    def _final_status(self):
        spider = self.spider
        if spider.exception is not None:
            log.error("the run failed: %s", spider.exception)
            self._set_status(EXIT_FAILURE)
        if spider.engine.job_errors:
            log.error("%d plugin errors (see above)", spider.engine.job_errors)
            self._set_status(EXIT_FAILURE)
        return self._set_status(EXIT_OK)

    def _set_status(self, status, reason=None):
        """Record ``status`` (and ``reason``) unless an earlier cause already decided it;
        return the decision."""
        if self.exit_status is None:
            self.exit_status = status
            self.stop_reason = reason
        return self.exit_status

    # ---- files ------------------------------------------------------------------------------

    @property
    def _input_name(self):
        return "input" if self.args.input in _STDIN_NAMES else self.args.input

    def _open_files(self):
        """The input descriptor and the output :class:`LineSink` (see :func:`open_output`)."""
        args = self.args
        if args.input in _STDIN_NAMES:
            self._input_fd = os.dup(0)
        else:
            self._input_fd = _open_fd(args.input, os.O_RDONLY, "read --input")
        input_stat = os.fstat(self._input_fd)
        try:                                # (a resumed output is opened once the run starts)
            self.sink = self.books.open_output(input_stat, open_output)
            self.books.start_metadata(input_stat)
        except BookkeepingError as exc:
            raise RunRefused(str(exc)) from None

    def _close_files(self):
        if self.sink is not None:
            try:
                self.sink.close()
            except OSError as exc:
                if self.exit_status in (None, EXIT_OK):
                    log.error("%s", describe_output_error(exc))
                    self.exit_status = EXIT_FAILURE
            self.sink = None
        if self._input_fd is not None:
            os.close(self._input_fd)
            self._input_fd = None

    def _output_failed(self, exc):
        """The writer could not write (main thread): end the run, keep its first cause."""
        closed = isinstance(exc, BrokenPipeError)
        self._set_status(EXIT_OUTPUT_CLOSED if closed else EXIT_FAILURE,
                         describe_output_error(exc))
        if closed:
            log.info("%s; ending the run", describe_output_error(exc))
        else:
            log.error("%s; ending the run", describe_output_error(exc))
        self.spider.terminate(describe_output_error(exc))

    # ---- signals ----------------------------------------------------------------------------

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return
        held = held_signals.take()
        for signum in STOP_SIGNALS:
            self._handlers[signum] = signal.signal(signum, self._on_signal)
        for signum in held:                 # arrived while the program was starting up
            self._on_signal(signum, None)

    def _uninstall_signal_handlers(self):
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def _on_signal(self, signum, frame):
        """Signal handler (main thread): count, decide, and leave the work to a thread."""
        self.signals += 1
        self._set_status(128 + signum, signal.Signals(signum).name)
        if self.signals >= 3:
            if self._writing:
                raise _StopNow()
            return
        threading.Thread(target=self._escalate, args=(signum, self.signals),
                         name="signal", daemon=True).start()

    def _escalate(self, signum, count):
        name = signal.Signals(signum).name
        spider = self.spider
        if count == 1:
            log.warning("%s: no more targets are read; finishing the jobs already started "
                        "(%s again to abandon them)", name, name)
            if spider is not None:
                spider.discard_queued_jobs(name)
        else:
            log.warning("%s again: abandoning the jobs in flight (once more to stop at once)",
                        name)
            if spider is not None:
                spider.terminate(f"{name} twice")

    # ---- the end ----------------------------------------------------------------------------

    def _summarise(self, records):
        spider = self.spider
        engine = spider.engine
        stats = self.stats
        elapsed = time.monotonic() - self.started
        observer = engine.observer_runner.stats if engine.observer_runner else None
        merger = engine.merger_state
        if engine.discarded_jobs:
            log.warning("%d queued jobs were not started because the run was stopped",
                        engine.discarded_jobs)
        reason = self.stop_reason or (spider.exception and f"failed: {spider.exception}")
        outcome = f"stopped ({reason})" if reason else "done"
        written = f"{records} records written"
        if self.collector is not None and self.collector.job_lines:
            written = f"{self.collector.lines} job lines with {self.collector.records} " \
                "records written"
        log.info("%s: %d jobs from %d lines (%d bad rows skipped%s), %s in %.1f s "
                 "(%.0f jobs/s); %d records without an observed flow; observer: %s",
                 outcome, stats.jobs, stats.lines, stats.bad,
                 "; " + self.scope.summary() if self.scope.skipped else "", written, elapsed,
                 stats.jobs / elapsed if elapsed > 0 else 0,
                 merger.unobserved if merger else 0, observer if observer else "no statistics")
        if self.locator is not None:
            c = self.locator.counters()
            log.info("located: %d targets traced, hop named for %d, unknown for %d, %d "
                     "aborted; %d probe packets sent", c["traced"], c["hop_named"],
                     c["unknown"], c["aborted"], c["packets_sent"])

    def _restore(self):
        """Put system state back: the plugin's own hook, then everything
        :mod:`pathspider.client.sysstate` holds; stop an Observer that is still running."""
        spider = self.spider
        if spider is not None:
            try:
                spider.restore_system_state()
            except Exception:
                log.exception("restoring system state failed")
        try:
            sysstate.restore_all()
        except Exception:
            log.exception("restoring system state failed")
        runner = spider.engine.observer_runner if spider is not None else None
        if runner is not None:
            runner.kill()


#: Garbage-collector thresholds while a run measures (the defaults are 700, 10, 10).
RUN_GC_THRESHOLDS = (10000, 20, 20)


@contextlib.contextmanager
def collection_tuned_for_a_run():
    """Tune Python's cyclic garbage collector for the run, and put it back afterwards.

    A run keeps tens of thousands of objects alive (jobs in flight, results waiting for their
    flows), and with the default thresholds the collector ran full collections in the middle
    of a run: in ``benchmarks/e2e.py`` two per 5,000 jobs, each holding the interpreter lock,
    and so stopping every thread of the run, for 25 to 95 ms. Inside this context the objects
    that existed before (modules, the parser, the plugin) are frozen, so no collection looks
    at them again, and the youngest generation is collected every 10,000 allocations instead
    of 700, so that fewer objects of jobs still in flight are promoted to the older
    generations. Cyclic garbage is still collected. The Observer process, started before,
    keeps the defaults.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def open_output(path, input_stat=None):
    """A writable descriptor for ``--output``.

    The default (``-`` or ``/dev/stdout``) is the inherited standard output, duplicated, not
    re-opened: ``>> results`` appends, as the shell was asked to. A named file is created or
    truncated, but never when it is the input file (``input_stat``): that would empty the
    target list before it is read. Raises :class:`RunRefused` with one line.
    """
    if path in _STDOUT_NAMES:
        fd = os.dup(1)
        _refuse_same_file(os.fstat(fd), input_stat, "standard output")
        return fd
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise RunRefused(f"cannot write --output {path}: {exc.strerror}") from None
    if existing is not None:
        _refuse_same_file(existing, input_stat, f"--output {path}")
    return _open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "write --output")


def _scope_for_run(args, stats):
    """The run's :class:`pathspider.engine.scope.ScopeFilter`; a bad scope option refuses
    the run with one line."""
    try:
        return scope_for_run(args, stats)
    except ScopeError as exc:
        raise RunRefused(str(exc)) from None


def _refuse_same_file(output_stat, input_stat, what):
    if (input_stat is not None and stat.S_ISREG(output_stat.st_mode)
            and (output_stat.st_dev, output_stat.st_ino) == (input_stat.st_dev,
                                                           input_stat.st_ino)):
        raise RunRefused(f"{what} is the input file: writing results there would destroy the "
                         "target list; choose another --output")


def _open_fd(path, flags, what):
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunRefused(f"cannot {what} {path}: {exc.strerror}") from None
