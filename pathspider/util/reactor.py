"""Former path of the shared connection reactor; it lives in :mod:`pathspider.client.reactor`.

Kept so that plugins written against the earlier documentation still import.
"""

from pathspider.client.reactor import MAX_OPEN, Job, Reactor, shared

__all__ = ["MAX_OPEN", "Job", "Reactor", "shared"]
