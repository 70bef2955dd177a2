"""A campaign's directory: the journal, the chunks, and each vantage's records.

::

    DIR/campaign.json                      the journal (below)
    DIR/chunks/<chunk>.txt                 the targets of each chunk, as sent
    DIR/records/<vantage>/<chunk>.ndjson   the chunk's records from that vantage
    DIR/metadata/<vantage>/<chunk>.json    the run metadata of that chunk and vantage

Every file is written atomically (temporary file in the same directory, ``fsync``, ``rename``),
so a reader sees a file whole or not at all, and a chunk stored twice (a task delivered again
after its worker died) replaces itself: never a record twice. A chunk counts as *stored* once
its records file exists; the journal may lag behind (it is rewritten at most every
:data:`JOURNAL_INTERVAL` seconds while results arrive) and is corrected from the files when a
campaign is resumed or inspected.

The journal, ``campaign.json``: ``pathspider_campaign`` (layout version), ``id``,
``created``, ``plugin``, ``options``, ``run_options``, ``input`` (path and SHA-256),
``input_format``, ``chunk_size``, ``chunk_count``, ``targets`` (lines), ``vantages``,
``broker`` (without its password), ``status`` (``running``, ``interrupted``, ``done``,
``incomplete``), and ``chunks``: ``{vantage: {chunk: {"state", "task_ids", "records",
"agent", "outcome", "elapsed", "error"}}}`` with ``state`` one of ``new``, ``submitted``,
``stored``, ``failed``.
"""
import json
import os
import tempfile
import time

JOURNAL = "campaign.json"
LAYOUT = 1
JOURNAL_INTERVAL = 1.0


class StoreError(Exception):
    """A campaign directory that cannot be used (one line for the user)."""


def chunk_name(index):
    """File stem of chunk ``index``: five digits or more (``00042``)."""
    return f"{index:05d}"


def write_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` whole or not at all."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dirfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


class CampaignDir:
    """The files of one campaign (see the module docstring)."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.journal = None
        self._journal_written = 0.0

    # ---- paths ----------------------------------------------------------------------------
    def _p(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def journal_path(self):
        return self._p(JOURNAL)

    def chunk_path(self, index):
        return self._p("chunks", chunk_name(index) + ".txt")

    def records_path(self, vantage, index):
        return self._p("records", vantage, chunk_name(index) + ".ndjson")

    def metadata_path(self, vantage, index):
        return self._p("metadata", vantage, chunk_name(index) + ".json")

    # ---- creating and opening -------------------------------------------------------------
    def create(self, journal, chunks):
        """A new campaign: refuses a directory that already holds one."""
        if os.path.exists(self.journal_path):
            raise StoreError(f"{self.path} already holds a campaign: continue it with "
                             f"'pathspider campaign resume {self.path}'")
        try:
            os.makedirs(self._p("chunks"), exist_ok=True)
            for vantage in journal["vantages"]:
                os.makedirs(self._p("records", vantage), exist_ok=True)
                os.makedirs(self._p("metadata", vantage), exist_ok=True)
            for index, text in enumerate(chunks):
                write_atomic(self.chunk_path(index), text.encode("utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write the campaign directory {self.path}: "
                             f"{exc.strerror}") from None
        self.journal = journal
        self.save(force=True)

    def open(self):
        """Read the journal and mark every chunk whose records are on disk ``stored``."""
        try:
            with open(self.journal_path, encoding="utf-8") as stream:
                journal = json.load(stream)
        except FileNotFoundError:
            raise StoreError(f"{self.path} holds no campaign ({JOURNAL} missing)") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self.journal_path}: {exc}") from None
        if not isinstance(journal, dict) or journal.get("pathspider_campaign") != LAYOUT:
            raise StoreError(f"{self.journal_path} is not a campaign journal of layout {LAYOUT}")
        self.journal = journal
        for vantage, chunks in journal["chunks"].items():
            for name, entry in chunks.items():
                if os.path.exists(self.records_path(vantage, int(name))):
                    if entry["state"] != "stored":
                        entry["state"] = "stored"
                        entry["records"] = self.count_records(vantage, int(name))
                elif entry["state"] == "stored":
                    entry["state"] = "new"              # its file is gone: measure again
        return journal

    def read_chunk(self, index):
        with open(self.chunk_path(index), encoding="utf-8") as stream:
            return stream.read()

    # ---- storing --------------------------------------------------------------------------
    def store_chunk(self, vantage, index, records, metadata):
        """Write a chunk's records and metadata (each atomically; records last, since their
        file is what makes the chunk count as stored)."""
        if metadata is not None:
            write_atomic(self.metadata_path(vantage, index),
                         json.dumps(metadata, indent=1, sort_keys=True).encode("utf-8"))
        data = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
        write_atomic(self.records_path(vantage, index), data.encode("utf-8"))

    def count_records(self, vantage, index):
        with open(self.records_path(vantage, index), "rb") as stream:
            return sum(1 for line in stream if line.strip())

    def record_files(self, vantage):
        """Paths of the stored records of ``vantage``, in chunk order."""
        directory = self._p("records", vantage)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".ndjson")
                           and not n.startswith("."))
        except FileNotFoundError:
            return []
        return [os.path.join(directory, name) for name in names]

    def save(self, force=False):
        """Rewrite the journal (atomically); unless ``force``, at most every
        :data:`JOURNAL_INTERVAL` seconds."""
        now = time.monotonic()
        if not force and now - self._journal_written < JOURNAL_INTERVAL:
            return False
        write_atomic(self.journal_path,
                     json.dumps(self.journal, indent=1, sort_keys=True).encode("utf-8"))
        self._journal_written = now
        return True
