"""The values the parts of pathspider pass between them, with their 1.0 names and meanings.

Every part may import this module (it imports nothing of pathspider): the engine puts
``SHUTDOWN_SENTINEL`` on its queues and the Observer ends its flow stream with it; the client
and the plugins report ``Conn`` states in ``Connection`` tuples; the merger passes ``NO_FLOW``.
1.0 plugins import them from :mod:`pathspider.base`, which re-exports them.
"""

import collections
import enum

#: Bound of every queue between the engine's threads and the Observer process.
QUEUE_SIZE = 1000

#: 1.0 polled its queues with this sleep. The engine blocks instead; the constant stays for
#: plugins that imported it.
QUEUE_SLEEP = 0.5

#: Marks the end of a stream on the job, result, flow and output queues (a string, as in 1.0,
#: because third-party observers compare against it with ``==``).
SHUTDOWN_SENTINEL = "SHUTDOWN_SENTINEL"

#: Returned by ``post_connect`` to say "no record for this configuration".
NO_RESULT = None

#: Passed to ``merge`` as the flow when no observed flow matched a result.
NO_FLOW = None


class Conn(enum.Enum):
    """Outcome of a connection attempt (1.0 values)."""
    OK = 0          #: connected
    FAILED = 1      #: refused, unreachable or another socket error
    TIMEOUT = 2     #: no answer within the connection timeout
    SKIPPED = 3     #: not attempted (e.g. the baseline failed)


#: Returned by ``tcp_connect``: the socket, the local (source) port the kernel chose, a
#: :class:`Conn` state and the UTC start time as ``str(datetime)``.
Connection = collections.namedtuple("Connection", ["client", "port", "state", "tstart"])
