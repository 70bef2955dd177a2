"""The desynchronized spider model: no system-wide configuration, so each worker makes its
job's two connections back to back (the plugin's ``connect`` tells them apart by ``config``)."""

import logging

from pathspider.engine.spider import Spider

log = logging.getLogger("pathspider.engine.desync")


class DesynchronizedSpider(Spider):
    """Both connections of a job are made by one worker, without any configurator."""

    def config_zero(self):
        """Nothing to configure in the desynchronized model."""

    def config_one(self):
        """Nothing to configure in the desynchronized model."""

    def configurator(self):
        log.debug("configurations are not synchronized")

    def connect_jobs(self, jobs):
        started = []
        for entry in self._prepare(jobs):
            if self._connect_all([entry], 0) and self._connect_all([entry], 1):
                started.append(entry)
        return started
