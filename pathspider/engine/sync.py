"""The synchronized spider model: every connection runs while its configuration is in force.

1.0 moved all workers in lock-step with semaphores and 0.5 s sleeps: idle workers kept the
configurator flipping, and a phase lasted as long as its slowest connection. Here a
:class:`ConfigGate` alternates the two configurations *on demand*:

* A worker that wants configuration ``c`` either enters at once (``c`` is in force and nobody
  waits for the other one) or joins the cohort waiting for ``c``.
* The configurator switches only when no connection is in progress and some worker waits for
  the other configuration; then it admits that whole cohort at once. Workers with no job take no
  part, so an idle spider does nothing at all.
* A cohort is admitted as a unit and later arrivals wait for the next turn, so neither
  configuration can starve the other.

Only ``connect`` runs inside the gate. ``post_connect`` (where answers are awaited) runs later
in the completer pool, so a slow target holds a configuration only as long as its ``connect``
call takes.
"""

import logging
import threading
import types

from pathspider.engine.spider import Spider

log = logging.getLogger("pathspider.engine.sync")


class SemaphoreN(threading.BoundedSemaphore):
    """1.0's counting semaphore that starts empty and moves many tokens at once."""

    def __init__(self, value):
        self._max_value = value
        super().__init__(value)
        self.empty()

    def __str__(self):
        return f"SemaphoreN with a maximum value of {self._max_value}."

    def acquire_n(self, value=1, blocking=True, timeout=None):
        """Acquire ``value`` tokens; returns the result of the last acquire."""
        result = None
        for _ in range(value):
            result = self.acquire(blocking=blocking, timeout=timeout)
        return result

    def release_n(self, value=1):
        """Release ``value`` tokens."""
        for _ in range(value):
            self.release()

    def empty(self):
        """Take every token without blocking."""
        while self.acquire(blocking=False):
            pass


class ConfigGate:
    """Alternates two system-wide configurations between cohorts of connecting workers."""

    def __init__(self, count=2):
        if count < 1:
            raise ValueError(f"a synchronized spider needs at least one configuration, not {count}")
        self._cond = threading.Condition(threading.Lock())
        self._active = None            # configuration in force (None before the first)
        self._switching = False        # the configurator is applying a configuration
        self._inflight = 0             # connections running in the active configuration
        # [wake-up lock, admitted] of waiting workers, per configuration
        self._cohorts = tuple([] for _ in range(count))
        self._stopped = False
        self._local = threading.local()
        self.flips = 0                 # configurations applied

    @property
    def active(self):
        """The configuration in force, or None."""
        return self._active

    def enter(self, config):
        """Block until ``config`` is in force and this worker is admitted to it; False if the
        gate was stopped instead (the run is aborting: make no connection)."""
        with self._cond:
            if self._stopped:
                return False
            if (self._active == config and not self._switching
                    and not self._others_wait(config)):
                self._inflight += 1
                return True
            slot = [self._wakeup_lock(), False]     # [lock, admitted?]
            self._cohorts[config].append(slot)
            if self._inflight == 0 and not self._switching:
                self._cond.notify()
        slot[0].acquire()              # released by the configurator (admitted) or by stop
        return slot[1]

    def leave(self, config):
        """The connection made in ``config`` has returned."""
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0 and self._others_wait(config):
                self._cond.notify()

    def stop(self):
        """End ``run`` and release every waiting worker unadmitted (their ``enter`` returns
        False); later ``enter`` calls return False at once."""
        with self._cond:
            self._stopped = True
            for cohort in self._cohorts:
                for lock, _ in cohort:
                    lock.release()
                cohort.clear()
            self._cond.notify()

    def run(self, apply):
        """Configurator loop: ``apply(config)`` whenever a cohort waits for the other one."""
        cond = self._cond
        cond.acquire()
        try:
            while True:
                target = self._next_config()
                while target is None and not self._stopped:
                    cond.wait()
                    target = self._next_config()
                if self._stopped:
                    return
                if target != self._active:
                    self._switching = True
                    cond.release()
                    try:
                        apply(target)
                    finally:
                        cond.acquire()
                        self._switching = False
                    self._active = target
                    self.flips += 1
                admitted = self._cohorts[target][:]
                self._cohorts[target].clear()
                self._inflight += len(admitted)
                for slot in admitted:
                    slot[1] = True
                    slot[0].release()
        finally:
            cond.release()

    def _next_config(self):
        """The configuration to admit next, or None if nothing can happen now."""
        if self._switching or self._inflight:
            return None
        count = len(self._cohorts)
        first = 0 if self._active is None else self._active + 1
        for step in range(count):      # round robin from the one after the active one
            config = (first + step) % count
            if self._cohorts[config]:
                return config
        return None

    def _others_wait(self, config):
        """True if a worker waits for a configuration other than ``config``."""
        cohorts = self._cohorts
        if len(cohorts) == 2:
            return bool(cohorts[1 - config])
        return any(cohort for c, cohort in enumerate(cohorts) if c != config)

    def _wakeup_lock(self):
        lock = getattr(self._local, "lock", None)
        if lock is None:
            lock = self._local.lock = threading.Lock()
            lock.acquire()
        return lock


class SynchronizedModel:
    """The engine's side of the synchronized model: the gate, the configurator loop, and how
    a batch of jobs gets one connection per configuration."""

    def __init__(self, engine):
        self.engine = engine
        self.configurations = configuration_functions(engine.spider)
        self.connection_count = len(self.configurations)
        self.gate = ConfigGate(self.connection_count)

    def configurator(self):
        """Body of the configurator thread."""
        self.gate.run(self._apply_config)

    def stop(self):
        """End the configurator and release every worker waiting at the gate."""
        self.gate.stop()

    def connect_jobs(self, jobs):
        """Make the connections of ``jobs``, each in its configuration; return the
        ``[job, pcs, conn0, conn1, ...]`` entries of the jobs whose connects did not raise."""
        engine = self.engine
        prepared = engine.prepare(jobs)
        for config in range(self.connection_count):
            if not prepared:
                break
            if not self.gate.enter(config):
                return []               # aborting: the jobs are abandoned
            try:
                prepared = engine.connect_all(prepared, config)
            finally:
                self.gate.leave(config)
        return prepared

    def _apply_config(self, config):
        log.debug("applying configuration %d", config)
        self.configurations[config]()


def configuration_functions(spider):
    """The spider's configurations as callables without arguments, in order.

    PATHspider 2.0's ``configurations = [config_a, config_b, ...]`` (functions of the class
    body, bound methods, or method names; one or more) when the class defines it, else 1.0's
    ``config_zero`` and ``config_one``.
    """
    listed = getattr(spider, "configurations", None)
    if listed is None:
        return [spider.config_zero, spider.config_one]
    if isinstance(listed, (str, bytes)) or not listed:
        raise TypeError(f"{type(spider).__name__}.configurations must be a non-empty list of "
                        f"configuration functions, not {listed!r}")
    return [bound_to(spider, item, "configurations") for item in listed]


def bound_to(spider, item, attribute):
    """``item`` (a function of the class body, a bound method or a method name) as a callable
    bound to ``spider``; raises TypeError naming ``attribute`` for anything else."""
    if isinstance(item, str):
        item = getattr(spider, item, None)
    elif isinstance(item, types.FunctionType):
        item = item.__get__(spider, type(spider))
    if not callable(item):
        raise TypeError(f"{type(spider).__name__}.{attribute} holds {item!r}, which is not a "
                        "function of the plugin")
    return item


class SynchronizedSpider(Spider):
    """Runs each job's connection ``c`` while configuration ``c`` is in force (1.0: 0 and 1,
    applied by ``config_zero``/``config_one``; 2.0: one per entry of ``configurations``);
    ``post_connect`` runs afterwards, unsynchronized.
    """

    #: PATHspider 2.0: the configuration functions, in order (None: 1.0's two).
    configurations = None

    model = SynchronizedModel
