"""Resuming an interrupted run (``--resume``): keep what its output holds, measure the rest.

A run that was stopped (Ctrl-C, SIGTERM, SIGKILL, a full disk...) leaves an output file with
the records of the targets it finished, possibly a few records of targets it had not finished
(a SIGKILL or a third signal loses the rest of a job's records) and possibly a torn last line
(SIGKILL in the middle of a write). ``--resume`` with the same ``--output`` continues it:

1. **Scan** (:func:`scan_output`, before the run starts): every line up to the last newline is
   read as a JSON record and counted under its target's identity, the job ``(ip, port,
   hostname, rank)`` (:func:`target_key`); a last line without its newline is torn. A line
   that is not a JSON object, a record that does not name its target (``dip``/``dp``), or a
   record of the other ``--format`` stops the run with one line: that file is not this run's
   output.
2. **Plan** (:meth:`OutputScan.plan`, once the spider has started and its connection count
   ``n`` is known): in ``--format flows`` a target occurrence is complete when it has a record
   for each of its ``n`` connections (each ``config`` 0..n-1 once; records without a
   ``config`` are counted, ``n`` per occurrence); in ``--format jobs`` every line is one whole
   job unless it is marked ``"incomplete": true``. The records of occurrences that are not
   complete are *partial*.
3. **Clean** (:meth:`ResumePlan.apply`): if there are partial records, the output is rewritten
   without them (a temporary file in the same directory, ``fsync``, ``rename`` over the
   output, ``fsync`` of the directory); if only a torn tail is left, it is cut off. Either way
   the file is, at every moment, the old output or the cleaned one, so an interruption here is
   resumed the same way.
4. **Skip** (:meth:`ResumePlan.skip_measured`, a step of the feeder): the first ``k``
   occurrences of a target in the target list are skipped when the output holds ``k``
   complete ones (a target listed twice is measured twice, as in an uninterrupted run); every
   other job is measured, and its records are appended.

Why rewrite rather than append and let readers de-duplicate: the output stays what every
reader of pathspider's results expects, one record per connection of each job, nothing twice,
without a reader having to know that a file was resumed; the rewrite happens at most once per
resume, before any new record, and costs one sequential copy of the file.

Targets are remembered by a 16-byte BLAKE2b digest of their identity, so a resume of a run
with millions of targets keeps one small dict entry per target, not its text. Records whose
plugin writes no ``host``/``rank`` are matched on ``(ip, port)`` alone (both sides then).
"""

import hashlib
import json
import logging
import os
import stat
import tempfile

from pathspider.engine.targets import BadTarget, canonical_ip, parse_hostname, parse_port, \
    parse_rank, unmapped

log = logging.getLogger("pathspider.engine.resume")

#: Largest ``config`` value counted per configuration (no model has more connections).
MAX_CONFIGS = 64
#: Bytes read at a time while scanning or copying the output.
CHUNK = 1 << 20


class ResumeError(Exception):
    """The output cannot be resumed; the message is the one line shown to the user."""


# ---- target identity ----------------------------------------------------------------------------

def target_key(ip, port, host="", rank="", full=True):
    """The identity of a target as a 16-byte digest: ``(ip, port, host, rank)``, or ``(ip,
    port)`` when ``full`` is False. The values must already be normalized
    (:func:`normalized_target`)."""
    text = f"{ip}\0{port}\0{host}\0{rank}" if full else f"{ip}\0{port}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def job_key(job, full=True):
    """:func:`target_key` of a 1.0 job list ``[ip, port, hostname, rank]`` as the target
    reader makes it (address canonical, port an int, hostname and rank text)."""
    host = job[2] if len(job) > 2 and job[2] is not None else ""
    rank = job[3] if len(job) > 3 and job[3] is not None else ""
    return target_key(job[0], job[1], host, rank, full)


def normalized_target(ip, port, host=None, rank=None, parse_names=False):
    """``(ip, port, host, rank)`` as the target reader would give them for a job: canonical
    address (an IPv4-mapped address as IPv4), port an int, hostname and rank text (``""``
    when absent). ``parse_names`` also normalizes the hostname and rank as the reader does
    (for fields copied from the input unchanged, as in job lines). Raises BadTarget."""
    if not isinstance(ip, str):
        raise BadTarget("no target address")
    ip = canonical_ip(ip)
    ip = unmapped(ip) or ip
    if isinstance(port, str):
        port = parse_port(port)
    elif type(port) is not int:
        raise BadTarget("no target port")
    host = "" if host is None else host
    rank = "" if rank is None else str(rank) if type(rank) is int else rank
    if not isinstance(host, str) or not isinstance(rank, str):
        raise BadTarget("hostname or rank is not text")
    if parse_names:
        host, rank = parse_hostname(host), parse_rank(rank)
    return ip, port, host, rank


# ---- reading the output -------------------------------------------------------------------------

def read_lines(path, limit):
    """Yield ``(lineno, line bytes without newline)`` for the first ``limit`` bytes of
    ``path`` (which end with a newline)."""
    lineno = 0
    with open(path, "rb") as stream:
        left = limit
        rest = b""
        while left > 0:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                lineno += 1
                yield lineno, line


def complete_length(path):
    """``(size, bytes up to and including the last newline)`` of ``path``."""
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        end = size
        while end > 0:
            start = max(0, end - CHUNK)
            stream.seek(start)
            block = stream.read(end - start)
            at = block.rfind(b"\n")
            if at >= 0:
                return size, start + at + 1
            end = start
    return size, 0


class _Mode:
    """How records are keyed and counted; a scan restarts with a simpler mode when a record
    does not fit the current one (a plugin without ``host``/``rank``, or without ``config``)."""

    def __init__(self, full=True, by_config=True):
        self.full = full
        self.by_config = by_config


class _Restart(Exception):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode


class OutputScan:
    """What an existing output holds (see the module docstring, step 1).

    ``counts`` maps a target's digest to its record counts: in ``--format flows`` by config
    (a list indexed by ``config``) or, without configs, ``[total]``; in ``--format jobs``
    ``[complete lines]``. ``incomplete`` counts job lines marked incomplete, ``torn`` the
    bytes of a torn last line.
    """

    def __init__(self, path, fmt):
        self.path = path
        self.fmt = fmt
        self.size = 0
        self.complete_bytes = 0
        self.records = 0
        self.incomplete = 0
        self.counts = {}
        self.full_keys = True
        self.by_config = fmt == "flows"

    @property
    def torn(self):
        return self.size - self.complete_bytes

    def plan(self, connection_count):
        """The :class:`ResumePlan` for a run whose jobs have ``connection_count``
        connections each."""
        return ResumePlan(self, connection_count)


def scan_output(path, fmt):
    """Scan the output ``path`` written in format ``fmt`` (``flows`` or ``jobs``); an
    :class:`OutputScan`. Raises :class:`ResumeError` with one line for a file that is not
    such an output."""
    mode = _Mode(full=True, by_config=fmt == "flows")
    for _ in range(3):
        try:
            return _scan(path, fmt, mode)
        except _Restart as restart:
            mode = restart.mode
    raise AssertionError("scan did not settle")         # pragma: no cover


def _scan(path, fmt, mode):
    scan = OutputScan(path, fmt)
    scan.full_keys, scan.by_config = mode.full, mode.by_config
    try:
        scan.size, scan.complete_bytes = complete_length(path)
        for lineno, line in read_lines(path, scan.complete_bytes):
            _count_line(scan, mode, lineno, line)
    except OSError as exc:
        raise ResumeError(f"--resume cannot read --output {path}: {exc.strerror}") from None
    return scan


def _count_line(scan, mode, lineno, line):
    if not line.strip():
        return
    record = _decode(scan.path, lineno, line)
    kind = "jobs" if "flow_results" in record else "flows"
    if kind != scan.fmt:
        raise ResumeError(f"--resume: --output {scan.path} holds {_described(kind)} (line "
                          f"{lineno}), not {_described(scan.fmt)}: resume with the --format "
                          "it was written in")
    if scan.fmt == "jobs" and record.get("incomplete") is True:
        scan.incomplete += 1
        return
    key, config = record_identity(record, scan.fmt, mode, scan.path, lineno)
    counts = scan.counts.get(key)
    if counts is None:
        counts = scan.counts[key] = [0]
    if config >= len(counts):
        counts.extend([0] * (config + 1 - len(counts)))
    counts[config] += 1
    scan.records += 1


def _decode(path, lineno, line):
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise ResumeError(f"--resume: line {lineno} of --output {path} is not a JSON record; "
                          "is it a pathspider output?")
    return record


def _described(fmt):
    return "one line per job (--format jobs)" if fmt == "jobs" else \
        "one record per connection (--format flows)"


def record_identity(record, fmt, mode, path="output", lineno=0):
    """``(target digest, config slot)`` of one output line. In jobs format the target comes
    from the job's fields (``dip``, ``dp``, ``domain``, ``rank``), in flows format from the
    record (``dip``, ``dp``, ``host``, ``rank``, ``config``). Raises :class:`_Restart` when
    the record needs a simpler mode, :class:`ResumeError` when it names no target."""
    jobs = fmt == "jobs"
    host_field = "domain" if jobs else "host"
    if not jobs and mode.full and ("host" not in record or "rank" not in record):
        raise _Restart(_Mode(full=False, by_config=mode.by_config))
    try:
        ip, port, host, rank = normalized_target(
            record.get("dip"), record.get("dp"), record.get(host_field), record.get("rank"),
            parse_names=jobs)
    except BadTarget as exc:
        raise ResumeError(f"--resume: the record on line {lineno} of --output {path} does not "
                          f"name its target ({exc}); --resume needs records with dip and dp"
                          ) from None
    key = target_key(ip, port, host, rank, mode.full or jobs)
    if jobs or not mode.by_config:
        return key, 0
    config = record.get("config")
    if type(config) is not int or not 0 <= config < MAX_CONFIGS:
        raise _Restart(_Mode(full=mode.full, by_config=False))
    return key, config


# ---- the plan: what to keep, what to measure again ----------------------------------------------

class ResumePlan:
    """What a resumed run keeps of its output and which targets it skips (module docstring,
    steps 2 to 4). ``complete`` maps a target digest to the number of its complete
    occurrences; ``kept`` and ``dropped`` count records."""

    def __init__(self, scan, connection_count):
        self.scan = scan
        self.connections = max(1, int(connection_count))
        self.complete = {}
        self.kept = 0
        for key, counts in scan.counts.items():
            whole = self._complete_occurrences(counts)
            if whole:
                self.complete[key] = whole
                self.kept += whole * (1 if scan.fmt == "jobs" else self.connections)
        self.targets = sum(self.complete.values())
        self.dropped = scan.records + scan.incomplete - self.kept
        self.skipped = 0

    def _complete_occurrences(self, counts):
        if self.scan.fmt == "jobs":
            return counts[0]
        if self.scan.by_config:
            if len(counts) < self.connections:
                return 0
            return min(counts[:self.connections])
        return counts[0] // self.connections

    # ---- cleaning the file --------------------------------------------------------------------

    def apply(self):
        """Make the output hold only complete targets (module docstring, step 3); returns
        what was done, for the log and the metadata."""
        scan = self.scan
        if self.dropped:
            self._rewrite()
            return "rewritten"
        if scan.torn:
            try:
                os.truncate(scan.path, scan.complete_bytes)
            except OSError as exc:
                raise ResumeError(f"--resume cannot cut the torn last line of --output "
                                  f"{scan.path}: {exc.strerror}") from None
            return "truncated"
        return "unchanged"

    def _rewrite(self):
        scan = self.scan
        path = os.path.realpath(scan.path)
        directory = os.path.dirname(path)
        try:
            original = os.stat(path)
            fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".resume",
                                        dir=directory)
        except OSError as exc:
            raise ResumeError(f"--resume cannot rewrite --output {scan.path}: "
                              f"{exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                _keep_owner_and_mode(out.fileno(), original)
                self._copy_complete(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
            _fsync_dir(directory)
        except OSError as exc:
            _remove(temp)
            raise ResumeError(f"--resume cannot rewrite --output {scan.path}: "
                              f"{exc.strerror or exc}") from None
        except BaseException:
            _remove(temp)
            raise

    def _copy_complete(self, out):
        """Write the lines of complete occurrences, in their order, to ``out``."""
        scan = self.scan
        mode = _Mode(scan.full_keys, scan.by_config)
        left = {}                           # digest -> [records still to keep per slot]
        pending = []
        size = 0
        for lineno, line in read_lines(scan.path, scan.complete_bytes):
            if not line.strip():
                continue
            record = json.loads(line)
            if scan.fmt == "jobs" and record.get("incomplete") is True:
                continue
            key, slot = record_identity(record, scan.fmt, mode, scan.path, lineno)
            if not self._take(left, key, slot):
                continue
            pending.append(line + b"\n")
            size += len(line) + 1
            if size >= CHUNK:
                out.write(b"".join(pending))
                pending, size = [], 0
        out.write(b"".join(pending))

    def _take(self, left, key, slot):
        """True if the record of ``key`` in ``slot`` is one of the complete occurrences' (the
        first ones in file order); counts it."""
        budget = left.get(key)
        if budget is None:
            whole = self._complete_occurrences(self.scan.counts.get(key, [0]))
            if self.scan.fmt == "jobs":
                budget = [whole]
            elif self.scan.by_config:
                budget = [whole] * self.connections
            else:
                budget = [whole * self.connections]
            left[key] = budget
        if slot >= len(budget) or budget[slot] <= 0:
            return False
        budget[slot] -= 1
        return True

    # ---- skipping measured targets ------------------------------------------------------------

    def skip_measured(self, jobs):
        """Feeder step: yield the jobs of ``jobs`` still to measure; the first ``k``
        occurrences of a target with ``k`` complete occurrences in the output are skipped
        (counted in ``skipped``)."""
        remaining = self.complete
        full = self.scan.full_keys
        for job in jobs:
            if remaining:
                key = job_key(job, full)
                left = remaining.get(key)
                if left:
                    if left == 1:
                        del remaining[key]
                    else:
                        remaining[key] = left - 1
                    self.skipped += 1
                    continue
            yield job

    def unmatched(self):
        """Complete occurrences in the output that the target list did not list (after the
        whole list was read): a different --input than the interrupted run's."""
        return sum(self.complete.values())

    def as_dict(self):
        """For the run metadata."""
        scan = self.scan
        return {"records_found": scan.records + scan.incomplete, "records_kept": self.kept,
                "partial_records_removed": self.dropped, "torn_bytes_removed": scan.torn,
                "targets_complete": self.targets, "targets_skipped": self.skipped,
                "matched_on": "ip,port,hostname,rank" if scan.full_keys else "ip,port"}


def _keep_owner_and_mode(fd, original):
    os.fchmod(fd, stat.S_IMODE(original.st_mode))
    try:
        os.fchown(fd, original.st_uid, original.st_gid)
    except OSError:
        pass                                # not ours to give away: keep the new owner


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass
