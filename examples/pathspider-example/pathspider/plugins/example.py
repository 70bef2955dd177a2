"""The example plugin of the PATHspider 1.0 plugin guide, made runnable.

It keeps the guide's shape (a SynchronizedSpider with no-op configurations, a simple observer,
a merge that marks flows observed or not) and repairs what the guide's text could not run:
``self.tcp_connect`` instead of a bare ``tcp_connect``, a record with all six fields and the
*local* port (the merger matches results on target address and local port), a connection
timeout, the observer given its capture URI, and ``parser.set_defaults(spider=Example)`` so
the sub-command selects the plugin. ``merge`` returns the final record, as the guide says (a
1.0.1-style ``self.outqueue.put(flow)`` works too).
"""

import collections
import logging

from pathspider.base import SynchronizedSpider
from pathspider.base import PluggableSpider
from pathspider.base import NO_FLOW
from pathspider.base import Conn

from pathspider.observer import simple_observer

SpiderRecord = collections.namedtuple("SpiderRecord", ["ip", "rport", "port",
                                                       "host", "config",
                                                       "connstate"])


class Example(SynchronizedSpider, PluggableSpider):
    """An example PATHspider plugin."""

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = args.timeout

    def config_zero(self):
        logger = logging.getLogger("pathspider.plugins.example")
        logger.debug("Configuration zero")

    def config_one(self):
        logger = logging.getLogger("pathspider.plugins.example")
        logger.debug("Configuration one")

    def connect(self, job, pcs, config):
        return self.tcp_connect(job)

    def post_connect(self, job, conn, pcs, config):
        rec = SpiderRecord(job[0], job[1], conn.port, job[2], config,
                           conn.state == Conn.OK)
        if conn.state == Conn.OK:
            conn.client.close()
        return rec

    def create_observer(self):
        logger = logging.getLogger("pathspider.plugins.example")
        try:
            return simple_observer(self.libtrace_uri)
        except Exception:
            logger.error("Observer would not start")
            return None

    def merge(self, flow, res):
        if flow == NO_FLOW:
            flow = {"dip": res.ip,
                    "sp": res.port,
                    "dp": res.rport,
                    "observed": False}
        else:
            flow['observed'] = True
        flow['host'] = res.host
        flow['config'] = res.config
        flow['connstate'] = res.connstate
        return flow

    @staticmethod
    def register_args(subparsers):
        parser = subparsers.add_parser('example', help="Example starting point for development")
        parser.add_argument("--timeout", default=5, type=int,
                            help="The timeout to use for attempted connections in seconds "
                                 "(Default: 5)")
        parser.set_defaults(spider=Example)
