"""Observations in the Path Transparency Observatory's (PTO) observation set format.

An observation set file is newline-delimited JSON: JSON objects are the set's metadata, JSON
arrays its observations, ``[set id, start time, end time, path, condition]`` plus an optional
value, times in RFC 3339, the path a space-separated list of path elements (an IPv4 address,
an IPv6 address in brackets, ``*`` for any number of unknown hops), the condition a
hierarchical name such as ``ecn.connectivity.works``. Sources: the PTO's own description of
the format and its API (``doc/OBSETS.md`` and ``doc/API.md`` of mami-project/pto3-go) and its
normalizer of PATHspider results (mami-project/pto3-ecn, ``normalize_pathspider``), whose
conventions this follows: one observation per condition of a target, the path
``source * target``, a condition's value after its first ``:``
(``mss.option.local.value:1460`` is condition ``mss.option.local.value``, value ``1460``).
See docs/report.md.
"""
import datetime
import ipaddress

from pathspider.version import __version__

#: The observation set id written (the PTO fills in its own on upload).
SET_ID = "0"
UNKNOWN_HOPS = "*"


def path_element(address):
    """An address as a PTO path element (IPv6 in brackets), or None if it is none."""
    try:
        parsed = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return None
    return str(parsed) if parsed.version == 4 else f"[{parsed.compressed}]"


def rfc3339(text):
    """A record's time (``2024-05-01 12:00:00.123456``, 1.0's text, taken as UTC; or ISO 8601
    with an offset) in RFC 3339 UTC with microseconds (``2024-05-01T12:00:00.123456Z``), or
    None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"     # one width: compares as text


def split_value(condition):
    """``(name, value or None)``: the part after a condition's first ``:`` is its value."""
    name, colon, value = condition.partition(":")
    return (name, value) if colon else (condition, None)


def time_span(records):
    """``(start, end)`` in RFC 3339: the earliest ``tstart`` and latest ``tstop`` of the
    records (as ``--format jobs`` writes a job's ``time``), None where none is readable."""
    starts = [t for t in (rfc3339(r.get("tstart")) for r in records) if t]
    stops = [t for t in (rfc3339(r.get("tstop")) for r in records) if t]
    return (min(starts) if starts else None), (max(stops) if stops else None)


def target_path(key, records):
    """``source * target``: the vantage's address (the records' ``sip``), ``*``, the
    target's address; ``* target`` without a usable ``sip``; None without a target address."""
    target = path_element(key[0])
    if target is None:
        return None
    sources = [path_element(r.get("sip")) for r in records if r.get("sip")]
    source = next((s for s in sources if s), None)
    return " ".join(([source] if source else []) + [UNKNOWN_HOPS, target])


def observations(key, baseline, experiment, conds):
    """The observation rows of one target (empty without a path, times or conditions)."""
    records = [r for r in (baseline, experiment) if isinstance(r, dict)]
    path = target_path(key, records)
    start, end = time_span(records)
    if path is None or start is None:
        return []
    end = max(end or start, start)
    rows = []
    for condition in dict.fromkeys(c for c in conds or () if isinstance(c, str) and c):
        name, value = split_value(condition)
        rows.append([SET_ID, start, end, path, name] + ([value] if value is not None else []))
    return rows


def metadata(conditions, sources, start, end, plugin, analyzer=None, owner=None):
    """The observation set's metadata object: ``_sources``, ``_analyzer``, ``_conditions``
    (the PTO requires these three), ``_time_start``/``_time_end``, ``_owner`` if given, and
    what made it (values as strings, as the PTO keeps them)."""
    meta = {"_sources": list(sources),
            "_analyzer": analyzer or f"pathspider {__version__} export --pto",
            "_conditions": sorted(conditions),
            "plugin": plugin, "pathspider_version": __version__}
    if start:
        meta["_time_start"], meta["_time_end"] = start, end
    if owner:
        meta["_owner"] = owner
    return meta
