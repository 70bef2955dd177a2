"""The 1.0 plugin API: everything a PATHspider 1.0 plugin imports from ``pathspider.base``.

The engine lives in focused modules (:mod:`pathspider.spider` for the lifecycle,
:mod:`pathspider.sync` and :mod:`pathspider.desync` for the two spider models,
:mod:`pathspider.merger` for flow/result matching); this module keeps 1.0's names in 1.0's place.
"""

from pathspider.constants import (NO_FLOW, NO_RESULT, QUEUE_SIZE, QUEUE_SLEEP,
                                  SHUTDOWN_SENTINEL, Conn, Connection)
from pathspider.desync import DesynchronizedSpider
from pathspider.spider import PluggableSpider, Spider
from pathspider.sync import SemaphoreN, SynchronizedSpider
from pathspider.version import __version__

__all__ = ["Spider", "SynchronizedSpider", "DesynchronizedSpider", "PluggableSpider",
           "Conn", "Connection", "NO_FLOW", "NO_RESULT", "SHUTDOWN_SENTINEL", "SemaphoreN",
           "QUEUE_SIZE", "QUEUE_SLEEP", "__version__"]
