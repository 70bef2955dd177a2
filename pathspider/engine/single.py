"""PATHspider 2.0's single-connection model: one connection per job, no configurations.

For measurements that compare what was sent with what came back on one connection (``mss``:
the MSS option sent against the one received), not two configurations.
``connect(job, pcs, config)`` and ``post_connect(job, conn, pcs, config)`` are the 1.0
methods; ``config`` is always 0, and each job yields one record.
"""

from pathspider.engine.desync import DesynchronizedSpider


class SingleSpider(DesynchronizedSpider):
    """One connection per job, made by the plugin's ``connect``."""

    connections = ["connect"]
