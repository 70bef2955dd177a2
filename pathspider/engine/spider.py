"""The 1.0 spider API: the :class:`Spider` base of every spider model, and
:class:`PluggableSpider`.

A plugin subclasses a model (:class:`~pathspider.engine.sync.SynchronizedSpider`,
:class:`~pathspider.engine.desync.DesynchronizedSpider`) and this module keeps the instance's
namespace to the 1.0 API: the plugin's methods, the lifecycle methods, the 1.0 attributes, and
``engine`` — the :class:`~pathspider.engine.machinery.Engine` that runs everything else
(threads, queues, counters, the ending), so no engine internal can be replaced by a plugin
helper of the same name. :data:`RESERVED_NAMES` lists what a plugin must not redefine.
"""

import threading

from pathspider.client import tcpclient
from pathspider.engine.machinery import (BATCH_MAX, COMPLETERS_PER_WORKER,  # noqa: F401
                                         DurationAverage, Engine, EngineError)

#: Names the engine sets on a spider instance (1.0's attributes, plus ``engine``). A plugin
#: must not define them in its class or assign them itself; ``config_*``, ``pre_connect``,
#: ``connect``, ``post_connect``, ``create_observer``, ``merge``, ``register_args`` and
#: ``restore_system_state`` are the plugin's to define.
RESERVED_NAMES = frozenset((
    "engine", "args", "activated", "running", "stopping", "terminating", "worker_count",
    "active_worker_count", "active_worker_lock", "libtrace_uri", "jobqueue", "resqueue",
    "outqueue", "observer", "worker_threads", "configurator_thread", "merger_thread", "lock",
    "exception"))


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

    #: The spider model: the class that makes a batch of jobs' connections and runs the
    #: configurator (set by :class:`SynchronizedSpider` and :class:`DesynchronizedSpider`).
    model = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        clashes = sorted(name for name in vars(cls) if name in RESERVED_NAMES)
        if clashes:
            raise TypeError(f"plugin class {cls.__name__} defines {', '.join(clashes)}, which "
                            "the engine sets on every spider; rename "
                            f"{'it' if len(clashes) == 1 else 'them'} (see docs/plugindev.md, "
                            "'Names the engine uses')")

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
        self.observer = None
        self.worker_threads = []
        self.configurator_thread = None
        self.merger_thread = None
        self.lock = threading.Lock()
        self.exception = None
        self.conn_timeout = None
        self.engine = Engine(self)          # also sets jobqueue, resqueue and outqueue

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

    # ---- lifecycle (1.0): the engine does the work ----------------------------------------

    def start(self):
        """Start the Observer (waiting until it captures) and the engine's threads.

        Raises :class:`pathspider.engine.handoff.ObserverError` if the Observer cannot start,
        :class:`EngineError` if the threads cannot be started.
        """
        if not isinstance(vars(self).get("engine"), Engine):
            raise EngineError(f"{type(self).__name__} replaced spider.engine, which the engine "
                              "uses; rename the plugin's attribute (see docs/plugindev.md)")
        self.engine.start()

    def add_job(self, job):
        """Queue a job (blocks while the queue is full); ignored once the run is stopping."""
        self.engine.add_job(job)

    def shutdown(self):
        """Orderly stop after the last job (1.0): every queued job is finished and merged, the
        Observer flushes its flows, ``SHUTDOWN_SENTINEL`` closes ``outqueue``; returns once
        the consumer of ``outqueue`` has taken everything."""
        self.engine.shutdown()

    def terminate(self, reason="terminated"):
        """Fast stop (after an error or a second interrupt): queued jobs are dropped, jobs in
        flight are abandoned, every result already produced is still merged and written, and
        ``outqueue`` is closed within a few seconds. Does not wait; see :meth:`wait`."""
        self.engine.terminate(reason)

    def wait(self, timeout=None):
        """Block until the run has ended (``outqueue`` closed); True if it has."""
        return self.engine.wait(timeout)

    def end_input(self):
        """No more jobs will be added: finish the queued and started ones, then end the run
        (what :meth:`shutdown` starts, without waiting)."""
        self.engine.end_input()

    def discard_queued_jobs(self, reason="interrupted"):
        """Stop taking jobs; jobs already started finish normally (a first interrupt)."""
        self.engine.discard_queued_jobs(reason)

    # ---- 1.0 thread bodies, kept for code that calls them ---------------------------------

    def worker(self, worker_number):
        """Body of a connect worker thread."""
        self.engine.worker(worker_number)

    def configurator(self):
        """Body of the configurator thread."""
        self.engine.model.configurator()

    def merger(self):
        """Body of the merger thread."""
        self.engine.merger()

    def exception_wrapper(self, target, *args, **kwargs):
        """Run ``target``; on an exception log it, remember it, and terminate the run."""
        self.engine.exception_wrapper(target, *args, **kwargs)


class PluggableSpider:
    """Marker mixin of plugins: ``register_args`` adds the plugin's sub-command."""

    @staticmethod
    def register_args(subparsers):
        """Add an argparse sub-parser and call ``parser.set_defaults(spider=<class>)``."""
        raise NotImplementedError("Cannot register an abstract plugin")


__all__ = ["Spider", "PluggableSpider", "RESERVED_NAMES", "EngineError"]
