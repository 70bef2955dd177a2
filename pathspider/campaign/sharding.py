"""Cut a target list into chunks: every vantage measures every chunk.

The list is split on its lines as written (CSV rows or ndjson jobs, so extra ndjson fields
reach the records unchanged); blank lines and ``#`` comments are dropped, the rest is left to
the engine that runs each chunk, which validates rows exactly as a local run does. The format
is decided once for the whole list (``auto``: ndjson if the first line that is not blank or a
comment starts with ``{``, as :mod:`pathspider.engine.targets` does) and passed to every chunk.
"""
from pathspider.engine.targets import INPUT_FORMATS

DEFAULT_CHUNK_SIZE = 500
#: Longest target line accepted (the engine's limit too).
MAX_LINE = 64 * 1024


class ShardingError(ValueError):
    """A target list that cannot be sharded (one line for the user)."""


def target_lines(stream):
    """The lines of ``stream`` (text) that name targets, without their line ends."""
    for line in stream:
        text = line.rstrip("\r\n")
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            yield text


def detect_format(lines, input_format="auto"):
    """``csv`` or ``ndjson`` for ``lines`` (a list) under ``--input-format input_format``."""
    if input_format not in INPUT_FORMATS:
        raise ShardingError(f"unknown input format {input_format!r}")
    if input_format != "auto":
        return input_format
    return "ndjson" if lines and lines[0].lstrip().startswith("{") else "csv"


def shard(lines, chunk_size):
    """``[text]``: ``lines`` in chunks of at most ``chunk_size`` lines, each ending in a
    newline; a list of n lines gives ceil(n / chunk_size) chunks, none empty."""
    if chunk_size < 1:
        raise ShardingError("--chunk-size must be at least 1")
    return ["".join(line + "\n" for line in lines[start:start + chunk_size])
            for start in range(0, len(lines), chunk_size)]


def read_chunks(path, chunk_size, input_format="auto"):
    """``(format, [chunk text])`` of the target list at ``path``."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as stream:
            lines = [line for line in target_lines(stream) if len(line) <= MAX_LINE]
    except OSError as exc:
        raise ShardingError(f"cannot read --input {path}: {exc.strerror}") from None
    if not lines:
        raise ShardingError(f"--input {path} names no target")
    try:
        chunks = [text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                  for text in shard(lines, chunk_size)]
    except UnicodeError:
        raise ShardingError(f"--input {path} is not text") from None
    return detect_format(lines, input_format), chunks
