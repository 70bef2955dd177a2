"""The machinery of one run, kept off the plugin: threads, queues, counters and the ending.

A plugin is a subclass of a spider model, so everything the engine kept on ``self`` used to
share the plugin's namespace: a plugin helper that happened to be called ``_finish`` replaced
the engine's and the run hung. Now the plugin instance carries only the 1.0 API (see
:class:`pathspider.engine.spider.Spider`) and one attribute, ``engine``, this module's
:class:`Engine`, which holds everything else and calls the plugin's methods.

Threads and processes of a run, and what flows between them::

    add_job ─► jobqueue ─► workers (pre_connect, connect ×N, in the model's order)
                               │
                               ▼
               completers (post_connect ×N; reactor connections complete first)
                               │
                               ▼
                           resqueue ◄── flow pump ◄── Observer (process)
                               │
                               ▼
                 merger thread ─► merge() ─► outqueue ─► writer

Everything blocks on queues, events or conditions; nothing polls. The spider model
(:mod:`pathspider.engine.sync`, :mod:`pathspider.engine.desync`) decides how many connections
a job has, how those of a batch of jobs are made, and runs the configurator.

How a run ends is one state, the :class:`~pathspider.engine.lifecycle.RunPhase`, and one
thread, the finisher, that carries out the ending whatever asked for it: :meth:`Engine.shutdown`
(after the last job), :meth:`Engine.discard_queued_jobs` (a first interrupt),
:meth:`Engine.terminate` (a second interrupt, a failing engine thread, a dying Observer, a
failing output). Every ending merges and writes every result that was produced, then closes
``outqueue`` with ``SHUTDOWN_SENTINEL``; an aborted run stops waiting for jobs in flight and
bounds every remaining wait (see ``ABORT_SECONDS``).
"""

import itertools
import logging
import queue
import threading
import time

from pathspider.client import tcpclient
from pathspider.constants import NO_RESULT, QUEUE_SIZE, SHUTDOWN_SENTINEL
from pathspider.engine.completer import CompleterPool, ReadyCompleter
from pathspider.engine.handoff import ObserverError, ObserverRunner
from pathspider.engine.lifecycle import ABORTING, DRAINING, ENDED, JobQueue, RunPhase
from pathspider.engine.merger import Merger
from pathspider.engine.progress import failed_connections

log = logging.getLogger("pathspider.engine.machinery")

# Tags of the items on ``resqueue`` (the merger's single inbox).
_RESULTS = 0        # a list of plugin results
_FLOWS = 1          # a list of Observer flow records
_FLOWS_END = 2      # the Observer stream has ended
_RESULTS_END = 3    # no more results will be merged

#: How many ``post_connect`` threads may run per connect worker (see
#: :mod:`pathspider.engine.completer`). Connections that complete through the reactor never
#: hold one while they wait.
COMPLETERS_PER_WORKER = 10

#: Most jobs a worker takes at once while connections are fast.
BATCH_MAX = 32

#: Most jobs a worker takes at once when their connections complete by themselves (the
#: reactor's): ``connect`` only starts them, so a batch never waits for the network. Large
#: batches keep few workers busy at once: with a hundred workers taking 32 jobs each, every
#: system call of a connect handed the interpreter lock to another runnable worker. In
#: ``benchmarks/e2e.py`` (a), 256 gave about 12 % more jobs/s and 15 % less CPU per job than
#: 32. Each worker holds its batch's connections until the whole batch is started, so 100
#: workers × 256 jobs kept up to 51,000 connections in memory while the reactor (whose open
#: sockets are bounded) was behind; 64 bounds that to 12,800. The trade-off, measured on a
#: quiet machine (ecn, lab): 256 gave 2,921 jobs/s sustained (``e2e.py --repeat 4``) but 175 /
#: 163 MB (main / Observer) at 300k targets in ``benchmarks/memory.py``; 128 gave 2,536 jobs/s
#: and 139 / 145 MB; 64 gives 2,441-2,462 jobs/s and stays near 130 / 136 MB up to 1M targets,
#: inside the 150 MB bound per process that campaign runs need.
SELF_COMPLETING_BATCH_MAX = 64

#: Most seconds an ending waits for the Observer to flush its flows (an aborted run waits
#: ``ABORT_SECONDS``); past it the Observer is stopped and the run ends with what it has.
DRAIN_SECONDS = 60.0
#: Most seconds an aborted run waits for the Observer and then for the merger; jobs in
#: flight are not waited for at all.
ABORT_SECONDS = 3.0


class EngineError(RuntimeError):
    """The engine could not run (e.g. its threads could not be started)."""


class DurationAverage:
    """Moving average of how long a plugin callback takes, to tell fast plugins from slow.

    Updated from many threads under a lock (a few tens of nanoseconds, once per batch of
    calls, with the batch's average). Starts "slow", so the first jobs of every run are handled
    one by one (until their connections show they complete by themselves, see
    :meth:`Engine.worker`). Durations are wall-clock time, which includes waiting for the
    interpreter lock when many threads run.
    """

    FAST_SECONDS = 0.0005
    WEIGHT = 0.05

    def __init__(self):
        self.average = 1.0
        self._lock = threading.Lock()

    @property
    def fast(self):
        return self.average < self.FAST_SECONDS

    def add(self, seconds):
        with self._lock:
            self.average += (seconds - self.average) * self.WEIGHT


class RecordQueue(queue.Queue):
    """``outqueue``: counts the records put on it, so the engine can tell whether ``merge``
    put its record (1.0.1) or returned it (the 1.0 guide) — each is written once.

    The writer takes records in batches (:meth:`get_batch`, :meth:`tasks_done`): one lock
    round and one wake-up of a blocked ``merge`` for many records, instead of three lock
    rounds per record (``get``, ``task_done`` and the ``put`` notification).
    """

    def __init__(self, maxsize):
        super().__init__(maxsize)
        self.puts = 0

    def _put(self, item):                   # called with the queue's lock held
        self.puts += 1
        super()._put(item)

    def get_batch(self, most, block=True):
        """Up to ``most`` items in queue order, ending with ``SHUTDOWN_SENTINEL`` if it is
        among them; with ``block`` waits for the first, else returns ``[]`` if none is
        queued. Call :meth:`tasks_done` with their number once they are processed."""
        with self.not_empty:
            if block:
                while not self._qsize():
                    self.not_empty.wait()
            items = []
            pop = self.queue.popleft
            while self.queue and len(items) < most:
                item = pop()
                items.append(item)
                if type(item) is str and item == SHUTDOWN_SENTINEL:
                    break
            if items:
                self.not_full.notify(len(items))
            return items

    def tasks_done(self, count):
        """``task_done()`` for ``count`` items at once."""
        if count <= 0:
            return
        with self.all_tasks_done:
            unfinished = self.unfinished_tasks - count
            if unfinished < 0:
                raise ValueError("task_done() called too many times")
            if unfinished == 0:
                self.all_tasks_done.notify_all()
            self.unfinished_tasks = unfinished


class Engine:
    """Runs the spider ``spider`` (a plugin instance): see the module docstring.

    ``spider``'s 1.0 attributes (``jobqueue``, ``resqueue``, ``outqueue``, ``observer``, the
    thread attributes, ``running``, ``stopping``, ``terminating``, ``exception``,
    ``active_worker_count``) are kept up to date for plugins and tools that read them.
    """

    def __init__(self, spider):
        self.spider = spider
        self.phase = RunPhase()
        self.jobqueue = spider.jobqueue = JobQueue(QUEUE_SIZE)
        self.resqueue = spider.resqueue = queue.Queue(QUEUE_SIZE)
        self.outqueue = spider.outqueue = RecordQueue(QUEUE_SIZE)
        self.model = None
        self.connection_count = 2           # connections per job; the model decides at start
        self.observer_runner = None
        self.completers = None
        self.ready_completer = None
        self.merger_state = None
        self.finisher_thread = None
        self.merger_thread = None
        self.job_errors = 0
        self.completed_jobs = 0             # jobs whose post_connects ran (progress)
        self.failed_connections = 0         # results that failed or timed out (progress)
        self.discarded_jobs = 0
        self.active_workers = 0
        self.connect_timing = DurationAverage()
        self.post_connect_timing = DurationAverage()
        self.connects_complete_by_themselves = False    # the last batch's connections did
        self.exception = None
        self._counter_lock = threading.Lock()
        self._in_flight = 0                 # jobs handed over and not yet completed
        self._results_closed = False        # no result is merged any more
        self._done = threading.Event()
        self.job_collector = None           # --format jobs: see write_job_lines

    @property
    def stopping(self):
        """True once the run takes no more jobs."""
        return self.phase.phase >= DRAINING

    @property
    def terminating(self):
        """True once the run abandons its jobs in flight."""
        return self.phase.phase >= ABORTING

    # ---- starting ---------------------------------------------------------------------------

    def start(self):
        """Start the Observer (waiting until it captures), the merger, configurator, workers
        and the finisher thread.

        Raises :class:`pathspider.engine.handoff.ObserverError` if the Observer cannot start,
        :class:`EngineError` if the threads cannot be started.
        """
        spider = self.spider
        with spider.lock:
            if not spider.activated:
                raise RuntimeError("spider is not activated")
            spider.running = True
            self.model = spider.model(self)
            self.connection_count = self.model.connection_count
            observer = spider.observer = spider.create_observer()
            if observer is None:
                spider.running = False
                raise ObserverError(f"{type(spider).__name__}.create_observer() returned no "
                                    "observer (see the error logged above)")
            merge = self._merge_safely
            if self.job_collector is not None:
                merge = self.job_collector.merging(merge)
            self.merger_state = Merger(merge, reap_size=self._reap_size(),
                                       match_flows=getattr(observer, "emits_flows", True))
            self.observer_runner = ObserverRunner(observer, self._deliver_flows,
                                                  self._observer_failed)
            try:
                self.observer_runner.start()
            except ObserverError:
                spider.running = False
                raise
            tcpclient.raise_fd_limit()
            self.completers = CompleterPool(
                self._complete_jobs, max(1, spider.worker_count) * COMPLETERS_PER_WORKER)
            self.ready_completer = ReadyCompleter(self._complete_jobs)
            try:
                self._start_threads()
            except RuntimeError as exc:     # e.g. "can't start new thread"
                self.terminate(f"the engine's threads could not be started: {exc}")
                raise EngineError(f"cannot start {spider.worker_count} workers: {exc} (use "
                                  "fewer workers, -w)") from exc

    def _start_threads(self):
        spider = self.spider
        self.finisher_thread = self._thread(self._finish_run, "finisher")
        self.merger_thread = spider.merger_thread = self._thread(self.merger, "merger")
        spider.configurator_thread = self._thread(self.model.configurator, "configurator")
        for i in range(spider.worker_count):
            spider.worker_threads.append(self._thread(self.worker, f"worker_{i}", i))
            with self.phase.cond:
                self.active_workers += 1
                spider.active_worker_count = self.active_workers

    def write_job_lines(self, collector):
        """Write one line per job instead of one record per connection (``--format jobs``):
        ``collector`` is a :class:`pathspider.engine.jobs.JobCollector`. Call before
        :meth:`start`."""
        self.job_collector = collector
        collector.attach(self)

    # ---- asking for an ending ---------------------------------------------------------------

    def add_job(self, job):
        """Queue a job (blocks while the queue is full); ignored once the run is stopping
        (counted in ``discarded_jobs``)."""
        if self.stopping or not self.jobqueue.put(job):
            self._count("discarded_jobs")

    def end_input(self):
        """No more jobs will be added: finish the queued and started ones, then end the run."""
        self._advance(DRAINING, "end of input")
        self.jobqueue.close()

    def discard_queued_jobs(self, reason="interrupted"):
        """Stop taking jobs: queued jobs that no worker has started are dropped (counted in
        ``discarded_jobs``); jobs already started finish normally. For a first interrupt."""
        self._advance(DRAINING, reason)
        self._count("discarded_jobs", self.jobqueue.close(discard=True))

    def shutdown(self):
        """Orderly stop after the last job (1.0): see :meth:`Spider.shutdown`."""
        if not self.spider.running:
            return
        self.end_input()
        self._done.wait()
        if threading.current_thread() is not self.merger_thread:
            self.outqueue.join()

    def terminate(self, reason="terminated"):
        """Fast stop: see :meth:`Spider.terminate`. Does not wait."""
        if self._advance(ABORTING, reason):
            log.warning("abandoning the jobs in flight (%s)", reason)
        self._count("discarded_jobs", self.jobqueue.close(discard=True))
        if self.model is not None:
            self.model.stop()
        if self.finisher_thread is None:        # never started: close the output here
            self._close_output()

    def wait(self, timeout=None):
        """Block until the run has ended (``outqueue`` closed); True if it has."""
        return self._done.wait(timeout)

    def exception_wrapper(self, target, *args, **kwargs):
        """Run ``target``; on an exception log it, remember the first one, and terminate."""
        try:
            target(*args, **kwargs)
        except Exception as exc:
            name = threading.current_thread().name
            log.exception("unexpected error in %s", name)
            if self.exception is None:
                self.exception = self.spider.exception = exc
            self.terminate(f"error in {name}: {type(exc).__name__}: {exc}")

    # ---- the ending -------------------------------------------------------------------------

    def _finish_run(self):
        """Body of the finisher thread: wait for an ending to be asked for, then carry it out
        (see the module docstring). Whatever happens, ``outqueue`` is closed at the end."""
        phase = self.phase
        try:
            phase.wait_until(lambda: phase.phase >= DRAINING)
            phase.wait_until(lambda: phase.phase >= ABORTING or (
                self.active_workers == 0 and self._in_flight == 0))
            aborting = phase.phase >= ABORTING
            self.model.stop()
            self.completers.close(wait=not aborting)
            self.ready_completer.close(wait=not aborting)
            self._results_closed = True
            self.resqueue.put((_RESULTS_END, None))
            self._stop_observer(ABORT_SECONDS if phase.phase >= ABORTING else DRAIN_SECONDS)
            self.merger_thread.join(ABORT_SECONDS if phase.phase >= ABORTING else None)
            if self.merger_thread.is_alive():
                log.error("the merger did not finish within %s s; ending without it",
                          ABORT_SECONDS)
        finally:
            self._close_output()

    def _stop_observer(self, timeout):
        runner = self.observer_runner
        runner.request_stop()
        if not runner.join(timeout):
            log.warning("the Observer did not flush its flows within %g s; stopping it "
                        "(results without their flow are written as unobserved)", timeout)
            runner.kill()
            runner.join(ABORT_SECONDS)

    def _close_output(self):
        aborted = self.terminating              # before ENDED, which is past ABORTING
        self.spider.running = False
        self._advance(ENDED)
        try:
            if self.job_collector is not None:
                # jobs an aborted merger left incomplete, jobs held for --locate
                self.job_collector.flush(abort=aborted)
        finally:
            self.outqueue.put(SHUTDOWN_SENTINEL)
        self._done.set()

    def _advance(self, phase, reason=None):
        moved = self.phase.advance(phase, reason)
        self.spider.stopping = self.stopping
        self.spider.terminating = self.terminating
        return moved

    # ---- threads ----------------------------------------------------------------------------

    def worker(self, worker_number):
        """Take jobs until the queue is closed and empty, make their connections, hand them
        over to be completed.

        While connections prove fast (see :class:`DurationAverage`) a worker takes up to
        ``BATCH_MAX`` queued jobs at once, and up to ``SELF_COMPLETING_BATCH_MAX`` while they
        complete by themselves (see :meth:`_hand_over`: ``connect`` only started them, so it
        never waited for the network), and makes their connections in one pass through each
        configuration: with a system-wide switch between the passes, that is far fewer thread
        hand-offs per job. Slow connections are made one job at a time.

        The measured duration alone could not tell: it is wall-clock time, and with a hundred
        workers contending for the interpreter even a non-blocking connect of one job takes
        milliseconds, so one-job batches kept themselves slow (in ``benchmarks/e2e.py`` most
        batches held one or two jobs, and every job cost several more thread hand-offs).
        """
        try:
            while True:
                if self.connects_complete_by_themselves:
                    batch = SELF_COMPLETING_BATCH_MAX
                else:
                    batch = BATCH_MAX if self.connect_timing.fast else 1
                jobs = self.jobqueue.take(batch)
                if not jobs:
                    return
                if self.terminating:
                    self._count("discarded_jobs", len(jobs))
                    continue
                started = self.model.connect_jobs(jobs)
                if started:
                    self._hand_over(started)
                # a worker waiting for its next batch must not keep this one alive: with a
                # hundred workers taking 256 jobs each, that held 25,000 finished jobs (their
                # connections, sockets and replies) in memory
                jobs = started = None
        finally:
            with self.phase.cond:
                self.active_workers -= 1
                self.spider.active_worker_count = self.active_workers
                self.phase.cond.notify_all()

    def prepare(self, jobs):
        """``[job, pcs, None, ...]`` (one ``None`` per connection, see
        ``connection_count``) for every job whose ``pre_connect`` succeeded."""
        prepared = []
        empty = [None] * self.connection_count
        for job in jobs:
            try:
                prepared.append([job, self.spider.pre_connect(job), *empty])
            except Exception:
                self._job_failed(job, "pre_connect")
        return prepared

    def connect_all(self, prepared, config, connect=None):
        """Make the ``config`` connection of every prepared job (with ``connect``, by default
        the plugin's ``connect(job, pcs, config)``); return those that worked."""
        connect = connect or self.spider.connect
        started = time.perf_counter()
        ok = []
        for entry in prepared:
            try:
                entry[2 + config] = connect(entry[0], entry[1], config)
            except Exception:
                self._job_failed(entry[0], f"connect (config {config})")
                continue
            ok.append(entry)
        if prepared:
            self.connect_timing.add((time.perf_counter() - started) / len(prepared))
        return ok

    def _hand_over(self, started):
        """Give started jobs to the completers.

        A job whose connections complete by themselves (objects with ``add_done_callback``,
        such as the reactor's) is handed to the ready completer when the last of them
        completes, so no thread waits for it. Others are handed over at once: as one item
        while ``post_connect`` is fast or overlaps (``post_connect_overlaps``), else one item
        per job, so that a slow target delays no other job. Whether every job of the batch
        completed by itself decides ``connects_complete_by_themselves``, which lets workers
        take whole batches (see :meth:`worker`).
        """
        with self.phase.cond:
            self._in_flight += len(started)
        waiting = []
        for entry in started:
            if _completes_by_itself(entry):
                self._when_completed(entry)
            else:
                waiting.append(entry)
        self.connects_complete_by_themselves = not waiting
        if not waiting:
            return
        if self.spider.post_connect_overlaps or self.post_connect_timing.fast:
            self.completers.submit(waiting)
        else:
            for entry in waiting:
                self.completers.submit([entry])

    def _when_completed(self, entry):
        """Hand ``entry`` to the ready completer once each of its connections has completed."""
        conns = [conn for conn in entry[2:] if conn is not None]
        countdown = itertools.count(1)

        def completed(_):
            if next(countdown) == len(conns):
                self.ready_completer.submit(entry)

        for conn in conns:
            conn.add_done_callback(completed)

    def _complete_jobs(self, entries):
        """Run ``post_connect`` for every connection of each entry; hand the results of every
        job to the merger together (a job's records are written all or none)."""
        post_connect = self.spider.post_connect
        tickets = self.job_collector        # None unless one line per job is written
        started = time.perf_counter()
        failed = 0
        try:
            results = []
            for job, pcs, *conns in entries:
                made = [] if tickets is not None else None
                for config, conn in enumerate(conns):
                    try:
                        res = post_connect(job, conn, pcs, config)
                    except Exception:
                        self._job_failed(job, f"post_connect (config {config})")
                        continue
                    if res is not NO_RESULT:
                        results.append(res)
                        if made is not None:
                            made.append((config, res))
                if made:
                    tickets.issue(job, made, len(conns))
            self.post_connect_timing.add((time.perf_counter() - started)
                                         / max(1, self.connection_count * len(entries)))
            failed = failed_connections(results)
            if results and not self._results_closed:
                self.resqueue.put((_RESULTS, results))
        finally:
            with self.phase.cond:
                self._in_flight -= len(entries)
                self.completed_jobs += len(entries)
                self.failed_connections += failed
                if not self._in_flight:
                    self.phase.cond.notify_all()

    def merger(self):
        """Merge flows and results until both streams have ended, then the leftovers."""
        get = self.resqueue.get
        state = self.merger_state
        ended = set()
        while len(ended) < 2:
            tag, item = get()
            if tag == _RESULTS:
                for res in item:
                    state.add_result(res)
            elif tag == _FLOWS:
                for flow in item:
                    state.add_flow(flow)
            else:
                ended.add(tag)
        state.finish()
        state.log_summary()

    # ---- internals --------------------------------------------------------------------------

    def _thread(self, target, name, *args):
        thread = threading.Thread(target=self.exception_wrapper, args=(target, *args),
                                  name=name, daemon=True)
        thread.start()
        return thread

    def _reap_size(self):
        return max(10000, self.spider.worker_count * 200)

    def _deliver_flows(self, flows):
        if isinstance(flows, str) and flows == SHUTDOWN_SENTINEL:
            self.resqueue.put((_FLOWS_END, None))
        else:
            self.resqueue.put((_FLOWS, flows))

    def _merge_safely(self, flow, res):
        """The plugin's ``merge``: its record is written whether ``merge`` put it on
        ``outqueue`` (1.0.1) or returned it (the 1.0 guide) — once either way."""
        outqueue = self.outqueue
        puts = outqueue.puts
        try:
            record = self.spider.merge(flow, res)
        except Exception:
            self._job_failed(_describe_result(res), "merge")
            return
        if record is not None and outqueue.puts == puts:
            outqueue.put(record)

    def _observer_failed(self, exc):
        if self.exception is None:
            self.exception = self.spider.exception = exc
        self.terminate(f"the Observer failed: {exc}")

    def _job_failed(self, job, stage):
        errors = self._count("job_errors")
        if errors <= 10:
            log.exception("plugin error in %s for job %r", stage, job)
        elif errors == 11:
            log.error("more plugin errors; counting them without tracebacks")

    def _count(self, counter, n=1):
        """Add ``n`` to the shared counter attribute ``counter``; return its new value."""
        with self._counter_lock:
            value = getattr(self, counter) + n
            setattr(self, counter, value)
        return value


def _completes_by_itself(entry):
    """True if every connection of ``entry`` tells when it has completed (a reactor job)."""
    conns = [conn for conn in entry[2:] if conn is not None]
    return bool(conns) and all(callable(getattr(conn, "add_done_callback", None))
                               for conn in conns)


def _describe_result(res):
    """The target of a result, for an error message (results are objects or dicts)."""
    if isinstance(res, dict):
        return res.get("ip", res)
    return getattr(res, "ip", res)
