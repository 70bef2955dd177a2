"""Reading a run's results: records and job lines, targets, groups. Shared by ``pathspider
summary``, ``pathspider report`` and ``pathspider export``.

Both output formats are read, told apart line by line (so a file of either, or a mix, works):
records of ``--format flows`` (one per connection, with ``config``) are paired per target (the
baseline has ``config`` 0, the experiment 1); a line of ``--format jobs`` (one per job, with
``flow_results``) is one target already, its ``conditions`` are the ones the run wrote (the
plugin's ``conditions`` are asked only when the line has none), and its baseline and experiment
are its records with ``config`` 0 and 1 (or the first and second, without ``config``).

Everything streams: a target is handed on as soon as its records are complete, so the memory
used depends on how far apart a target's records are in the file, not on its size (a run
writes a target's records close together). A target whose experiment record is missing (the
TFO experiment is skipped when its baseline failed; a single-connection plugin such as ``mss``
has none) is interpreted with ``None`` in its place.
"""
import collections
import json
import logging

log = logging.getLogger("pathspider.cli.results")

#: Targets whose records are still incomplete, at most: beyond, the oldest is handed on as it
#: is (its records are further apart in the file than any run writes them).
PAIRING_WINDOW = 50_000


def declares_summary(plugin):
    """True if the plugin class says how to summarise its results: its own ``command_name``
    (set in the class itself, so that a subclass registering another command does not stand
    in for its parent), ``summary_columns`` and ``conditions``."""
    return (isinstance(vars(plugin).get("command_name"), str)
            and getattr(plugin, "summary_columns", None) is not None
            and callable(getattr(plugin, "conditions", None)))


def summary_plugins(load_plugins):
    """``{command name: plugin class}`` of the plugins ``load_plugins()`` finds that declare a
    summary (see :func:`declares_summary`)."""
    plugins, _ = load_plugins()
    return {plugin.command_name: plugin for plugin in plugins if declares_summary(plugin)}


def is_job_line(record):
    """True for a line of ``--format jobs`` (one job with its ``flow_results``)."""
    return isinstance(record, dict) and isinstance(record.get("flow_results"), list)


def read_records(stream, name="results"):
    """Yield the JSON records (``--format flows``) and job lines (``--format jobs``) of an
    ndjson stream; bad lines are warned and skipped."""
    for lineno, line in enumerate(stream, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            log.warning("%s line %d: not JSON (%s); skipped", name, lineno, exc)
            continue
        if not isinstance(record, dict) or ("config" not in record
                                            and not is_job_line(record)):
            log.warning("%s line %d: not a result record; skipped", name, lineno)
            continue
        yield record


def read_files(paths):
    """Yield the records and job lines of every file of ``paths`` in turn (see
    :func:`read_records`); a file that cannot be opened raises OSError."""
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as stream:
            yield from read_records(stream, path)


def target_key(record):
    """What identifies a target across its two records: ``(address, port, host, rank)``."""
    return (record.get("dip"), record.get("dp"), record.get("host"), record.get("rank"))


def job_key(line):
    """What identifies the target of a job line (as :func:`target_key` for a record)."""
    return (line.get("dip"), line.get("dp"), line.get("domain"), line.get("rank"))


def job_sides(line):
    """``(baseline, experiment)`` of a job line: its records by ``config`` (by position
    without one); a missing one is None."""
    records = [rec for rec in line["flow_results"] if isinstance(rec, dict)]
    sides = [None, None]
    for position, record in enumerate(records):
        config = record.get("config", position)
        slot = 1 if config else 0
        if sides[slot] is None:
            sides[slot] = record
    return sides[0], sides[1]


def job_target(line, plugin):
    """``(key, baseline, experiment, conditions)`` of a job line: its records (see
    :func:`job_sides`), its written conditions (else the plugin's)."""
    baseline, experiment = job_sides(line)
    conds = line.get("conditions")
    if not isinstance(conds, list):
        conds = plugin.conditions(baseline, experiment)
    return job_key(line), baseline, experiment, conds


def group_function(kind, by_family=False, class_of=None):
    """Map a target key to its group label.

    ``kind`` is ``lab`` (``class_of(address)``, the caller's classifier, gives the class name,
    or None / ValueError for an address outside every class: ``other``), ``host`` or anything
    else (one group, ``all``).
    """
    if kind == "lab":
        def base(key):
            try:
                return class_of(key[0]) or "other"
            except ValueError:
                return "other"
    elif kind == "host":
        def base(key):
            return key[2] or "-"
    else:
        def base(key):
            return "all"
    if not by_family:
        return base
    return lambda key: f"{base(key)} {'v6' if ':' in (key[0] or '') else 'v4'}"


def order_groups(table, names):
    """``table`` with its rows in the order of ``names`` (IPv4 before IPv6 within a name),
    groups not in ``names`` last."""
    def rank(item):
        name, _, family = item[0].partition(" ")
        return (names.index(name) if name in names else len(names)), family
    return collections.OrderedDict(sorted(table.items(), key=rank))


def connections_per_target(plugin):
    """How many records a target of ``plugin`` has: the length of its ``connections`` list
    (PATHspider 2.0's models: one for ``mss``), else two (1.0's baseline and experiment)."""
    listed = getattr(plugin, "connections", None)
    return len(listed) if isinstance(listed, (list, tuple)) and listed else 2


def targets(items, plugin, first_seen=None, window=PAIRING_WINDOW):
    """``(key, baseline, experiment, conditions)`` for every target of ``items`` (records and
    job lines, see the module docstring), as soon as it is complete.

    ``first_seen(key, is_job)``, if given, is called when a target is first met, before it is
    complete (so that a caller can order what it counts by first appearance).
    """
    pairs = pair_records(_records_only(items, plugin, first_seen),
                         connections_per_target(plugin), first_seen, window)
    for key, baseline, experiment in pairs:
        if key is _JOB:
            yield baseline                          # a job line's target, already complete
        else:
            yield key, baseline, experiment, plugin.conditions(baseline, experiment)


_JOB = object()


def _records_only(items, plugin, first_seen):
    """``items`` with each job line replaced by a ready ``(_JOB, target)`` marker."""
    for item in items:
        if is_job_line(item):
            target = job_target(item, plugin)
            if first_seen is not None:
                first_seen(target[0], True)
            yield _JOB, target
        else:
            yield item


def pair_records(records, connections=2, first_seen=None, window=PAIRING_WINDOW):
    """Yield ``(key, baseline, experiment)`` per target as soon as its records are complete;
    a missing side is None.

    Repeated targets are paired in order (the n-th baseline with the n-th experiment). With
    ``connections`` 1 every record is a target of its own. At most ``window`` targets wait
    for their other record (the oldest is handed on incomplete beyond it); those still
    waiting at the end are handed on in order of first appearance. ``(_JOB, x)`` markers pass
    through in order.
    """
    for _, key, baseline, experiment in _pairs(records, connections, first_seen, window):
        yield key, baseline, experiment


def pairs_in_order(records):
    """``[(key, baseline, experiment)]`` of :func:`pair_records` in order of each target's
    first appearance, a repeated target's pairs together (holds all of them: for small inputs
    and tests)."""
    found = sorted(_pairs(records, 2, None, PAIRING_WINDOW), key=lambda item: item[0])
    first = {}
    for serial, key, _, _ in found:
        first.setdefault(key, serial)
    found.sort(key=lambda item: first[item[1]])     # stable: a key's pairs stay in order
    return [item[1:] for item in found]


def _pairs(records, connections, first_seen, window):
    """:func:`pair_records`, each target with the serial number of its first record."""
    waiting = _Waiting()
    for serial, record in enumerate(records):
        if isinstance(record, tuple):
            yield serial, record[0], record[1], None
            continue
        slot = 1 if record.get("config") else 0
        key = target_key(record)
        if connections != 1:
            done = waiting.complete(key, slot, record)
            if done is not None:
                yield done[0], key, done[1][0], done[1][1]
                continue
        if first_seen is not None:
            first_seen(key, False)
        if connections == 1:
            yield (serial, key, record, None) if slot == 0 else (serial, key, None, record)
            continue
        waiting.add(serial, key, slot, record)
        if len(waiting) > window:
            first, old, pair = waiting.pop_oldest()
            log.warning("a target's records are more than %d targets apart; %s handed on "
                        "without its other record", window, old[0])
            yield first, old, pair[0], pair[1]
    while len(waiting):
        first, key, pair = waiting.pop_oldest()
        yield first, key, pair[0], pair[1]


class _Waiting:
    """Targets waiting for their other record, oldest first, found by key."""

    def __init__(self):
        self._pairs = collections.OrderedDict()     # serial -> (key, [baseline, experiment])
        self._by_key = {}                           # key -> [serial, ...] oldest first

    def __len__(self):
        return len(self._pairs)

    def add(self, serial, key, slot, record):
        """A new waiting target, numbered ``serial``, with ``record`` in ``slot``."""
        pair = [None, None]
        pair[slot] = record
        self._pairs[serial] = (key, pair)
        self._by_key.setdefault(key, []).append(serial)

    def complete(self, key, slot, record):
        """Put ``record`` into the oldest waiting target of ``key`` with ``slot`` empty and
        return ``(serial, pair)``, now complete, or None when there is none."""
        for serial in self._by_key.get(key, ()):
            pair = self._pairs[serial][1]
            if pair[slot] is None:
                pair[slot] = record
                self._forget(serial)
                return serial, pair
        return None

    def pop_oldest(self):
        """``(serial, key, pair)`` of the target waiting longest, no longer waiting."""
        serial = next(iter(self._pairs))
        key, pair = self._pairs[serial]
        self._forget(serial)
        return serial, key, pair

    def _forget(self, serial):
        key, _ = self._pairs.pop(serial)
        serials = self._by_key[key]
        serials.remove(serial)
        if not serials:
            del self._by_key[key]
