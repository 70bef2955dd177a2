"""Writing result records: one JSON object per line, as records arrive.

Records are written through a buffer that is flushed whenever the output queue runs empty, so
a slow trickle of results appears at once while a fast stream costs one write per batch. The
writer takes every record waiting on the queue at once (:meth:`RecordQueue.get_batch
<pathspider.engine.machinery.RecordQueue.get_batch>`) and encodes them with one JSON encoder
built for the whole run: at the end of a run the Observer hands over the flows of every
connection at once, and the records of all of them are merged and written in one burst while
nothing else is left to do, so the cost per record there is the run's last stretch.
Values JSON cannot represent (a ``Conn`` member, bytes, a datetime...) are written in a readable
form instead of failing: a record is never lost to its encoding.

The output can fail during a run: the reader of a pipe goes away (``| head``), the disk fills,
the device errs. :class:`LineSink` writes to a file descriptor and never leaves half a line in
a regular file: after a failed write it truncates the file back to the end of the last whole
record. :func:`write_records` reports the failure once and keeps taking records (without
writing them) until the run closes the queue, so the engine is never blocked by a dead output.
"""

import base64
import datetime
import enum
import errno
import json
import json.encoder
import logging
import os
import queue
import stat

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
    if type(record) is not dict and hasattr(record, "_asdict"):
        return record._asdict()
    return record


_encoder = json.JSONEncoder(default=json_default, ensure_ascii=False)


def encode_record(record):
    """The JSON line (without newline) for one record."""
    return _encoder.encode(record_to_dict(record))


def record_encoder():
    """A function encoding one record as :func:`encode_record` does, for one thread.

    ``JSONEncoder.encode`` builds its C encoder anew for every call; this builds it once (with
    its own circular-reference markers, emptied again if an encoding fails, so the function
    must not be shared between threads). Falls back to :func:`encode_record` where the C
    encoder is missing.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encode_record
    markers = {}
    encode = make(markers, json_default, json.encoder.encode_basestring, None, ": ", ", ",
                  False, False, True)
    join = "".join

    def encode_one(record):
        if type(record) is not dict:
            record = record_to_dict(record)
            if isinstance(record, str):     # JSONEncoder.encode's own case for a bare str
                return _encoder.encode(record)
        try:
            return join(encode(record, 0))
        except BaseException:
            markers.clear()
            raise

    return encode_one


class LineSink:
    """A text sink on a file descriptor that keeps whole lines: ``write(str)``, ``flush()``.

    Text is buffered and written with ``os.write``; :meth:`flush` raises ``OSError`` (e.g.
    ``BrokenPipeError``, ENOSPC) after cutting a regular file back to its last complete line,
    so a reader never sees a torn record. ``lines`` counts the lines written completely.
    """

    def __init__(self, fd, buffer_size=1 << 16):
        self.fd = fd
        self.lines = 0
        self._buffer = bytearray()
        self._limit = buffer_size
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)

    def write(self, text):
        self._buffer += text.encode("utf-8", "replace")
        if len(self._buffer) >= self._limit:
            self.flush()

    def flush(self):
        buffer = self._buffer
        done = 0
        try:
            while done < len(buffer):
                done += os.write(self.fd, memoryview(buffer)[done:])
        except OSError:
            kept = buffer.rfind(b"\n", 0, done) + 1      # bytes up to the last whole line
            self._cut(done - kept)
            self.lines += buffer.count(b"\n", 0, kept)
            del buffer[:]
            raise
        self.lines += buffer.count(b"\n")
        del buffer[:]

    def _cut(self, torn):
        """Remove the ``torn`` bytes of an incomplete line just written to a regular file."""
        if torn and self._regular:
            try:
                os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR) - torn)
            except OSError as exc:
                log.error("could not remove a partly written record: %s", exc.strerror)

    def close(self):
        """Close the descriptor (after a final flush, which may raise)."""
        try:
            self.flush()
        finally:
            os.close(self.fd)


def describe_output_error(exc):
    """One line for a failed output write."""
    if isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) == errno.EPIPE:
        return "the output was closed by its reader"
    return f"writing the output failed: {exc.strerror or exc}"


#: Most records the writer takes from the queue and writes at once.
WRITE_BATCH = 256


def write_records(outqueue, stream, on_record=None, on_failure=None):
    """Write every record from ``outqueue`` to ``stream`` until ``SHUTDOWN_SENTINEL``.

    Calls ``outqueue.task_done()`` for each item (the engine's shutdown waits for that) and
    ``on_record(record)`` for each record written if given. Returns the number of records
    written. If writing fails (``OSError``): without ``on_failure`` the error is raised; with
    it, ``on_failure(exc)`` is called once and the remaining records are taken from the queue
    without being written, until the sentinel.

    Records are taken, encoded and handed to ``stream.write`` in batches of those waiting
    (at most :data:`WRITE_BATCH`), as one text; ``stream`` is flushed whenever the queue is
    empty. With a queue that has no ``get_batch`` (a plain ``queue.Queue``) a batch is one
    record.
    """
    count = 0
    failed = False
    take, done = _batch_taker(outqueue)
    encode, write = record_encoder(), stream.write
    while True:
        batch = take(WRITE_BATCH, False)
        if not batch:
            failed = _flush(stream, failed, on_failure)
            batch = take(WRITE_BATCH, True)
        last = batch[-1]
        end = isinstance(last, str) and last == SHUTDOWN_SENTINEL
        records = batch[:-1] if end else batch
        try:
            if records and not failed:
                lines, error = [], None
                try:
                    for record in records:
                        lines.append(encode(record))
                except Exception as exc:    # raised, as before, once the records before
                    error = exc             # it are written
                if lines:
                    lines.append("")
                    try:
                        write("\n".join(lines))
                    except OSError as exc:
                        failed = _failed(exc, on_failure)
                    else:
                        count += len(lines) - 1
                        if on_record is not None:
                            for record in records[:len(lines) - 1]:
                                on_record(record)
                if error is not None:
                    raise error
        finally:
            done(len(batch))
        if end:
            break
    _flush(stream, failed, on_failure)
    return count


def _batch_taker(outqueue):
    """``(take(most, block), done(n))`` for ``outqueue``: its own batch methods if it has them
    (:class:`~pathspider.engine.machinery.RecordQueue`), else one item at a time."""
    get_batch = getattr(outqueue, "get_batch", None)
    if get_batch is not None:
        return get_batch, outqueue.tasks_done
    get, task_done = outqueue.get, outqueue.task_done

    def take(most, block):
        try:
            return [get(block)]
        except queue.Empty:
            return []

    def done(n):
        for _ in range(n):
            task_done()

    return take, done


def _flush(stream, failed, on_failure):
    """Flush unless the output already failed; returns whether it has failed."""
    if failed:
        return True
    try:
        stream.flush()
    except OSError as exc:
        return _failed(exc, on_failure)
    return False


def _failed(exc, on_failure):
    if on_failure is None:
        raise exc
    on_failure(exc)
    return True
