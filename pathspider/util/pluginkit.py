"""Former path of the plugin kit; it lives in :mod:`pathspider.client.pluginkit`.

Kept so that plugins written against the earlier documentation still import.
"""

from pathspider.client.pluginkit import add_timeout_option, merged_record, positive_seconds

__all__ = ["add_timeout_option", "merged_record", "positive_seconds"]
