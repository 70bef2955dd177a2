"""Count a run's outcomes per group as the targets stream by: the plugin's conditions and its
summary columns, per lab class, IP version and rank bucket.

Only counts are kept (a few thousand integers whatever the size of the run), so a report of a
million records needs no more memory than one of ten. Conditions come from the results file
(and so from whoever wrote it): only strings count, each at most :data:`MAX_CONDITION_CHARS`
long, and at most :data:`MAX_CONDITIONS` distinct ones per plugin; the rest are counted
together as :data:`OVERFLOW`.
"""
import collections
import ipaddress

#: Distinct conditions counted one by one, per plugin; further ones count as OVERFLOW.
MAX_CONDITIONS = 400
#: Longer conditions are cut to this length.
MAX_CONDITION_CHARS = 120
#: What a condition beyond MAX_CONDITIONS counts as.
OVERFLOW = "(other).conditions"

#: Upper bounds (inclusive) of the rank buckets and their labels; larger ranks: ">1M".
RANK_BUCKETS = ((10, "1–10"), (100, "11–100"), (1_000, "101–1k"), (10_000, "1k–10k"),
                (100_000, "10k–100k"), (1_000_000, "100k–1M"))
RANK_ORDER = tuple(label for _, label in RANK_BUCKETS) + (">1M", "no rank")
FAMILY_ORDER = ("IPv4", "IPv6", "not an address")


def rank_bucket(key):
    """The rank bucket of a target key: its rank (text or number) 1–10, 11–100, ... ."""
    try:
        rank = int(str(key[3]).strip())
    except (TypeError, ValueError):
        return "no rank"
    if rank < 1:
        return "no rank"
    for bound, label in RANK_BUCKETS:
        if rank <= bound:
            return label
    return ">1M"


def family(key):
    """``IPv4`` or ``IPv6`` for the target key's address (``not an address`` otherwise)."""
    try:
        return f"IPv{ipaddress.ip_address(str(key[0]).strip()).version}"
    except ValueError:
        return "not an address"


def lab_class(class_of):
    """Group function: the lab impairment class of the target's address (``other`` outside
    every class), with ``class_of`` the lab plan's classifier."""
    def group(key):
        try:
            return class_of(key[0]) or "other"
        except (TypeError, ValueError):
            return "other"
    return group


def split_condition(condition):
    """``(dimension, value)`` of a condition: ``ecn.connectivity.works`` is
    ``("ecn.connectivity", "works")``, ``mss.option.local.value:1460`` is
    ``("mss.option.local.value", "1460")``; a condition without a dot is its own dimension."""
    if ":" in condition:
        dimension, _, value = condition.partition(":")
        return dimension, value
    dimension, dot, value = condition.rpartition(".")
    return (dimension, value) if dot else (condition, condition)


Grouping = collections.namedtuple("Grouping", "name function order")


class GroupCounts:
    """The counts of one group: targets, conditions, summary columns."""

    __slots__ = ("targets", "conditions", "columns")

    def __init__(self):
        self.targets = 0
        self.conditions = collections.Counter()
        self.columns = collections.Counter()


class Tally:
    """The counts of one plugin's targets, per grouping and group.

    ``groupings``: :class:`Grouping` tuples (name, key -> group label, preferred row order).
    """

    def __init__(self, plugin, groupings):
        self.plugin = plugin
        self.groupings = list(groupings)
        self.targets = 0
        self.counts = {g.name: {} for g in self.groupings}
        self.known = {}                 # condition -> (dimension, value), in order seen

    def add(self, key, baseline, experiment, conds):
        """Count one target (as :func:`pathspider.cli.results.targets` yields it)."""
        self.targets += 1
        conditions = self._clean(conds)
        columns = [header for header, predicate in self.plugin.summary_columns
                   if _holds(predicate, conds, baseline, experiment)]
        for grouping in self.groupings:
            group = grouping.function(key)
            counts = self.counts[grouping.name].get(group)
            if counts is None:
                counts = self.counts[grouping.name][group] = GroupCounts()
            counts.targets += 1
            counts.conditions.update(conditions)
            counts.columns.update(columns)

    def _clean(self, conds):
        """The distinct conditions of a target, capped (see the module docstring)."""
        clean = set()
        for cond in conds if isinstance(conds, (list, tuple)) else ():
            if not isinstance(cond, str) or not cond:
                continue
            cond = cond[:MAX_CONDITION_CHARS]
            if cond not in self.known:
                if len(self.known) >= MAX_CONDITIONS:
                    cond = OVERFLOW
                self.known.setdefault(cond, split_condition(cond))
            clean.add(cond)
        return clean

    def groups(self, grouping):
        """``[(group, GroupCounts)]`` of a grouping, in its preferred order (others last)."""
        order = next(g.order for g in self.groupings if g.name == grouping)
        rows = self.counts[grouping]
        rank = {name: i for i, name in enumerate(order)}
        return sorted(rows.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))

    def dimensions(self):
        """``{dimension: [(value, condition), ...]}`` in order of first appearance."""
        found = {}
        for condition, (dimension, value) in self.known.items():
            found.setdefault(dimension, []).append((value, condition))
        return found


def _holds(predicate, conds, baseline, experiment):
    """A summary column's predicate; one that fails on odd input counts as not holding."""
    try:
        return bool(predicate(conds, baseline, experiment))
    except Exception:                                   # hostile or odd records
        return False
