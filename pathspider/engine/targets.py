"""Reading the target list: rows ``ip,port,hostname,rank``, one per line, streamed.

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
"""

import csv
import ipaddress
import logging
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


class BadTarget(ValueError):
    """A row of the target list that cannot be used; the message says why."""


class TargetStats:
    """What the reader saw: lines read, jobs produced, bad rows skipped, bytes consumed."""

    def __init__(self):
        self.lines = 0
        self.jobs = 0
        self.bad = 0
        self.bytes = 0

    def as_dict(self):
        return {"lines": self.lines, "jobs": self.jobs, "bad_rows": self.bad}


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


def read_targets(stream, stats=None, source="input", wake_fd=None):
    """Yield a job ``[ip, port, hostname, rank]`` for every good line of ``stream``.

    ``stream``: an iterable of text lines, a file object, or a file descriptor (see
    :func:`read_lines`). Bad rows are warned about (``"<source> line N skipped: reason"``) and
    counted in ``stats``. With ``wake_fd`` the generator returns as soon as that descriptor is
    readable, for a descriptor ``stream`` even while waiting for input: the engine stops
    reading this way on Ctrl-C.
    """
    stats = stats if stats is not None else TargetStats()
    for lineno, text in read_lines(stream, stats, wake_fd):
        try:
            if isinstance(text, BadTarget):
                raise text
            if is_ignored(text):
                continue
            job = parse_row(split_fields(text))
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
