"""Reading the target list: CSV rows ``ip,port,hostname,rank``, streamed line by line.

A 10-million-line list is never held in memory: :func:`read_targets` is a generator. Blank
lines and lines starting with ``#`` are ignored. A bad row (too few columns, a port that is not
an integer in 1..65535, an address that is not an IP address) gets one warning naming its line
number and is skipped; :class:`TargetStats` counts them. Hostname and rank may be omitted
(they become empty strings), so ``ip,port`` rows work too. Addresses are canonicalised
(``2001:DB8::0:1`` becomes ``2001:db8::1``) so results match what the Observer reports.
"""

import csv
import logging
import socket

log = logging.getLogger("pathspider.engine.targets")


class BadTarget(ValueError):
    """A row of the target list that cannot be used; the message says why."""


class TargetStats:
    """What the reader saw: rows read, jobs produced, bad rows skipped."""

    def __init__(self):
        self.lines = 0
        self.jobs = 0
        self.bad = 0

    def as_dict(self):
        return {"lines": self.lines, "jobs": self.jobs, "bad_rows": self.bad}


def canonical_ip(text):
    """Validate an IPv4/IPv6 address and return its canonical text, or raise BadTarget."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        raise BadTarget(f"not an IP address: {text!r}") from None


def parse_port(text):
    """Validate a TCP/UDP port number (1..65535) and return it as an int."""
    try:
        port = int(text.strip())
    except ValueError:
        raise BadTarget(f"port is not an integer: {text.strip()!r}") from None
    if not 0 < port < 65536:
        raise BadTarget(f"port out of range 1-65535: {port}")
    return port


def parse_row(row):
    """Turn one CSV row into a 1.0 job list ``[ip, port, hostname, rank]``."""
    if len(row) < 2:
        raise BadTarget(f"too few columns ({len(row)}); expected ip,port,hostname,rank")
    ip = canonical_ip(row[0])
    port = parse_port(row[1])
    hostname = row[2].strip() if len(row) > 2 else ""
    rank = row[3].strip() if len(row) > 3 else ""
    return [ip, port, hostname, rank]


def read_targets(stream, stats=None, source="input"):
    """Yield a job for every good row of ``stream`` (an iterable of text lines)."""
    stats = stats if stats is not None else TargetStats()
    reader = csv.reader(stream)
    for row in reader:
        stats.lines = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        try:
            job = parse_row(row)
        except BadTarget as exc:
            stats.bad += 1
            log.warning("%s line %d skipped: %s", source, reader.line_num, exc)
            continue
        stats.jobs += 1
        yield job
