"""Writing records: the batch writer takes what waits on ``outqueue`` at once, writes exactly
what the one-record-at-a-time writer wrote, and keeps its failure semantics."""
import collections
import datetime
import enum
import gc
import json
import threading

import pytest

from pathspider.constants import SHUTDOWN_SENTINEL
from pathspider.engine import output
from pathspider.engine.coordinator import RUN_GC_THRESHOLDS, collection_tuned_for_a_run
from pathspider.engine.machinery import RecordQueue

Record = collections.namedtuple("Record", ["ip", "port", "state"])


class Colour(enum.Enum):
    RED = 1


class Sink:
    """``write``/``flush`` into memory; ``fail_after`` writes raise ``OSError`` (a full disk)."""

    def __init__(self, fail_after=None):
        self.text = []
        self.flushes = 0
        self.fail_after = fail_after

    def write(self, text):
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise OSError(28, "No space left on device")
            self.fail_after -= 1
        self.text.append(text)

    def flush(self):
        self.flushes += 1

    def lines(self):
        return "".join(self.text).splitlines()


RECORDS = [
    {"dip": "198.18.64.1", "sp": 40000, "observed": True, "first": 1796171238.303208,
     "host": "t1.clean.lab.test", "rank": "1", "connstate": True, "http_status": 200},
    {"dip": "2001:db8::1", "sp": 0, "observed": False, "host": "Bücher.example", "note": None},
    Record("198.18.64.2", 1234, "ok"),
    {"state": Colour.RED, "raw": b"\x00\xff", "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
     "marks": {3, 1, 2}, "pair": (1, 2)},
    "a bare string record",
    [1, 2.5, None],
]


def queued(*items, maxsize=0):
    q = RecordQueue(maxsize)
    for item in items:
        q.put(item)
    return q


def test_the_batch_encoder_writes_what_encode_record_writes():
    encode = output.record_encoder()
    for record in RECORDS:
        assert encode(record) == output.encode_record(record)


def test_a_record_that_cannot_be_encoded_raises_and_the_encoder_goes_on():
    encode = output.record_encoder()
    circular = {"a": 1}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        encode(circular)
    shared = {"x": 1}
    assert encode({"a": shared, "b": shared}) == '{"a": {"x": 1}, "b": {"x": 1}}'


def test_records_are_written_in_order_as_lines_and_counted():
    q = queued(*RECORDS, SHUTDOWN_SENTINEL)
    sink, seen = Sink(), []
    assert output.write_records(q, sink, on_record=seen.append) == len(RECORDS)
    assert sink.lines() == [output.encode_record(r) for r in RECORDS]
    assert seen == RECORDS
    assert q.unfinished_tasks == 0 and q.empty()


def test_get_batch_ends_at_the_sentinel_and_leaves_what_follows():
    q = queued(1, 2, SHUTDOWN_SENTINEL, 3)
    assert q.get_batch(10, block=False) == [1, 2, SHUTDOWN_SENTINEL]
    q.tasks_done(3)
    assert q.get_batch(10, block=False) == [3]
    q.tasks_done(1)
    assert q.get_batch(10, block=False) == []
    with pytest.raises(ValueError):
        q.tasks_done(1)
    q.join()                                # every item was marked done


def test_get_batch_takes_at_most_what_it_is_asked_for_and_wakes_a_blocked_put():
    q = queued(*range(4), maxsize=4)
    blocked = threading.Thread(target=q.put, args=(4,))
    blocked.start()
    assert q.get_batch(3) == [0, 1, 2]
    blocked.join(5)
    assert not blocked.is_alive()
    assert q.get_batch(10) == [3, 4]
    assert q.puts == 5


def test_a_blocking_get_batch_waits_for_the_first_record():
    q = RecordQueue(0)
    got = []
    reader = threading.Thread(target=lambda: got.append(q.get_batch(10)))
    reader.start()
    q.put({"a": 1})
    reader.join(5)
    assert got == [[{"a": 1}]]


def test_the_writer_still_takes_a_plain_queue_one_record_at_a_time():
    import queue
    q = queue.Queue()
    for record in RECORDS[:3] + [SHUTDOWN_SENTINEL]:
        q.put(record)
    sink = Sink()
    assert output.write_records(q, sink) == 3
    assert sink.lines() == [output.encode_record(r) for r in RECORDS[:3]]
    q.join()


def test_a_failed_write_is_reported_once_and_the_rest_is_taken_unwritten():
    q = queued(*RECORDS[:2])
    sink, failures = Sink(fail_after=0), []
    done = threading.Event()

    def write():
        output.write_records(q, sink, on_failure=failures.append)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    q.join()                                # the first batch was taken (and failed)
    for record in RECORDS[2:]:
        q.put(record)
    q.put(SHUTDOWN_SENTINEL)
    writer.join(5)
    assert done.is_set() and len(failures) == 1 and sink.lines() == []
    assert q.unfinished_tasks == 0


def test_without_on_failure_the_write_error_is_raised():
    q = queued(RECORDS[0], SHUTDOWN_SENTINEL)
    with pytest.raises(OSError):
        output.write_records(q, Sink(fail_after=0))
    assert q.unfinished_tasks == 0


def test_an_unencodable_record_raises_after_the_records_before_it_are_written():
    circular = {}
    circular["self"] = circular
    q = queued(RECORDS[0], RECORDS[1], circular, RECORDS[2], SHUTDOWN_SENTINEL)
    sink, seen = Sink(), []
    with pytest.raises(ValueError):
        output.write_records(q, sink, on_record=seen.append)
    assert [json.loads(line) for line in sink.lines()] == RECORDS[:2]
    assert seen == RECORDS[:2]
    assert q.unfinished_tasks == 0          # nothing taken is left unfinished (no hang)


def test_the_run_tunes_the_collector_and_puts_it_back():
    before = gc.get_threshold()
    with collection_tuned_for_a_run():
        assert gc.get_threshold() == RUN_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
