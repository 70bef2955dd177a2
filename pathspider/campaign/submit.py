"""Submit a campaign's chunks to the vantages' queues and store their records as they arrive.

One task per chunk and vantage, on that vantage's queue. Results are awaited through the Redis
backend's publish/subscribe channel (Celery's ``iter_native``: blocking reads, no polling),
in the order they finish; each is checked (the chunk and vantage it claims), its records stored
atomically (:mod:`.store`), and only then is the chunk marked ``stored`` in the journal.

Ctrl-C, SIGTERM or SIGHUP stop the waiting: the journal is written (``interrupted``) and the
tasks stay in the broker; ``pathspider campaign resume DIR`` continues. Resuming first looks at
every chunk not yet stored: a finished result still in the backend is collected; a task that
is started, retrying, or still queued or unacknowledged in the broker is waited for; a failed
task, or one the broker no longer knows (a broker restarted without persistence), is sent
again under a new task id. A chunk sent twice costs a second measurement, never a duplicate
record: the store replaces a chunk's file.
"""
import json
import logging
import signal
import time
import uuid

from pathspider.campaign import messages, names
from pathspider.campaign.broker import redact
from pathspider.campaign.store import chunk_name

log = logging.getLogger("pathspider.campaign.submit")

#: Seconds between two waits on the result channel (progress lines are written between them).
WAIT_INTERVAL = 1.0
#: Task states in which a task will still deliver a result by itself.
LIVE_STATES = ("STARTED", "RETRY", "RECEIVED")


class _Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP while the submitter waits."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class Submitter:
    """Runs (or resumes) the campaign of a :class:`~pathspider.campaign.store.CampaignDir`."""

    def __init__(self, cdir, app, broker_url, progress=True, progress_interval=10.0):
        self.cdir = cdir
        self.journal = cdir.journal
        self.app = app
        self.broker_url = broker_url
        self.progress = progress
        self.progress_interval = progress_interval
        self.started = time.monotonic()
        self._last_progress = 0.0
        self._records_at_start = self._records_done()
        self.pending = {}                       # task id -> (vantage, chunk index)

    # ---- the whole run --------------------------------------------------------------------
    def run(self):
        """Submit what is not stored, wait for it, return the exit status (0: every chunk of
        every vantage stored; 1: some failed; 128+N: stopped by signal N)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM,
                                                                   signal.SIGHUP)}
        self.journal["status"] = "running"
        try:
            self._reconcile()
            self._submit_new()
            self.cdir.save(force=True)
            self._wait()
        except (KeyboardInterrupt, _Stopped) as exc:
            signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
            return self._interrupted(signum)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._finish()

    def _on_signal(self, signum, frame):
        raise _Stopped(signum)

    def _interrupted(self, signum):
        self.journal["status"] = "interrupted"
        self.cdir.save(force=True)
        self.log_progress(force=True)
        log.warning("%s: stopped waiting; the tasks stay queued. Continue with: pathspider "
                    "campaign resume %s", signal.Signals(signum).name, self.cdir.path)
        return 128 + signum

    def _finish(self):
        failed = [(v, n) for v, chunks in self.journal["chunks"].items()
                  for n, entry in chunks.items() if entry["state"] != "stored"]
        self.journal["status"] = "incomplete" if failed else "done"
        self.cdir.save(force=True)
        self.log_progress(force=True)
        if failed:
            log.error("%d chunks were not stored (failed: see above); 'pathspider campaign "
                      "resume %s' sends them again", len(failed), self.cdir.path)
            return 1
        elapsed = time.monotonic() - self.started
        log.info("campaign done: %d records from %d vantages in %.1f s", self._records_done(),
                 len(self.journal["vantages"]), elapsed)
        return 0

    # ---- submitting -----------------------------------------------------------------------
    def _entries(self, states):
        for vantage in self.journal["vantages"]:
            for name, entry in self.journal["chunks"][vantage].items():
                if entry["state"] in states:
                    yield vantage, int(name), entry

    def _submit_new(self):
        """Send every chunk in state ``new`` or ``failed``. Task ids are written to the
        journal before the messages are sent, so a submitter killed in between leaves ids
        that a resume recognises as unknown to the broker (and sends again)."""
        todo = list(self._entries(("new", "failed")))
        for vantage, index, entry in todo:
            entry["task_ids"].append(str(uuid.uuid4()))
            entry["state"] = "submitted"
            entry.pop("error", None)
        if not todo:
            return
        self.cdir.save(force=True)
        journal = self.journal
        for vantage, index, entry in todo:
            message = messages.make(journal["id"], index, vantage, journal["plugin"],
                                    journal["options"], journal["run_options"],
                                    self.cdir.read_chunk(index))
            self.app.send_task(names.TASK_NAME, args=[message], queue=names.queue_of(vantage),
                               task_id=entry["task_ids"][-1])
            self.pending[entry["task_ids"][-1]] = (vantage, index)
        log.info("sent %d chunks to %s", len(todo), ", ".join(
            f"{v} ({sum(1 for t in todo if t[0] == v)})" for v in journal["vantages"]))

    def _reconcile(self):
        """Resume: decide for each submitted chunk whether to collect, wait or resend."""
        submitted = list(self._entries(("submitted",)))
        if not submitted:
            return
        in_broker = None
        collected = waiting = resent = 0
        for vantage, index, entry in submitted:
            task_id = entry["task_ids"][-1]
            result = self.app.AsyncResult(task_id)
            state = result.state
            if state == "SUCCESS":
                self._store(task_id, vantage, index, result._cache or
                            {"status": state, "result": result.result})
                collected += 1
            elif state in LIVE_STATES:
                self.pending[task_id] = (vantage, index)
                waiting += 1
            elif state == "PENDING":
                if in_broker is None:
                    in_broker = tasks_in_broker(self.broker_url)
                if task_id in in_broker:
                    self.pending[task_id] = (vantage, index)
                    waiting += 1
                else:
                    entry["state"] = "new"
                    resent += 1
            else:                                   # FAILURE, REVOKED
                entry["state"] = "failed"
                resent += 1
        log.info("resume: %d results collected from the backend, %d tasks still running or "
                 "queued, %d chunks to send again", collected, waiting, resent)

    # ---- waiting and storing --------------------------------------------------------------
    def _wait(self):
        """Block on the result channel until every pending task has finished."""
        if not self.pending:
            return
        from celery.result import ResultSet
        results = {task_id: self.app.AsyncResult(task_id) for task_id in self.pending}
        waiting = ResultSet(list(results.values()), app=self.app)
        for task_id, meta in self.app.backend.iter_native(
                waiting, timeout=None, interval=WAIT_INTERVAL, no_ack=True,
                on_interval=self.log_progress):
            vantage, index = self.pending.pop(task_id)
            self._store(task_id, vantage, index, meta)
            # Keep the finished state, drop the records: the result set holds every result
            # until the end, and a chunk's records are on disk now.
            results[task_id]._cache = {"task_id": task_id, "status": meta.get("status"),
                                       "result": None, "traceback": None, "children": []}
            self.log_progress()

    def _store(self, task_id, vantage, index, meta):
        """Store a finished task's records, or mark its chunk failed."""
        entry = self.journal["chunks"][vantage][chunk_name(index)]
        status = meta.get("status")
        result = meta.get("result")
        problem = None
        if status != "SUCCESS":
            problem = f"task {status}: {result!r}"[:500]
        else:
            problem = check_result(result, self.journal["id"], vantage, index)
        if problem:
            entry["state"] = "failed"
            entry["error"] = problem
            log.error("vantage %s chunk %d failed: %s", vantage, index, problem)
            self.cdir.save()
            return
        self.cdir.store_chunk(vantage, index, result["records"], result.get("metadata"))
        entry.update(state="stored", records=len(result["records"]), agent=result.get("agent"),
                     elapsed=result.get("elapsed"), outcome=_outcome(result.get("metadata")))
        entry.pop("error", None)
        self.cdir.save()

    # ---- progress -------------------------------------------------------------------------
    def _records_done(self):
        return sum(entry.get("records") or 0 for chunks in self.journal["chunks"].values()
                   for entry in chunks.values() if entry["state"] == "stored")

    def log_progress(self, force=False):
        """One line per call at most every ``progress_interval`` s (``force``: now)."""
        now = time.monotonic()
        if not force and (not self.progress or now - self._last_progress
                          < self.progress_interval):
            return
        self._last_progress = now
        log.info("progress: %s", progress_text(self.journal, now - self.started,
                                               self._records_done() - self._records_at_start))


def check_result(result, campaign, vantage, index):
    """None if ``result`` is a chunk result of this campaign, vantage and chunk; else why
    not (a result from another campaign's task or a confused agent is never stored)."""
    if not isinstance(result, dict) or not isinstance(result.get("records"), list):
        return "the result holds no record list"
    claimed = (result.get("campaign"), result.get("vantage"), result.get("chunk"))
    if claimed != (campaign, vantage, index):
        return f"the result is for {claimed!r}, not {(campaign, vantage, index)!r}"
    if any(not isinstance(rec, dict) or rec.get("vantage") != vantage
           for rec in result["records"]):
        return "a record does not name this vantage"
    return None


def _outcome(metadata):
    if isinstance(metadata, dict):
        return metadata.get("outcome")
    return None


def progress_text(journal, elapsed, new_records):
    """``v1 3/10 chunks 600/2,000 records; v2 ...; 1,234 records/s``."""
    per_target = journal.get("records_per_target") or 2
    parts = []
    for vantage in journal["vantages"]:
        chunks = journal["chunks"][vantage].values()
        stored = [e for e in chunks if e["state"] == "stored"]
        failed = sum(1 for e in chunks if e["state"] == "failed")
        records = sum(e.get("records") or 0 for e in stored)
        part = (f"{vantage} {len(stored)}/{len(chunks)} chunks {records:,}/"
                f"{journal['targets'] * per_target:,} records")
        parts.append(part + (f" ({failed} failed)" if failed else ""))
    rate = new_records / elapsed if elapsed > 0 else 0.0
    return "; ".join(parts) + f"; {rate:,.0f} records/s"


def tasks_in_broker(url):
    """Ids of the campaign tasks the Redis broker still holds: queued on a vantage's queue,
    or delivered and not yet acknowledged (kombu's ``unacked`` hash)."""
    import redis
    client = redis.Redis.from_url(url)
    found = set()
    try:
        for key in client.scan_iter(match=names.QUEUE_PREFIX + "*", count=1000):
            if client.type(key) == b"list":
                for raw in client.lrange(key, 0, -1):
                    found.add(_task_id(raw))
        for raw in client.hvals("unacked"):
            try:
                found.add(_task_id(json.dumps(json.loads(raw)[0])))
            except (ValueError, IndexError, TypeError):
                continue
    except redis.exceptions.RedisError as exc:
        log.warning("could not list the tasks in broker %s (%s): chunks without a result "
                    "are sent again", redact(url), exc)
    finally:
        client.close()
    found.discard(None)
    return found


def _task_id(raw):
    try:
        return json.loads(raw).get("headers", {}).get("id")
    except (ValueError, AttributeError):
        return None
