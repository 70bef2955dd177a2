"""A run's bookkeeping beside the measurement: progress, run metadata and resuming.

The supervisor (:mod:`pathspider.engine.coordinator`) owns the run; it calls this module's
:class:`Bookkeeping` at five points, and nothing here is on a job's path:

1. :meth:`Bookkeeping.open_output` when the files are opened: a fresh output is created
   (truncated) as before; with ``--resume`` and an existing output, the output is scanned
   (:mod:`pathspider.engine.resume`) and opened only once the run has started;
   :meth:`Bookkeeping.start_metadata` then checks ``--metadata`` and writes its first version;
2. :meth:`Bookkeeping.measuring` once the spider has started (its connection count is known):
   a resumed output is cleaned and opened for appending, the metadata records what the plugin
   changed, and the progress ticker starts;
3. :meth:`Bookkeeping.feeder_step`, a step of the feeder: a resumed run skips the targets the
   output already has;
4. :meth:`Bookkeeping.stop_progress` before the summary line;
5. :meth:`Bookkeeping.ended` after system state was restored and the files closed: the
   metadata's last version, however the run ended.
"""

import logging
import os

from pathspider.engine import metadata as run_metadata
from pathspider.engine.lifecycle import ABORTING, DRAINING
from pathspider.engine.output import LineSink
from pathspider.engine.progress import LOG_SECONDS, Progress, choose_mode
from pathspider.engine.resume import ResumeError, scan_output

log = logging.getLogger("pathspider.engine.bookkeeping")

_STDIN_NAMES = ("-", "/dev/stdin")
_STDOUT_NAMES = ("-", "/dev/stdout")


class BookkeepingError(Exception):
    """The run cannot start as asked (``--resume``, ``--metadata``); one line for the user."""


class Bookkeeping:
    """Progress, metadata and resume of the run that ``supervisor`` owns (module docstring)."""

    def __init__(self, supervisor):
        self.sup = supervisor
        self.args = supervisor.args
        self.scan = None                    # --resume: what the existing output holds
        self.plan = None                    # --resume: what is kept and skipped
        self.metadata = None                # --metadata: the RunMetadata
        self.progress = None
        self.sink = None                    # the output's LineSink (kept after it is closed)
        self.failure = None                 # why a refused run failed
        self.reading_done = False           # the feeder has finished reading
        self._previous_metadata = None      # what --metadata held before this run

    # ---- 1. opening ---------------------------------------------------------------------------

    def open_output(self, input_stat, open_output):
        """The output's LineSink, made with ``open_output(path, input_stat)`` (the
        supervisor's, which refuses the input file); None when a resumed output is opened
        later (:meth:`measuring`). ``--metadata`` is checked first, so that a refused
        metadata file leaves the output untouched."""
        args = self.args
        self._check_metadata(input_stat)
        if getattr(args, "resume", False):
            if args.output in _STDOUT_NAMES:
                raise BookkeepingError("--resume needs a named --output file (standard output "
                                       "cannot be read back)")
            if os.path.exists(args.output):
                _refuse_input(args.output, input_stat)
                try:
                    self.scan = scan_output(args.output,
                                            getattr(args, "output_format", "flows"))
                except ResumeError as exc:
                    raise BookkeepingError(str(exc)) from None
                return None
            log.info("--resume: %s does not exist; starting a fresh run", args.output)
        self.sink = LineSink(open_output(args.output, input_stat))
        return self.sink

    def _check_metadata(self, input_stat):
        path = getattr(self.args, "metadata", None)
        if not path:
            return
        try:
            self._previous_metadata = run_metadata.check_path(path, input_stat,
                                                              self.args.output)
        except run_metadata.MetadataError as exc:
            raise BookkeepingError(str(exc)) from None

    def start_metadata(self, input_stat):
        """Write the first version of ``--metadata`` (before the plugin starts)."""
        path = getattr(self.args, "metadata", None)
        if not path:
            return
        try:
            self.metadata = run_metadata.RunMetadata(path, self.args, self._previous_metadata,
                                                     resumed=self.scan is not None)
            self.metadata.started()
        except run_metadata.MetadataError as exc:
            raise BookkeepingError(str(exc)) from None
        except OSError as exc:
            raise BookkeepingError(f"cannot write --metadata {path}: "
                                   f"{exc.strerror or exc}") from None

    # ---- 2. the run has started ---------------------------------------------------------------

    def measuring(self):
        """Clean and open a resumed output, record what the plugin changed, start the
        progress. Raises BookkeepingError (after stopping the spider) if the output cannot be
        resumed."""
        engine = self.sup.spider.engine
        if self.scan is not None:
            try:
                self._resume(engine.connection_count)
            except (ResumeError, OSError) as exc:
                message = str(exc) if isinstance(exc, ResumeError) else \
                    f"--resume cannot open --output {self.args.output}: {exc.strerror}"
                self.sup.spider.terminate(message)
                raise BookkeepingError(message) from None
        if self.metadata is not None:
            self.metadata.measuring(self.plan.as_dict() if self.plan else None,
                                    engine.connection_count)
        self._start_progress()

    def _resume(self, connections):
        plan = self.plan = self.scan.plan(connections)
        done = plan.apply()
        log.info("--resume: %s holds %d complete targets (%d records kept); %d partial "
                 "records %s%s; measuring the others", self.args.output, plan.targets,
                 plan.kept, plan.dropped,
                 "removed" if plan.dropped else "to remove",
                 f", a torn last line of {self.scan.torn} bytes cut" if self.scan.torn else "")
        log.debug("--resume: output %s", done)
        fd = os.open(self.args.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
        self.sup.sink = self.sink = LineSink(fd)

    def _start_progress(self):
        args = self.args
        mode = choose_mode(getattr(args, "progress", True))
        source = None if args.input in _STDIN_NAMES else args.input
        engine = self.sup.spider.engine
        self.progress = Progress(self.counters, mode,
                                 getattr(args, "progress_interval", None) or LOG_SECONDS,
                                 input_path=source, label=getattr(args, "command", "run"),
                                 run_phase=engine.phase,
                                 jobs_finished=lambda: _jobs_finished(engine))
        self.progress.start()

    # ---- 3. the feeder ------------------------------------------------------------------------

    def feeder_step(self, jobs):
        """Feeder step: a resumed run skips the targets its output already has."""
        if self.plan is None:
            return jobs
        return self._skipping(jobs)

    def _skipping(self, jobs):
        yield from self.plan.skip_measured(jobs)
        left = self.plan.unmatched()
        if left and not self.sup.spider.stopping:
            log.warning("--resume: %d complete targets in %s are not in the target list (a "
                        "different --input than the interrupted run's?); their records are "
                        "kept", left, self.args.output)

    # ---- 4, 5. the end ------------------------------------------------------------------------

    def stop_progress(self):
        """Stop the ticker (its last state stays on a terminal); idempotent."""
        progress, self.progress = self.progress, None
        if progress is None:
            return
        progress.stop()
        if self.plan is not None:
            log.info("--resume: %d jobs skipped, their records were already in %s",
                     self.plan.skipped, self.args.output)

    def ended(self):
        """Write the metadata's last version (after restoring and closing): how it ended."""
        self.stop_progress()
        if self.metadata is None:
            return
        sup = self.sup
        status = sup.exit_status if sup.exit_status is not None else 1
        if self.plan is not None:
            self.metadata.segment["resumed"] = self.plan.as_dict()
        records = self.sink.lines if self.sink is not None else 0
        in_output = records + (self.plan.kept if self.plan is not None else 0)
        self.metadata.ended(status, self._reason(status), self.final_counters(), in_output)

    def _reason(self, status):
        sup = self.sup
        spider = sup.spider
        reason = sup.stop_reason
        if reason is None and spider is not None and spider.exception is not None:
            reason = str(spider.exception)
        if reason is None:
            reason = self.failure
        if reason is None and status == 1 and spider is not None and spider.engine.job_errors:
            reason = f"{spider.engine.job_errors} plugin errors"
        if reason is None and sup.exit_status is None:
            reason = "an unexpected error (see the log)"
        return reason

    # ---- counters -----------------------------------------------------------------------------

    def counters(self):
        """What the progress shows (read from the engine's own counters; any thread)."""
        sup = self.sup
        engine = sup.spider.engine if sup.spider is not None else None
        stats = sup.stats
        observer = engine.observer_runner.counters \
            if engine is not None and engine.observer_runner is not None else None
        return {"read": stats.jobs, "bad": stats.bad, "reading_done": self.reading_done,
                "skipped": self.plan.skipped if self.plan is not None else 0,
                "done": engine.completed_jobs if engine is not None else 0,
                "discarded": engine.discarded_jobs if engine is not None else 0,
                "plugin_errors": engine.job_errors if engine is not None else 0,
                "failed_connections": engine.failed_connections if engine is not None else 0,
                "drops": _drops(observer),
                "records": self.sink.lines if self.sink is not None else 0}

    def final_counters(self):
        """The counters for the metadata, at the end."""
        sup = self.sup
        now = self.counters()
        engine = sup.spider.engine if sup.spider is not None else None
        merger = engine.merger_state if engine is not None else None
        runner = engine.observer_runner if engine is not None else None
        counters = {"lines_read": sup.stats.lines, "jobs_read": now["read"],
                    "bad_rows": now["bad"],
                    "out_of_scope": getattr(sup.stats, "out_of_scope", 0),
                    "jobs_skipped_resume": now["skipped"], "jobs_completed": now["done"],
                    "jobs_not_started": now["discarded"], "lines_written": now["records"],
                    "unobserved_records": merger.unobserved if merger is not None else 0,
                    "plugin_errors": now["plugin_errors"],
                    "failed_connections": now["failed_connections"],
                    "capture_drops": now["drops"],
                    "observer": runner.counters if runner is not None else None}
        if sup.collector is not None and sup.collector.job_lines:
            counters["job_lines"] = sup.collector.lines
            counters["records_in_job_lines"] = sup.collector.records
        if getattr(sup, "locator", None) is not None:
            counters["locate"] = sup.locator.counters()
        return counters


def _jobs_finished(engine):
    """The finisher's own condition (tested under the phase's lock): the run takes no more jobs
    and none is in flight any more, or it abandons them."""
    phase = engine.phase.phase
    return phase >= ABORTING or (phase >= DRAINING and engine.active_workers == 0
                                 and engine._in_flight == 0)


def _refuse_input(path, input_stat):
    """Refuse an output that is the input file (the supervisor's check for a fresh run)."""
    try:
        found = os.stat(path)
    except OSError:
        return
    if input_stat is not None and (found.st_dev, found.st_ino) == (input_stat.st_dev,
                                                                   input_stat.st_ino):
        raise BookkeepingError(f"--output {path} is the input file: choose another --output")


def _drops(observer):
    """Packets the capture dropped (kernel and interface), or None when not known yet."""
    if not observer:
        return None
    return int(observer.get("dropped") or 0) + int(observer.get("ifdropped") or 0)
