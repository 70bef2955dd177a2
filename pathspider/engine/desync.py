"""The desynchronized spider model: no system-wide configuration, so each worker makes its
job's two connections back to back (the plugin's ``connect`` tells them apart by ``config``)."""

import logging

from pathspider.engine.spider import Spider

log = logging.getLogger("pathspider.engine.desync")


class DesynchronizedModel:
    """The engine's side of the desynchronized model: no configurator; each job's two
    connections are made back to back."""

    def __init__(self, engine):
        self.engine = engine

    def configurator(self):
        """Body of the configurator thread: nothing to configure."""
        log.debug("configurations are not synchronized")

    def stop(self):
        """Nothing to stop."""

    def connect_jobs(self, jobs):
        """Make both connections of each job; return the entries whose connects did not raise."""
        engine = self.engine
        started = []
        for entry in engine.prepare(jobs):
            if engine.connect_all([entry], 0) and engine.connect_all([entry], 1):
                started.append(entry)
        return started


class DesynchronizedSpider(Spider):
    """Both connections of a job are made by one worker, without any configurator."""

    model = DesynchronizedModel

    def config_zero(self):
        """Nothing to configure in the desynchronized model."""

    def config_one(self):
        """Nothing to configure in the desynchronized model."""
