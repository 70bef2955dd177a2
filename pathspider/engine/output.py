"""Writing result records: one JSON object per line, as records arrive.

Records are written through a buffer that is flushed whenever the output queue runs empty, so
a slow trickle of results appears at once while a fast stream costs one write per batch.
Values JSON cannot represent (a ``Conn`` member, bytes, a datetime...) are written in a readable
form instead of failing: a record is never lost to its encoding.
"""

import base64
import datetime
import enum
import json
import logging
import queue

from pathspider.constants import SHUTDOWN_SENTINEL

log = logging.getLogger("pathspider.engine.output")


def json_default(value):
    """Encode what ``json`` cannot: enums by name, bytes as base64, times as ISO text."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return repr(value)


def record_to_dict(record):
    """1.0 plugins may put namedtuples on the output queue: write them as objects."""
    if hasattr(record, "_asdict"):
        return record._asdict()
    return record


_encoder = json.JSONEncoder(default=json_default, ensure_ascii=False)


def encode_record(record):
    """The JSON line (without newline) for one record."""
    return _encoder.encode(record_to_dict(record))


def write_records(outqueue, stream, on_record=None):
    """Write every record from ``outqueue`` to ``stream`` until ``SHUTDOWN_SENTINEL``.

    Calls ``outqueue.task_done()`` after each item (the engine's shutdown waits for that) and
    ``on_record(record)`` for each record if given. Returns the number of records written.
    """
    count = 0
    get, get_nowait, done = outqueue.get, outqueue.get_nowait, outqueue.task_done
    encode, write = encode_record, stream.write
    while True:
        try:
            record = get_nowait()
        except queue.Empty:
            stream.flush()
            record = get()
        try:
            if isinstance(record, str) and record == SHUTDOWN_SENTINEL:
                break
            write(encode(record))
            write("\n")
            count += 1
            if on_record is not None:
                on_record(record)
        finally:
            done()
    stream.flush()
    return count
