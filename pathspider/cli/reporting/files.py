"""Writing a report's files whole or not at all, and finding which plugin wrote a results file."""
import contextlib
import os
import tempfile

from pathspider.cli import results

#: Lines of a results file looked at to find its plugin.
PEEK_RECORDS = 200


@contextlib.contextmanager
def replaced(path):
    """A text stream to write ``path`` through: a temporary file beside it that replaces
    ``path`` only when the block ends without an exception (and is removed otherwise: Ctrl-C,
    a full disk), so a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path),
                                         dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def plugin_of_file(path, names):
    """The plugin name (one of ``names``) whose conditions the first job lines of ``path``
    carry (``ecn.connectivity.works`` -> ``ecn``), or None (flows records name no plugin)."""
    with open(path, encoding="utf-8", errors="replace") as stream:
        for count, record in enumerate(results.read_records(stream, path)):
            if count >= PEEK_RECORDS:
                break
            conditions = record.get("conditions") if results.is_job_line(record) else None
            for condition in conditions if isinstance(conditions, list) else ():
                prefix = condition.split(".", 1)[0] if isinstance(condition, str) else None
                if prefix in names:
                    return prefix
    return None
