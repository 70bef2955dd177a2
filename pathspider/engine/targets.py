"""Reading the target list, streamed: CSV rows ``ip,port,hostname,rank`` (PATHspider 1.0) or
ndjson jobs, one JSON object per line (PATHspider 2.0, see :func:`parse_ndjson_job`).

A 10-million-line list is never held in memory: :func:`read_targets` is a generator, and it
reads a file descriptor or binary file in chunks of at most 64 KiB. The input is split into
lines first (:func:`read_lines`) and each line is parsed on its own, so no line can affect the
next: quoting (``"198.18.64.1","80"``) works within a line and never spans lines, a line longer
than :data:`MAX_LINE` bytes or not valid UTF-8 is one bad row whose bytes are not kept (memory
stays bounded even for ``/dev/zero``), and a UTF-8 byte-order mark at the start is dropped.

Blank lines and lines starting with ``#`` are ignored. A bad row (too few columns, a port that
is not 1..65535 in ASCII digits, an address that is not an IP address, a hostname that is not a
DNS name, a rank with control characters) gets one warning naming its line number and is
skipped; :class:`TargetStats` counts them. Hostname and rank may be omitted (they become empty
strings), so ``ip,port`` rows work too. Addresses are canonicalised (``2001:DB8::0:1`` becomes
``2001:db8::1``, ``::ffff:198.18.64.1`` becomes ``198.18.64.1``) and hostnames become their
lower-case A-label form, so that results match what the Observer reports and nothing from the
file reaches a protocol line unchecked.

ndjson lines are objects with ``dip`` (address), ``dp`` (port), optional ``domain`` and
``rank``, and any other fields; they are validated exactly like CSV rows and become the same
1.0 job list, a :class:`Job` whose ``fields`` keep the object as read (extra fields included)
for the output. The format is told from the content (the first line that is neither blank nor
a comment starts with ``{``: ndjson) unless the caller names it.
"""

import csv
import ipaddress
import json
import logging
import math
import os
import select
import socket

from pathspider.client.names import dns_name

log = logging.getLogger("pathspider.engine.targets")

MAX_LINE = 64 * 1024
"""Bytes a line may have, not counting its ``\\n`` (a ``\\r`` before it counts); a longer line
is a bad row."""
CHUNK = 64 * 1024
"""Bytes read from a descriptor or binary file at a time."""
BOM = b"\xef\xbb\xbf"
_MAPPED = "::ffff:"

#: ``--input-format`` values: tell from the content, or the named format.
INPUT_FORMATS = ("auto", "csv", "ndjson")
#: Deepest nesting of arrays and objects in an ndjson job (the job object itself is level 1).
MAX_DEPTH = 32
#: Most characters a number in an ndjson job may have (Python would parse a 60,000-digit
#: integer slowly, and write it back even more slowly).
MAX_NUMBER = 40
#: Keys of a job line the run writes itself (``--format jobs``): an input field of that name
#: is replaced in the output.
OUTPUT_KEYS = ("flow_results", "missed_flows", "time", "conditions")


class BadTarget(ValueError):
    """A row of the target list that cannot be used; the message says why."""


class Job(list):
    """A 1.0 job list ``[ip, port, hostname, rank]`` read from an ndjson line, which also
    carries that line's object in ``fields`` (the dict as read: original ``dip``, ``dp``,
    ``domain``, ``rank`` text and every extra field), so the fields can be written with the
    job's results (``--format jobs``).

    Plugins see a list, exactly as for CSV input (``job[0]``, ``len(job)``, appending), so
    1.0 plugins run unchanged on ndjson input. Copying and pickling keep ``fields``.
    """

    __slots__ = ("fields",)

    def __init__(self, items=(), fields=None):
        super().__init__(items)
        self.fields = {} if fields is None else fields

    def __reduce__(self):
        return type(self), (list(self), self.fields)

    def __repr__(self):
        return f"Job({list.__repr__(self)}, fields={self.fields!r})"


def job_fields(job):
    """The fields of ``job`` for its output line: an ndjson job's object as read, else
    ``dip``, ``dp``, ``domain`` and ``rank`` from the 1.0 job list (a fresh dict either way)."""
    fields = getattr(job, "fields", None)
    if isinstance(fields, dict):
        return dict(fields)
    padded = list(job[:4]) + [""] * (4 - len(job[:4]))
    return {"dip": padded[0], "dp": padded[1], "domain": padded[2], "rank": padded[3]}


class TargetStats:
    """What the reader saw: lines read, jobs produced, bad rows skipped, bytes consumed; and
    jobs skipped as out of scope (counted by :class:`pathspider.engine.scope.ScopeFilter`)."""

    def __init__(self):
        self.lines = 0
        self.jobs = 0
        self.bad = 0
        self.bytes = 0
        self.out_of_scope = 0

    def as_dict(self):
        return {"lines": self.lines, "jobs": self.jobs, "bad_rows": self.bad,
                "out_of_scope": self.out_of_scope}


# -- reading lines -----------------------------------------------------------------------------

def read_lines(stream, stats=None, wake_fd=None):
    """Yield ``(lineno, text)`` for every line of ``stream``, or ``(lineno, BadTarget)``.

    ``stream`` is a file descriptor, a file object (``.read(n)`` giving bytes or str), an
    iterable of str/bytes pieces (e.g. text lines) or one bytes/str object. Lines end at
    ``\\n``; a trailing ``\\r`` is removed. A line that is too long, not UTF-8 or has a ``\\r``
    inside comes as a :class:`BadTarget` carrying the reason, so callers report it with its
    number. With ``wake_fd`` reading ends as soon as that descriptor is readable: for a file
    descriptor also while a read would block, for other streams before each read or piece.
    """
    stats = stats if stats is not None else TargetStats()
    lineno = 0
    for line in _split(_without_bom(_chunks(stream, wake_fd)), stats):
        lineno += 1
        stats.lines = lineno
        if line is None:
            yield lineno, BadTarget(f"longer than {MAX_LINE} bytes")
        else:
            yield lineno, _decode(line)


def _split(chunks, stats):
    """Cut byte chunks into lines; an over-long line comes out as None, its bytes dropped."""
    pending = b""
    skipping = False
    for chunk in chunks:
        stats.bytes += len(chunk)
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            if skipping:
                skipping = False
                pending = b""
                continue
            line = pending + piece if pending else piece
            pending = b""
            yield line if len(line) <= MAX_LINE else None
        if skipping:
            continue
        pending += pieces[-1]
        if len(pending) > MAX_LINE:
            yield None  # reported now: the line may never end (/dev/zero)
            pending, skipping = b"", True
    if pending:
        yield pending


def _decode(line):
    """The text of one line (without ``\\r\\n``), or a BadTarget saying why it has none."""
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadTarget(f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at offset {exc.start})")
    if "\r" in text:
        return BadTarget("carriage return inside the line")
    return text


def _without_bom(chunks):
    """Pass the chunks on, without a UTF-8 byte-order mark at the very start."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= len(BOM) or not BOM.startswith(head):
            break
    else:  # the whole input is shorter than a BOM
        if head and head != BOM:
            yield head
        return
    yield head[len(BOM):] if head.startswith(BOM) else head
    yield from chunks


def _chunks(stream, wake_fd):
    """Byte chunks of ``stream`` (see :func:`read_lines`), ending early once ``wake_fd`` is
    readable."""
    if isinstance(stream, int):
        return _fd_chunks(stream, wake_fd)
    if isinstance(stream, (bytes, bytearray, str)):
        return _encoded([stream], wake_fd)
    if hasattr(stream, "read"):
        read, end = _piece_reader(stream)
        return _encoded(iter(read, end), wake_fd)
    return _encoded(stream, wake_fd)


def _piece_reader(stream):
    """``(read, end)``: a call returning the next piece of a file object (at most CHUNK bytes
    or characters, and no more than is available: ``read1`` for a binary file, ``readline``
    for a text file, so a pipe or terminal gives its lines as they come) and the end marker."""
    end = stream.read(0)
    if hasattr(stream, "read1"):
        return (lambda: stream.read1(CHUNK)), end
    if isinstance(end, str) and hasattr(stream, "readline"):
        return (lambda: stream.readline(CHUNK)), end
    return (lambda: stream.read(CHUNK)), end


def _fd_chunks(fd, wake_fd):
    """Read ``fd`` with ``os.read``; with ``wake_fd``, poll both first so that a wake-up also
    ends a read that would block (a silent pipe or terminal). ``fd`` stays blocking: it may be
    shared with the shell."""
    poller = None
    if wake_fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(wake_fd, select.POLLIN)
    while True:
        if poller is not None and _woken(poller.poll(), wake_fd):
            return
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return
        yield chunk


def _encoded(pieces, wake_fd):
    """Pieces of a file object or iterable as bytes (str is UTF-8 encoded; lone surrogates
    give invalid UTF-8, so such a line is a bad row); checks ``wake_fd`` before each piece."""
    poller = None
    if wake_fd is not None:
        poller = select.poll()
        poller.register(wake_fd, select.POLLIN)
    for piece in pieces:
        if poller is not None and _woken(poller.poll(0), wake_fd):
            return
        yield piece.encode("utf-8", "surrogatepass") if isinstance(piece, str) else piece


def _woken(events, wake_fd):
    """True if ``poll()`` reported ``wake_fd`` (readable, or hung up: both mean stop)."""
    return any(fd == wake_fd for fd, _ in events)


# -- parsing rows ------------------------------------------------------------------------------

def split_fields(text):
    """The comma-separated fields of one line; quotes are honoured within the line only."""
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        raise BadTarget(f"malformed quoting ({exc})") from None


def is_ignored(text):
    """True for a blank line, a line of empty fields and a ``#`` comment line."""
    head = text.lstrip()
    return (not head or head[0] == "#"
            or head[0] == "," and not head.replace(",", "").strip())


def shown(text, limit=40):
    """``repr`` of a field for a message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def canonical_ip(text):
    """Validate an IPv4/IPv6 address and return its canonical text, or raise BadTarget."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        ip = socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        raise BadTarget(f"not an IP address: {shown(text)}") from None
    if family == socket.AF_INET6 and "." in ip and not ip.startswith(_MAPPED):
        # IPv4-compatible ::a.b.c.d: libc writes it dotted, the Observer (like ipaddress) not
        ip = str(ipaddress.IPv6Address(ip))
    return ip


def unmapped(ip):
    """The IPv4 address of a canonical IPv4-mapped IPv6 address (``::ffff:a.b.c.d``), or None."""
    if ip.startswith(_MAPPED) and "." in ip:
        return ip[len(_MAPPED):]
    return None


def parse_port(text):
    """Validate a TCP/UDP port number (1..65535, ASCII digits only) and return it as an int."""
    text = text.strip()
    # isascii + isdigit is ^[0-9]+$ (int() would also take "8_0", "+80" and other scripts)
    if not (text.isascii() and text.isdigit()):
        raise BadTarget(f"port is not an integer: {shown(text)}")
    port = int(text) if len(text) <= 5 else 0
    if not 0 < port < 65536:
        raise BadTarget(f"port out of range 1-65535: {shown(text)}")
    return port


def parse_hostname(text):
    """The hostname column: ``""`` or a DNS name in lower-case A-label form."""
    text = text.strip()
    if not text:
        return ""
    try:
        return dns_name(text)
    except ValueError as exc:
        raise BadTarget(f"hostname {shown(text)} is not a DNS name: {exc}") from None


def parse_rank(text):
    """The rank column: free text, but printable (it is written into the results)."""
    text = text.strip()
    if not text.isprintable():
        raise BadTarget(f"rank {shown(text)} contains a control character")
    return text


def parse_row(row):
    """Turn the fields of one line into a 1.0 job list ``[ip, port, hostname, rank]``."""
    if len(row) < 2:
        raise BadTarget(f"too few columns ({len(row)}); expected ip,port,hostname,rank")
    ip = canonical_ip(row[0])
    port = parse_port(row[1])
    hostname = parse_hostname(row[2]) if len(row) > 2 else ""
    rank = parse_rank(row[3]) if len(row) > 3 else ""
    return [ip, port, hostname, rank]


# -- parsing ndjson jobs -------------------------------------------------------------------------

def _unique_keys(pairs):
    """``object_pairs_hook``: a dict, refusing a key given twice (which one would count?)."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise BadTarget(f"duplicate key {shown(key)}")
        obj[key] = value
    return obj


def _bounded_int(text):
    if len(text) > MAX_NUMBER:
        raise BadTarget(f"a number longer than {MAX_NUMBER} characters")
    return int(text)


def _finite_float(text):
    value = float(text) if len(text) <= MAX_NUMBER else math.inf
    if not math.isfinite(value):
        raise BadTarget(f"a number out of range: {shown(text)}")
    return value


def _no_constant(name):
    raise BadTarget(f"{name} is not a JSON value")


_decoder = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_int=_bounded_int,
                            parse_float=_finite_float, parse_constant=_no_constant)


def _depth_and_text_ok(value):
    """Raise BadTarget if ``value`` nests deeper than MAX_DEPTH or holds a string that is not
    valid Unicode (a lone surrogate from a ``\\ud800`` escape could not be written back)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadTarget("a string with a lone surrogate (\\ud800-\\udfff)") from None
            continue
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            raise BadTarget(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
        if isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)


def decode_object(text):
    """The JSON object of one ndjson line, or BadTarget: not JSON, not an object, a duplicate
    key, a number too long or not finite, nesting deeper than MAX_DEPTH, a lone surrogate."""
    try:
        obj = _decoder.decode(text)
    except RecursionError:
        raise BadTarget(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:   # JSONDecodeError
        if isinstance(exc, BadTarget):
            raise
        detail = f"{exc.msg} at column {exc.colno}" if hasattr(exc, "colno") else str(exc)
        raise BadTarget(f"not JSON ({detail})") from None
    if not isinstance(obj, dict):
        raise BadTarget(f"a JSON {type(obj).__name__.replace('dict', 'object')}, not an object")
    if text.count("[") + text.count("{") > MAX_DEPTH or "\\u" in text:
        _depth_and_text_ok(obj)
    return obj


def _json_port(value):
    """``dp``: an integer 1..65535 (or its digits as a string, as CSV gives it)."""
    if value is None:
        raise BadTarget("no 'dp' (the target port)")
    if isinstance(value, str):
        return parse_port(value)
    if type(value) is not int:
        raise BadTarget(f"'dp' is not an integer: {shown(repr(value))}")
    if not 0 < value < 65536:
        raise BadTarget(f"port out of range 1-65535: {value}")
    return value


def _json_text(obj, key, parse, integer_ok=False):
    """An optional text field checked with ``parse`` (``""`` when absent or null); an
    integer too when ``integer_ok`` (2.0's ranks are numbers), as its decimal text."""
    value = obj.get(key)
    if value is None:
        return ""
    if integer_ok and type(value) is int:
        return str(value)
    if not isinstance(value, str):
        kind = "text or an integer" if integer_ok else "text"
        raise BadTarget(f"{key!r} is not {kind}: {shown(repr(value))}")
    return parse(value)


def parse_ndjson_job(text):
    """Turn one ndjson line into a :class:`Job`: ``[ip, port, hostname, rank]`` validated as
    for CSV (``dip`` an IP address, ``dp`` a port, ``domain`` a DNS name or absent, ``rank``
    printable text or an integer or absent) with the object as read in ``fields``."""
    obj = decode_object(text)
    dip = obj.get("dip")
    if not isinstance(dip, str):
        raise BadTarget("no 'dip' (the target address) as a string")
    return Job([canonical_ip(dip), _json_port(obj.get("dp")),
                _json_text(obj, "domain", parse_hostname),
                _json_text(obj, "rank", parse_rank, integer_ok=True)], obj)


def is_ignored_ndjson(text):
    """True for a blank line and a ``#`` comment line."""
    head = text.lstrip()
    return not head or head[0] == "#"


def _line_parser(fmt, text, source):
    """The parser for ``fmt`` (``auto``: told from ``text``, the first significant line)
    and its ignore test."""
    if fmt == "auto":
        fmt = "ndjson" if text.lstrip().startswith("{") else "csv"
        log.debug("%s: reading %s", source, "ndjson jobs" if fmt == "ndjson" else "CSV rows")
    if fmt == "ndjson":
        return parse_ndjson_job, is_ignored_ndjson
    if fmt != "csv":
        raise ValueError(f"unknown input format {fmt!r} (choose from {INPUT_FORMATS})")
    return (lambda line: parse_row(split_fields(line))), is_ignored


def read_targets(stream, stats=None, source="input", wake_fd=None, input_format="auto"):
    """Yield a job ``[ip, port, hostname, rank]`` for every good line of ``stream``.

    ``stream``: an iterable of text lines, a file object, or a file descriptor (see
    :func:`read_lines`). ``input_format``: ``csv``, ``ndjson`` (jobs are then :class:`Job`
    lists carrying their fields) or ``auto``: ndjson if the first line that is neither blank
    nor a comment starts with ``{``. Bad rows are warned about (``"<source> line N skipped:
    reason"``) and counted in ``stats``. With ``wake_fd`` the generator returns as soon as that
    descriptor is readable, for a descriptor ``stream`` even while waiting for input: the
    engine stops reading this way on Ctrl-C.
    """
    stats = stats if stats is not None else TargetStats()
    parse, ignored = None, is_ignored_ndjson
    if input_format != "auto":
        parse, ignored = _line_parser(input_format, "", source)
    for lineno, text in read_lines(stream, stats, wake_fd):
        try:
            if isinstance(text, BadTarget):
                raise text
            if ignored(text):
                continue
            if parse is None:
                parse, ignored = _line_parser(input_format, text, source)
                if ignored(text):
                    continue
            job = parse(text)
        except BadTarget as exc:
            stats.bad += 1
            log.warning("%s line %d skipped: %s", source, lineno, exc)
            continue
        ipv4 = unmapped(job[0])
        if ipv4 is not None:
            log.warning("%s line %d: IPv4-mapped address %s used as %s", source, lineno, job[0],
                        ipv4)
            job[0] = ipv4
        stats.jobs += 1
        yield job
