"""The engine: the :class:`Spider` lifecycle shared by every spider model.

Threads and processes of a run, and what flows between them::

    add_job ─► jobqueue ─► workers (pre_connect, connect ×2, in the model's order)
                               │
                               ▼
                        completer pool (post_connect ×2) ─► resqueue ◄─ flow pump ◄─ Observer
                                                                 │                   (process)
                                                                 ▼
                                                   merger thread ─► merge() ─► outqueue

Everything blocks on queues, events or locks; nothing polls. The spider models
(:mod:`pathspider.engine.sync`, :mod:`pathspider.engine.desync`) supply ``connect_jobs`` (how
the two connections of a batch of jobs are made) and, for the synchronized model, the
configurator thread.
"""

import logging
import queue
import threading
import time

from pathspider.client import tcpclient
from pathspider.constants import NO_RESULT, QUEUE_SIZE, SHUTDOWN_SENTINEL
from pathspider.engine.completer import CompleterPool
from pathspider.engine.handoff import ObserverError, ObserverRunner
from pathspider.engine.merger import Merger

log = logging.getLogger("pathspider.engine.spider")

# Tags of the items on ``resqueue`` (the merger's single inbox).
_RESULTS = 0        # a tuple of plugin results
_FLOWS = 1          # a list of Observer flow records
_FLOWS_END = 2      # the Observer stream has ended
_RESULTS_END = 3    # every worker and completer has finished

#: How many ``post_connect`` threads may run per connect worker (see
#: :mod:`pathspider.engine.completer`).
COMPLETERS_PER_WORKER = 10

#: Most jobs a worker takes at once while connections are fast.
BATCH_MAX = 32


class DurationAverage:
    """Moving average of how long a plugin callback takes, to tell fast plugins from slow.

    Updated without a lock from many threads: a lost update only delays the average a little.
    Starts "slow", so the first jobs of every run are handled one by one.
    """

    FAST_SECONDS = 0.0005
    WEIGHT = 0.05

    def __init__(self):
        self.average = 1.0

    @property
    def fast(self):
        return self.average < self.FAST_SECONDS

    def add(self, seconds):
        self.average += (seconds - self.average) * self.WEIGHT


class Spider:
    """Base of every spider model; plugins subclass a model, not this class directly.

    ``worker_count`` connect workers, an Observer capturing on ``libtrace_uri``, and the
    plugin's options in ``args``. Subclasses provide ``config_zero``/``config_one``,
    ``connect``, ``post_connect``, ``create_observer`` and ``merge``.
    """

    #: True when ``post_connect`` only waits for progress that happens by itself (the kernel,
    #: a reactor thread): a completer then finishes a batch of jobs in the time of the slowest
    #: one, so started jobs are always handed over in batches. False lets the engine decide by
    #: how long ``post_connect`` takes: slow ones are handed over one job at a time.
    post_connect_overlaps = False

    def __init__(self, worker_count, libtrace_uri, args):
        self.args = args
        self.activated = True
        self.running = False
        self.stopping = False
        self.terminating = False
        self.worker_count = worker_count
        self.active_worker_count = 0
        self.active_worker_lock = threading.Lock()
        self.libtrace_uri = libtrace_uri

        self.jobqueue = queue.Queue(QUEUE_SIZE)
        self.resqueue = queue.Queue(QUEUE_SIZE)
        self.outqueue = queue.Queue(QUEUE_SIZE)

        self.observer = None
        self.observer_runner = None
        self.worker_threads = []
        self.configurator_thread = None
        self.merger_thread = None
        self.completers = None
        self.merger_state = None
        self.lock = threading.Lock()
        self.exception = None
        self.conn_timeout = None
        self.job_errors = 0
        self.discarding = False
        self.discarded_jobs = 0
        self._shutting_down = False
        self.connect_timing = DurationAverage()
        self.post_connect_timing = DurationAverage()
        self._done = threading.Event()

    # ---- the plugin's part ------------------------------------------------------------------

    def config_zero(self):
        """Apply the baseline (A) configuration system-wide."""
        raise NotImplementedError("Cannot register an abstract plugin")

    def config_one(self):
        """Apply the experimental (B) configuration system-wide."""
        raise NotImplementedError("Cannot register an abstract plugin")

    def pre_connect(self, job):
        """Run once per job before both connections; the result is passed on as ``pcs``."""
        return None

    def connect(self, job, pcs, config):
        """Make (or start) the connection for configuration ``config`` (0 or 1)."""
        raise NotImplementedError("Cannot register an abstract plugin")

    def post_connect(self, job, conn, pcs, config):
        """Finish the connection and return the result record, or ``NO_RESULT``."""
        raise NotImplementedError("Cannot register an abstract plugin")

    def create_observer(self):
        """Return the Observer (or a compatible object) for this measurement."""
        raise NotImplementedError("Cannot register an abstract plugin")

    def merge(self, flow, res):
        """Combine a flow (or ``NO_FLOW``) with a result and put the record on ``outqueue``."""
        raise NotImplementedError("Cannot register an abstract plugin")

    def restore_system_state(self):
        """Undo system-wide changes (sysctls, firewall rules). Called once at the end of a
        run, however it ends; plugins that change system state override this."""

    # ---- the model's part -------------------------------------------------------------------

    def configurator(self):
        """Body of the configurator thread (the synchronized model overrides it)."""

    def connect_jobs(self, jobs):
        """Make the connections of ``jobs``; return ``[job, pcs, conn0, conn1]`` entries of the
        jobs whose connects did not raise."""
        raise NotImplementedError

    def stop_configurator(self):
        """Ask the configurator thread to end (the synchronized model overrides it)."""

    # ---- 1.0 helpers ------------------------------------------------------------------------

    def tcp_connect(self, job):
        """Connect to ``(job[0], job[1])`` with ``conn_timeout``; never raises for network errors.

        Returns ``Connection(socket, local_port, state, tstart)``. The local port is the one
        the kernel chose also when the connection was refused or timed out, so the failed
        attempt still matches its observed SYN. On failure the socket is already closed.
        """
        if self.conn_timeout is None:
            raise RuntimeError("Plugin did not set TCP connect timeout.")
        return tcpclient.blocking_connect(job[0], job[1], self.conn_timeout)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self):
        """Start the Observer (waiting until it captures), the merger, configurator and workers.

        Raises :class:`pathspider.engine.handoff.ObserverError` if the Observer cannot start.
        """
        with self.lock:
            if not self.activated:
                raise RuntimeError("spider is not activated")
            self.running = True
            self.observer = self.create_observer()
            if self.observer is None:
                self.running = False
                raise ObserverError(f"{type(self).__name__}.create_observer() returned no "
                                    "observer (see the error logged above)")
            self.merger_state = Merger(self._merge_safely, reap_size=self._reap_size(),
                                       match_flows=getattr(self.observer, "emits_flows", True))
            self.observer_runner = ObserverRunner(self.observer, self._deliver_flows,
                                                  self._observer_failed)
            try:
                self.observer_runner.start()
            except ObserverError:
                self.running = False
                raise
            self.completers = CompleterPool(
                self._complete_jobs, max(1, self.worker_count) * COMPLETERS_PER_WORKER)
            self.merger_thread = self._thread(self.merger, "merger")
            self.configurator_thread = self._thread(self.configurator, "configurator")
            self.active_worker_count = self.worker_count
            self.worker_threads = [self._thread(self.worker, f"worker_{i}", i)
                                   for i in range(self.worker_count)]

    def add_job(self, job):
        """Queue a job (blocks while the queue is full); ignored once stopping."""
        if self.stopping:
            return
        self.jobqueue.put(job)

    def discard_queued_jobs(self):
        """Stop taking new jobs: queued jobs that no worker has started are skipped (counted
        in ``discarded_jobs``); jobs already started finish normally. For interruptions."""
        self.discarding = True
        self.stopping = True

    def shutdown(self):
        """Orderly stop after the last job: every queued job is finished and merged, the
        Observer flushes its flows, and ``SHUTDOWN_SENTINEL`` closes ``outqueue``."""
        with self.lock:
            if not self.running or self._shutting_down:
                return
            self._shutting_down = True
            self.stopping = True
        for _ in range(self.worker_count):
            self.jobqueue.put(SHUTDOWN_SENTINEL)
        current = threading.current_thread()
        for thread in self.worker_threads:
            if thread is not current:
                thread.join()
        self.stop_configurator()
        self.completers.close()
        self.resqueue.put((_RESULTS_END, None))
        self.observer_runner.request_stop()
        self.observer_runner.join()
        if self.merger_thread is not current:
            self.merger_thread.join()
        self.outqueue.join()
        self._finish()

    def terminate(self):
        """Fast stop after an error or a second interrupt: queued jobs are dropped, jobs in
        flight are abandoned, the Observer is killed, and ``outqueue`` is closed."""
        with self.lock:
            if self.terminating:
                return
            self.terminating = True
            self.stopping = True
        log.warning("terminating the run")
        self._drain(self.jobqueue)
        self.stop_configurator()
        if self.observer_runner is not None:
            self.observer_runner.kill()
        self._finish()

    def wait(self):
        """Block until the run has ended (``shutdown`` or ``terminate`` finished)."""
        self._done.wait()

    def exception_wrapper(self, target, *args, **kwargs):
        """Run ``target``; on an exception log it, remember the first one, and terminate."""
        try:
            target(*args, **kwargs)
        except Exception as exc:
            log.exception("unexpected error in %s", threading.current_thread().name)
            if self.exception is None:
                self.exception = exc
            self.terminate()

    # ---- threads ----------------------------------------------------------------------------

    def worker(self, worker_number):
        """Take jobs until the sentinel, make their connections, hand them to the completers.

        While connections prove fast (see :class:`DurationAverage`) a worker takes up to
        ``BATCH_MAX`` queued jobs at once and makes their connections in one pass through each
        configuration: with a system-wide switch between the passes, that is far fewer thread
        hand-offs per job. Slow connections are made one job at a time.
        """
        while True:
            jobs, stop = self._take_jobs()
            try:
                if jobs:
                    started = self.connect_jobs(jobs)
                    if started:
                        self._hand_over(started)
            finally:
                for _ in range(len(jobs) + stop):
                    self.jobqueue.task_done()
            if stop:
                break
        with self.active_worker_lock:
            self.active_worker_count -= 1

    def _take_jobs(self):
        """One job (blocking), plus more without blocking while connections are fast.
        Returns ``(jobs, stop)``; ``stop`` is true if this worker took its sentinel."""
        job = self.jobqueue.get()
        if isinstance(job, str) and job == SHUTDOWN_SENTINEL:
            return [], True
        if self.discarding:
            self.discarded_jobs += 1
            self.jobqueue.task_done()
            return [], False
        jobs = [job]
        if self.connect_timing.fast:
            get_nowait = self.jobqueue.get_nowait
            while len(jobs) < BATCH_MAX:
                try:
                    job = get_nowait()
                except queue.Empty:
                    break
                if isinstance(job, str) and job == SHUTDOWN_SENTINEL:
                    return jobs, True
                jobs.append(job)
        return jobs, False

    def _prepare(self, jobs):
        """``[job, pcs, None, None]`` for every job whose ``pre_connect`` succeeded."""
        prepared = []
        for job in jobs:
            try:
                prepared.append([job, self.pre_connect(job), None, None])
            except Exception:
                self._job_failed(job, "pre_connect")
        return prepared

    def _connect_all(self, prepared, config):
        """Make the ``config`` connection of every prepared job; return those that worked."""
        started = time.perf_counter()
        ok = []
        for entry in prepared:
            try:
                entry[2 + config] = self.connect(entry[0], entry[1], config)
            except Exception:
                self._job_failed(entry[0], f"connect (config {config})")
                continue
            ok.append(entry)
        if prepared:
            self.connect_timing.add((time.perf_counter() - started) / len(prepared))
        return ok

    def _hand_over(self, started):
        """Give started jobs to the completers: as one item while post_connect is fast or
        overlaps (see ``post_connect_overlaps``), else one item per job so that a slow target
        delays no other job."""
        if self.post_connect_overlaps or self.post_connect_timing.fast:
            self.completers.submit(started)
        else:
            for entry in started:
                self.completers.submit([entry])

    def _complete_jobs(self, entries):
        results = []
        for job, pcs, conn0, conn1 in entries:
            for config, conn in ((0, conn0), (1, conn1)):
                started = time.perf_counter()
                try:
                    res = self.post_connect(job, conn, pcs, config)
                except Exception:
                    self._job_failed(job, f"post_connect (config {config})")
                    continue
                finally:
                    self.post_connect_timing.add(time.perf_counter() - started)
                if res is not NO_RESULT:
                    results.append(res)
        if results:
            self.resqueue.put((_RESULTS, results))

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
        log.info("merger: %d records merged, %d without an observed flow, %d unmatched flows "
                 "forgotten", state.merged, state.unobserved, state.reaped_flows)

    # ---- internals --------------------------------------------------------------------------

    def _thread(self, target, name, *args):
        thread = threading.Thread(target=self.exception_wrapper, args=(target, *args),
                                  name=name, daemon=True)
        thread.start()
        return thread

    def _reap_size(self):
        return max(10000, self.worker_count * 200)

    def _deliver_flows(self, flows):
        if isinstance(flows, str) and flows == SHUTDOWN_SENTINEL:
            self.resqueue.put((_FLOWS_END, None))
        else:
            self.resqueue.put((_FLOWS, flows))

    def _merge_safely(self, flow, res):
        try:
            self.merge(flow, res)
        except Exception:
            self._job_failed(getattr(res, "ip", res), "merge")

    def _observer_failed(self, exc):
        if self.exception is None:
            self.exception = exc
        threading.Thread(target=self.terminate, name="terminator", daemon=True).start()

    def _job_failed(self, job, stage):
        self.job_errors += 1
        if self.job_errors <= 10:
            log.exception("plugin error in %s for job %r", stage, job)
        elif self.job_errors == 11:
            log.error("more plugin errors; counting them without tracebacks")

    def _finish(self):
        self.running = False
        self.outqueue.put(SHUTDOWN_SENTINEL)
        self._done.set()

    @staticmethod
    def _drain(q):
        while True:
            try:
                q.get_nowait()
                q.task_done()
            except queue.Empty:
                return
            except ValueError:
                return


class PluggableSpider:
    """Marker mixin of plugins: ``register_args`` adds the plugin's sub-command."""

    @staticmethod
    def register_args(subparsers):
        """Add an argparse sub-parser and call ``parser.set_defaults(spider=<class>)``."""
        raise NotImplementedError("Cannot register an abstract plugin")


__all__ = ["Spider", "PluggableSpider", "DurationAverage"]
