"""The desynchronized spider model: no system-wide configuration, so each worker makes its
job's connections back to back.

1.0 plugins make two connections and tell them apart by ``config`` in ``connect(job, pcs,
config)``. PATHspider 2.0 plugins may list their connection functions instead,
``connections = [conn_a, conn_b, ...]`` (one or more): connection ``c`` is made by the ``c``-th
function, called as ``fn(job, pcs, config)`` or, 2.0's signature, ``fn(job, config)``.
"""

import inspect
import logging

from pathspider.engine.spider import Spider
from pathspider.engine.sync import bound_to

log = logging.getLogger("pathspider.engine.desync")


class DesynchronizedModel:
    """The engine's side of the desynchronized model: no configurator; each job's
    connections are made back to back."""

    def __init__(self, engine):
        self.engine = engine
        self.connectors = connection_functions(engine.spider)
        self.connection_count = len(self.connectors)

    def configurator(self):
        """Body of the configurator thread: nothing to configure."""
        log.debug("configurations are not synchronized")

    def stop(self):
        """Nothing to stop."""

    def connect_jobs(self, jobs):
        """Make every connection of each job; return the entries whose connects did not raise."""
        engine = self.engine
        started = []
        for entry in engine.prepare(jobs):
            for config, connect in enumerate(self.connectors):
                if not engine.connect_all([entry], config, connect):
                    break
            else:
                started.append(entry)
        return started


def connection_functions(spider):
    """One ``fn(job, pcs, config)`` per connection of a job, in order.

    The plugin's ``connect``, twice, unless the class lists ``connections`` (PATHspider 2.0;
    functions of the class body, bound methods or method names). A listed function that takes
    ``(job, config)`` is called without ``pcs``.
    """
    listed = getattr(spider, "connections", None)
    if listed is None:
        return [spider.connect] * 2
    if isinstance(listed, (str, bytes)) or not listed:
        raise TypeError(f"{type(spider).__name__}.connections must be a non-empty list of "
                        f"connection functions, not {listed!r}")
    return [_with_pcs(bound_to(spider, item, "connections")) for item in listed]


def _with_pcs(connect):
    """``connect`` as ``fn(job, pcs, config)``, whichever of the two signatures it has."""
    try:
        parameters = inspect.signature(connect).parameters.values()
    except (TypeError, ValueError):
        return connect
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    if len(positional) == 2 and not varargs:
        return lambda job, pcs, config: connect(job, config)
    return connect


class DesynchronizedSpider(Spider):
    """A job's connections are made by one worker, back to back, without any configurator."""

    #: PATHspider 2.0: the connection functions, in order (None: ``connect`` twice).
    connections = None

    model = DesynchronizedModel

    def config_zero(self):
        """Nothing to configure in the desynchronized model."""

    def config_one(self):
        """Nothing to configure in the desynchronized model."""
