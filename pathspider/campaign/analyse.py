"""Where an effect sits: near the target (every vantage sees it) or near one vantage.

For each target and each condition the plugin derives from its records (the plugin's
``conditions``, exactly as ``pathspider summary`` computes them, :mod:`pathspider.cli.results`),
the vantages that measured the target, those that *saw* the condition and those that *reached*
the target (a connection of the target connected: ``connstate``, or a
``*.connectivity.works|broken|transient`` condition) give the attribution:

* ``target``: every vantage that reached the target sees the condition (when none reached it:
  every vantage that measured it) — the effect is on the target's side of the paths;
* ``vantage:<name>``: only that vantage sees it, and at least one other vantage that reached
  the target does not — the effect is on that vantage's side;
* ``mixed``: anything else (several but not all vantages).

With a single vantage that reached the target, ``target`` wins: one vantage cannot tell.
"""
import collections
import logging

from pathspider.cli import results

log = logging.getLogger("pathspider.campaign.analyse")

_REACHED_SUFFIXES = (".connectivity.works", ".connectivity.broken", ".connectivity.transient")


def reached(baseline, experiment, conditions):
    """True if any connection to the target connected."""
    if any(rec is not None and rec.get("connstate") for rec in (baseline, experiment)):
        return True
    return any(cond.endswith(_REACHED_SUFFIXES) for cond in conditions)


def attribute(measured, seen, reach):
    """The attribution of one condition of one target (see the module docstring).

    ``measured``: vantages that measured the target; ``seen``: those whose conditions hold
    it; ``reach``: those that reached the target.
    """
    reference = set(reach) or set(measured)
    seen = set(seen)
    if reference <= seen:
        return "target"
    if len(seen) == 1:
        return "vantage:" + next(iter(seen))
    return "mixed"


def per_target(record_sets, plugin):
    """``{key: {vantage: (conditions, reached)}}`` in order of first appearance.

    ``record_sets``: ``{vantage: iterable of records}`` (records and job lines)."""
    table = collections.OrderedDict()
    for vantage, items in record_sets.items():
        for key, baseline, experiment, conds in results.targets(items, plugin):
            conds = [c for c in conds if isinstance(c, str)]
            slot = table.setdefault(_canonical(key), {})
            if vantage in slot:                 # a target listed twice: merge what was seen
                old_conds, old_reached = slot[vantage]
                conds = sorted(set(old_conds) | set(conds))
                slot[vantage] = (conds, old_reached or reached(baseline, experiment, conds))
            else:
                slot[vantage] = (conds, reached(baseline, experiment, conds))
    return table


def _canonical(key):
    """A target key that is the same whichever format (flows or jobs) it came from."""
    dip, dp, host, rank = key
    return (dip, int(dp) if isinstance(dp, str) and dp.isdigit() else dp, host or None,
            None if rank in (None, "") else str(rank))


def analyse(record_sets, plugin, vantages, class_of=None):
    """Yield one record per target and condition: ``dip``, ``dp``, ``host``, ``rank``
    (``class`` too with ``class_of``), ``condition``, ``vantages`` (that measured it),
    ``seen_by``, ``reached_by``, ``not_measured_by`` and ``attribution``."""
    for key, slots in per_target(record_sets, plugin).items():
        measured = [v for v in vantages if v in slots]
        reach = [v for v in measured if slots[v][1]]
        conditions = sorted({c for v in measured for c in slots[v][0]})
        for condition in conditions:
            seen = [v for v in measured if condition in slots[v][0]]
            row = {"dip": key[0], "dp": key[1], "host": key[2], "rank": key[3]}
            if class_of is not None:
                row["class"] = _class(class_of, key[0])
            row.update(condition=condition, vantages=measured, seen_by=seen, reached_by=reach,
                       not_measured_by=[v for v in vantages if v not in slots],
                       attribution=attribute(measured, seen, reach))
            yield row


def _class(class_of, address):
    try:
        return class_of(address) or "other"
    except ValueError:
        return "other"


def tally(rows):
    """``{(group, condition): Counter(attribution -> targets)}`` of analysed rows (group: the
    row's ``class``, else ``all``)."""
    table = collections.OrderedDict()
    for row in rows:
        key = (row.get("class", "all"), row["condition"])
        table.setdefault(key, collections.Counter())[row["attribution"]] += 1
    return table
