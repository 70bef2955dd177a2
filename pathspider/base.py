"""The 1.0 plugin API: everything a PATHspider 1.0 plugin imports from ``pathspider.base``.

Only re-exports: the engine lives in :mod:`pathspider.engine` (:mod:`~pathspider.engine.spider`
for the lifecycle, :mod:`~pathspider.engine.sync` and :mod:`~pathspider.engine.desync` for the
two spider models), the shared values in :mod:`pathspider.constants`. ``utc_now_text`` (the
1.0 timestamp text of ``tstart``/``tstop``) is an addition for plugins; so is PATHspider 2.0's
:class:`~pathspider.engine.single.SingleSpider`, and 2.0's packet-forging model
:class:`~pathspider.engine.forge.ForgeSpider` (with :class:`~pathspider.engine.forge.ForgeSkip`).
"""

from pathspider.client.tcpclient import utc_now_text
from pathspider.constants import (NO_FLOW, NO_RESULT, QUEUE_SIZE, QUEUE_SLEEP,
                                  SHUTDOWN_SENTINEL, Conn, Connection)
from pathspider.engine.desync import DesynchronizedSpider
from pathspider.engine.forge import ForgeSkip, ForgeSpider
from pathspider.engine.single import SingleSpider
from pathspider.engine.spider import PluggableSpider, Spider
from pathspider.engine.sync import SemaphoreN, SynchronizedSpider
from pathspider.version import __version__

__all__ = ["Spider", "SynchronizedSpider", "DesynchronizedSpider", "SingleSpider", "PluggableSpider",
           "Conn", "Connection", "NO_FLOW", "NO_RESULT", "SHUTDOWN_SENTINEL", "SemaphoreN",
           "QUEUE_SIZE", "QUEUE_SLEEP", "utc_now_text", "__version__", "ForgeSpider",
           "ForgeSkip"]
