"""``noop``: a benchmark-only plugin that makes no connection and captures nothing.

It lives outside the package (``benchmarks/plugins``) so that plugin discovery finds it only
when a benchmark puts that tree on ``PYTHONPATH`` (``benchmarks/memory.py`` does). Every job
goes through the whole engine (feeder, workers, configuration gate, completers, merger,
writer) and yields two records of about the size of an ``ecn`` record, each merged with
``NO_FLOW``: the dummy Observer emits no flows, so results are merged at once. What a run of
it costs is therefore what the engine costs, without the network or the capture.
"""

import collections

from pathspider.base import NO_FLOW, PluggableSpider, SynchronizedSpider
from pathspider.observer.dummy import Observer as DummyObserver

Result = collections.namedtuple("Result", ["ip", "rport", "port", "rank", "host", "config"])


class NoOp(SynchronizedSpider, PluggableSpider):
    """Connect returns at once; each job yields two records (one per configuration)."""

    name = "noop"
    description = "benchmark only: no connection, no capture, two records per job"

    def config_zero(self):
        """Nothing to switch."""

    def config_one(self):
        """Nothing to switch."""

    def connect(self, job, pcs, config):
        """No connection: the configuration is the 'connection'."""
        return config

    def post_connect(self, job, conn, pcs, config):
        """A result naming a made-up local port per configuration."""
        return Result(job[0], job[1], 32768 + config, job[3], job[2], config)

    def create_observer(self):
        return DummyObserver()

    def merge(self, flow, res):
        """A record with the fields an ``ecn`` record has, all from the result."""
        return {"dip": res.ip, "dp": res.rport, "sp": res.port, "rank": res.rank,
                "host": res.host, "config": res.config, "observed": flow is not NO_FLOW,
                "connstate": True, "tstart": None, "tstop": None, "spdr_state": 0}

    @staticmethod
    def register_args(subparsers):
        parser = subparsers.add_parser("noop", help=NoOp.description)
        parser.set_defaults(spider=NoOp)
