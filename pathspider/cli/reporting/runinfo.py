"""The run's metadata file (``pathspider --metadata FILE``), read defensively.

The file is written by the run (version, plugin, options, vantage, start and end, counters,
how it ended), but the report reads whatever JSON object it holds and shows its keys as they
are: a missing, truncated (the run was killed), oversized or odd file is reported in the page
instead of stopping the report.
"""
import json
import logging

log = logging.getLogger("pathspider.cli.reporting.runinfo")

#: Larger files are not read (a metadata file is a few kilobytes).
MAX_BYTES = 1 << 20


def read_metadata(path):
    """``(metadata dict or None, problem text or None)`` of the file at ``path``."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    if len(data) > MAX_BYTES:
        return None, f"{path} is larger than {MAX_BYTES} bytes; not read"
    try:
        value = json.loads(data.decode("utf-8", errors="replace"))
    except ValueError as exc:
        return None, f"{path} is not JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"{path} holds a JSON {type(value).__name__}, not an object"
    return value, None


def plugin_named(metadata):
    """The plugin name the metadata gives (``plugin``: a name, or an object with ``name``)."""
    value = (metadata or {}).get("plugin")
    if isinstance(value, dict):
        value = value.get("name") or value.get("command")
    return value if isinstance(value, str) else None
