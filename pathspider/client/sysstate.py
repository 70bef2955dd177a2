"""Change system state for a measurement and put it back afterwards.

Measurements such as ``ecn`` and ``dscp`` switch global settings between the baseline (A) and
the experiment (B): a sysctl (``net.ipv4.tcp_ecn``) or a firewall rule. PATHspider 1.0 did this
with a ``sysctl``/``iptables`` subprocess per switch, flushed the whole mangle table and never put
anything back. This module keeps a registry of everything a plugin changed, remembers the
original values, and restores them exactly once, on every way a run can end:

* normal end and errors: an :mod:`atexit` hook, plus :func:`restore_all` for runners that want to
  restore at a precise moment (the standalone runner calls it in a ``finally``);
* Ctrl-C: ``KeyboardInterrupt`` unwinds the main thread, then the :mod:`atexit` hook runs;
* SIGTERM / SIGHUP: :func:`install_signal_handlers` turns them into :class:`SystemExit` in the
  main thread, so the same unwinding happens (only if nothing else handles these signals yet);
* SIGKILL, a power cut, a crash of the interpreter: nothing in the process runs, so the original
  values are also written to a *journal* on disk before anything changes, and the next run in
  the same network namespace (or ``pathspider restore``) puts them back (see below).

Sysctls are written through a file descriptor opened once (``pwrite`` at offset 0), so a switch
costs one system call and no process. Values are only written when they change, and restoring
writes the original back only if this process changed it.

nftables state lives only in tables this module creates (``table inet pathspider_<plugin>``);
they are created atomically with ``nft -f -`` and deleted on restore. Nothing else is flushed or
touched.

Restoring happens only in the process that registered the state: a forked child (the observer
process) never restores its parent's state, never writes its journal and never releases its
lock. After a knob was restored, further writes to it are ignored, so a worker thread that is
still switching configurations while the interpreter shuts down cannot undo the restoration.

Journal
-------
Everything is per network namespace (sysctls under ``net.`` and nftables are), identified by
``<st_dev>-<st_ino>`` of the calling thread's ``/proc/thread-self/ns/net`` (a thread that joined
another namespace with ``setns`` gets that namespace's journal and lock). Files live in
:data:`RUN_DIR` (``/run/pathspider``, created 0755); a process that cannot create or write it
(not root) uses ``$XDG_RUNTIME_DIR/pathspider``, else ``/tmp/pathspider-<uid>`` (created 0700;
refused if it is a symlink or belongs to someone else). For the namespace ``<key>``:

``netns-<key>.json``, the journal: ``{"version": 1, "netns": key, "cookie": the namespace's
SO_NETNS_COOKIE (never reused, unlike the inode), "owner": {"pid", "start", "argv"},
"entries": [{"kind": "sysctl", "name": "net.ipv4.tcp_ecn", "original": "2"},
{"kind": "nft", "family": "inet", "name": "pathspider_dscp"}, ...]}``. ``start`` is field 22
of ``/proc/<pid>/stat``, so a reused pid is not taken for the owner. A sysctl is journaled
when it is registered (its original is known then, before the first change); an nftables table
before it is created. Entries are removed as they are restored, the file when it is empty.
Every write is atomic (temporary file in the same directory, ``fsync``, ``os.replace``,
``fsync`` of the directory).

``netns-<key>.lock``, the lock: one state-changing process per network namespace. The first
registration of a sysctl or table in a process takes ``flock(LOCK_EX | LOCK_NB)`` on it and
writes ``{"pid", "start", "argv"}`` into it; a second process gets a one-line
:class:`NamespaceBusyError` (a :class:`SystemStateError`) naming the holder: ``another
pathspider run (pid 1234: pathspider -i eth0 ecn) is changing system state in this network
namespace; wait for it to end or stop it``. The lock is released (file unlinked, then closed)
when everything the process registered has been restored; if the process dies the kernel
releases it. A process whose restoring failed keeps the lock (and the journal entry) until it
ends, so nobody measures on top of state it could not put back.

Repair: whoever takes the lock first looks for a journal. If its owner is dead (or is a
predecessor of a reused pid), the entries are put back (each sysctl's original written, each
table deleted), one warning names what was restored and whose run left it, and the journal is
removed, all before any original value is read. So a run after a SIGKILLed run reads the true
originals. A journal whose namespace cookie differs from the current one belonged to a deleted
namespace whose inode was reused: it is discarded, not applied.

``pathspider restore`` (:mod:`pathspider.cli.restore`, built on :func:`repair` and
:func:`journal_status`) does the repair on demand and shows what a journal holds.

Privileges: changing sysctls under ``net.`` and nftables needs CAP_NET_ADMIN; without it the
plugins fail with one line saying so (:class:`SystemStateError`), before touching any file.
"""
import atexit
import errno
import fcntl
import json
import logging
import os
import shlex
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

from pathspider.client import privileges

log = logging.getLogger("pathspider.client.sysstate")

NFT_TIMEOUT = 10.0
"""Seconds one ``nft`` invocation may take before it counts as failed."""

RUN_DIR = "/run/pathspider"
"""Where journals and locks live when the process may write there (root)."""
TMP_DIR_TEMPLATE = "/tmp/pathspider-{uid}"
"""Last-resort directory for unprivileged processes (after ``$XDG_RUNTIME_DIR/pathspider``)."""
JOURNAL_VERSION = 1

_SO_NETNS_COOKIE = getattr(socket, "SO_NETNS_COOKIE", 71)


class SystemStateError(RuntimeError):
    """A sysctl or nftables change could not be made or undone (the message is one line)."""


class NamespaceBusyError(SystemStateError):
    """Another live process holds the lock of this network namespace; ``holder`` describes it
    (``{"pid", "start", "argv"}``, or None if it could not be read)."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder


# --- processes -------------------------------------------------------------------------------

def process_start(pid):
    """Start time of process ``pid`` (field 22 of ``/proc/<pid>/stat``), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            text = stream.read().decode(errors="replace")
    except OSError:
        return None
    try:
        # comm (field 2) may contain spaces and parentheses: count from the last ")".
        return int(text[text.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _cmdline(pid="self"):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            raw = stream.read()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def identity():
    """This process as journals and locks record it: ``{"pid", "start", "argv"}``."""
    pid = os.getpid()
    return {"pid": pid, "start": process_start(pid), "argv": _cmdline()}


def is_alive(owner):
    """Whether the process ``owner`` (an :func:`identity` dict) still runs (same pid and start)."""
    try:
        pid = int(owner["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    start = process_start(pid)
    return start is not None and start == owner.get("start")


def describe(owner, width=100):
    """``"pid 1234: pathspider -i eth0 ecn"`` (one line, at most about ``width`` characters)."""
    if not owner:
        return "pid unknown"
    argv = [str(arg) for arg in owner.get("argv") or []]
    if len(argv) > 1 and os.path.basename(argv[0]).startswith("python") \
            and not argv[1].startswith("-"):
        argv = argv[1:]                            # "python .../bin/pathspider ..."
    if argv:
        argv[0] = os.path.basename(argv[0])
    command = " ".join(shlex.join(argv).split())
    if len(command) > width:
        command = command[:width - 3] + "..."
    return f"pid {owner.get('pid', '?')}: {command}" if command else f"pid {owner.get('pid', '?')}"


# --- network namespace -----------------------------------------------------------------------

def netns_key():
    """``"<st_dev>-<st_ino>"`` of the calling thread's network namespace."""
    try:
        st = os.stat("/proc/thread-self/ns/net")
    except FileNotFoundError:
        st = os.stat("/proc/self/ns/net")
    return f"{st.st_dev}-{st.st_ino}"


def netns_cookie():
    """The calling thread's network namespace cookie (unique per boot), None if unsupported."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8),
                                  "little")
    except OSError:
        return None


# --- directory and files ---------------------------------------------------------------------

def _usable(path, mode, private):
    """Make sure ``path`` is a directory this process may use; return None or the problem."""
    uid = os.geteuid()
    try:
        os.mkdir(path, mode)
        os.chmod(path, mode)                       # the umask may have removed bits
    except FileExistsError:
        pass
    except OSError as exc:
        return exc.strerror
    try:
        st = os.lstat(path)
    except OSError as exc:
        return exc.strerror
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if private and st.st_uid != uid:
        return f"belongs to uid {st.st_uid}, not {uid}"
    if not private and st.st_uid not in (0, uid):
        return f"belongs to uid {st.st_uid}"
    if st.st_mode & 0o022 and (private or st.st_uid != 0):
        return "is writable by others"
    if not os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return "not writable"
    return None


def _candidate_dirs():
    """``[(path, mode, private)]`` in order of preference."""
    found = [(RUN_DIR, 0o755, False)]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        found.append((os.path.join(runtime, "pathspider"), 0o700, True))
    found.append((TMP_DIR_TEMPLATE.format(uid=os.geteuid()), 0o700, True))
    return found


def journal_dir():
    """The directory for journals and locks (created if missing); SystemStateError if none can
    be used."""
    problems = []
    for path, mode, private in _candidate_dirs():
        problem = _usable(path, mode, private)
        if problem is None:
            return path
        problems.append(f"{path}: {problem}")
    raise SystemStateError("no usable directory for the system-state journal ("
                           + "; ".join(problems) + ")")


def _paths(directory, key):
    base = os.path.join(directory, f"netns-{key}")
    return base + ".json", base + ".lock"


def journal_path(key=None):
    """The journal file of namespace ``key`` (default: the calling thread's)."""
    return _paths(journal_dir(), key or netns_key())[0]


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".netns-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(data, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fchmod(stream.fileno(), 0o644)
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    _fsync_dir(os.path.dirname(path))


def _read_journal(path):
    """The journal at ``path`` (a dict) or None if there is none."""
    try:
        with open(path) as stream:
            data = json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SystemStateError(f"cannot read the system-state journal {path} ({exc}); "
                               "inspect it and remove it") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries", []), list):
        raise SystemStateError(f"the system-state journal {path} is not a journal; "
                               "inspect it and remove it")
    return data


# --- the lock --------------------------------------------------------------------------------

def _read_holder(fd):
    """The holder recorded in a lock file; retried briefly (it may be being written)."""
    for _ in range(10):
        try:
            text = os.pread(fd, 65536, 0).decode(errors="replace")
            if text.strip():
                return json.loads(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return None


def busy_message(holder):
    """The one line for a namespace whose lock ``holder`` holds."""
    return (f"another pathspider run ({describe(holder)}) is changing system state in this "
            "network namespace; wait for it to end or stop it")


def _take_lock(lock_path):
    """Lock ``lock_path`` (create it); returns the descriptor; NamespaceBusyError if held."""
    for _ in range(50):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise SystemStateError(f"cannot open the lock {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise NamespaceBusyError(busy_message(holder), holder) from None
        except OSError as exc:
            os.close(fd)
            raise SystemStateError(f"cannot lock {lock_path}: {exc.strerror}") from None
        # A releasing holder unlinks the file before closing it: make sure we locked the file
        # that is still at the path, not one that was just removed.
        try:
            here = os.stat(lock_path, follow_symlinks=False)
        except FileNotFoundError:
            here = None
        mine = os.fstat(fd)
        if here is None or (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            continue
        try:
            text = json.dumps(identity()).encode() + b"\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
        except OSError as exc:
            _release_lock(fd, lock_path)
            raise SystemStateError(f"cannot write the lock {lock_path}: {exc.strerror}") from None
        return fd
    raise SystemStateError(f"cannot take the lock {lock_path}: it keeps being replaced")


def _release_lock(fd, lock_path):
    try:
        os.unlink(lock_path)
    except OSError:
        pass
    os.close(fd)


# --- repair ----------------------------------------------------------------------------------

class Repair:
    """What :func:`repair` (or the first registration of a run) found in a leftover journal.

    ``owner``: the run that left it; ``restored``: what was put back (one phrase each);
    ``unchanged``: entries that were already at their original; ``discarded``: True if the
    journal belonged to a namespace that no longer exists and was dropped unapplied.
    """

    def __init__(self, path, owner):
        self.path = path
        self.owner = owner
        self.restored = []
        self.unchanged = []
        self.discarded = False

    def summary(self):
        """One line for the log."""
        if self.discarded:
            return (f"discarded the system-state journal {self.path} of a network namespace "
                    f"that no longer exists (left by {describe(self.owner)})")
        if self.restored:
            return ("restored system state left by a pathspider run that ended without "
                    f"restoring it ({describe(self.owner)}): " + "; ".join(self.restored))
        return (f"removed the journal of a pathspider run that ended without restoring "
                f"({describe(self.owner)}); its state was already back ("
                + ", ".join(self.unchanged) + ")")


def _sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def _repair_sysctl(entry, report):
    name, original = entry["name"], str(entry["original"])
    try:
        fd = os.open(_sysctl_path(name), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        report.unchanged.append(f"{name} (no longer exists)")
        return
    except PermissionError:
        raise SystemStateError(_capability_message(name)) from None
    try:
        now = os.pread(fd, 4096, 0).decode().strip()
        if now == original:
            report.unchanged.append(f"{name}={original}")
            return
        os.pwrite(fd, original.encode(), 0)
        report.restored.append(f"sysctl {name} {now} -> {original}")
    finally:
        os.close(fd)


def _repair_nft(entry, report):
    ref = f"{entry.get('family', 'inet')} {entry['name']}"
    try:
        run_nft(f"delete table {ref}\n", what=f"nftables (table {ref})")
    except SystemStateError as exc:
        if "No such file or directory" in str(exc):
            report.unchanged.append(f"table {ref} (absent)")
            return
        raise
    report.restored.append(f"deleted nftables table {ref}")


def _repair(journal_file, key):
    """Put back what the journal at ``journal_file`` holds (lock held); None if there is none."""
    journal = _read_journal(journal_file)
    if journal is None:
        return None
    owner = journal.get("owner") or {}
    report = Repair(journal_file, owner)
    me = identity()
    if is_alive(owner) and (owner.get("pid"), owner.get("start")) != (me["pid"], me["start"]):
        raise SystemStateError(
            f"pathspider run ({describe(owner)}) is still running but its journal "
            f"{journal_file} has changes it did not restore; wait for it to end or stop it, "
            "then run 'pathspider restore'")
    cookie = netns_cookie()
    if journal.get("cookie") is not None and cookie is not None and journal["cookie"] != cookie:
        report.discarded = True
        _remove(journal_file)
        return report
    entries = journal.get("entries", [])
    failed, errors = [], []
    for entry in reversed(entries):
        try:
            if entry.get("kind") == "sysctl":
                _repair_sysctl(entry, report)
            elif entry.get("kind") == "nft":
                _repair_nft(entry, report)
            else:
                raise SystemStateError(f"unknown journal entry {entry!r}")
        except (OSError, KeyError, SystemStateError) as exc:
            failed.insert(0, entry)
            errors.append(str(exc) if not isinstance(exc, OSError) else
                          f"{entry.get('name')}: {exc.strerror}")
    if failed:
        journal["entries"] = failed
        _write_atomic(journal_file, journal)
        raise SystemStateError(
            f"could not restore the state left by pathspider run ({describe(owner)}): "
            + "; ".join(errors) + f" (journal {journal_file})")
    _remove(journal_file)
    return report


# --- the per-namespace guard: lock + journal of this process ---------------------------------

class _Guard:
    """This process's hold on one network namespace: the lock, and the journal it writes."""

    def __init__(self, key, directory):
        self.key = key
        self.pid = os.getpid()
        self.journal_file, self.lock_file = _paths(directory, key)
        self.lock_fd = None
        self.cookie = netns_cookie()
        self.users = 0
        self.entries = {}              # ident -> {"entry": dict, "refs": int, "failed": bool}
        self.repair = None

    @classmethod
    def open(cls, key, announce=True):
        """Take the namespace's lock and repair a leftover journal (lock held by the caller)."""
        guard = cls(key, journal_dir())
        guard.lock_fd = _take_lock(guard.lock_file)
        try:
            guard.repair = _repair(guard.journal_file, key)
        except BaseException:
            guard._unlock()
            raise
        if announce and guard.repair is not None:
            if guard.repair.restored or guard.repair.discarded:
                log.warning("%s", guard.repair.summary())
            else:
                log.info("%s", guard.repair.summary())
        return guard

    def _ours(self):
        return os.getpid() == self.pid and self.lock_fd is not None

    def _journal(self):
        return {"version": JOURNAL_VERSION, "netns": self.key, "cookie": self.cookie,
                "owner": identity(), "entries": [slot["entry"] for slot in self.entries.values()]}

    def _sync(self):
        if self.entries:
            _write_atomic(self.journal_file, self._journal())
        else:
            _remove(self.journal_file)

    def add(self, ident, entry):
        """Journal ``entry`` (once per ``ident``) before the state it describes changes."""
        with _guards_lock:
            if not self._ours():
                return
            slot = self.entries.get(ident)
            if slot is not None:
                slot["refs"] += 1
                return
            self.entries[ident] = {"entry": entry, "refs": 1, "failed": False}
            try:
                self._sync()
            except BaseException as exc:           # also SystemExit from a signal handler
                del self.entries[ident]
                if isinstance(exc, OSError):
                    raise SystemStateError(f"cannot write the system-state journal "
                                           f"{self.journal_file}: {exc.strerror}") from None
                raise

    def done(self, ident=None, ok=True):
        """One user is finished; its entry ``ident`` was restored (``ok``) or not."""
        with _guards_lock:
            if not self._ours():
                return
            slot = self.entries.get(ident) if ident is not None else None
            if slot is not None:
                slot["refs"] -= 1
                slot["failed"] = slot["failed"] or not ok
                if slot["refs"] <= 0 and not slot["failed"]:
                    del self.entries[ident]
                    try:
                        self._sync()
                    except OSError as exc:
                        log.error("cannot update the system-state journal %s: %s",
                                  self.journal_file, exc.strerror)
            self.users -= 1
            if self.users > 0:
                return
            if self.entries:
                log.error("system state in this network namespace could not be fully restored "
                          "(%s); the namespace stays locked until this process ends, then run "
                          "'pathspider restore'", ", ".join(
                              str(slot["entry"].get("name")) for slot in self.entries.values()))
                return
            try:
                _remove(self.journal_file)         # normally gone with its last entry
            except OSError:
                pass
            self._unlock()

    def _unlock(self):
        if _guards.get(self.key) is self:
            del _guards[self.key]
        if self.lock_fd is not None:
            _release_lock(self.lock_fd, self.lock_file)
            self.lock_fd = None


_guards = {}
_guards_lock = threading.RLock()


def _acquire():
    """The guard of the calling thread's namespace, with one more user (lock and repair on the
    first use in this process)."""
    key = netns_key()
    with _guards_lock:
        guard = _guards.get(key)
        if guard is None or not guard._ours():
            guard = _Guard.open(key)
            _guards[key] = guard
        guard.users += 1
        return guard


def _after_fork_in_child():
    """A forked child does not share its parent's hold: it closes its copies of the lock
    descriptors (the lock stays the parent's) and forgets the guards."""
    global _guards_lock
    _guards_lock = threading.RLock()
    for guard in list(_guards.values()):
        if guard.lock_fd is not None:
            try:
                os.close(guard.lock_fd)
            except OSError:
                pass
    _guards.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def repair():
    """Take the calling thread's namespace lock, put back what a leftover journal holds,
    release the lock. Returns a :class:`Repair` or None if there was no journal.

    Raises :class:`NamespaceBusyError` if a live run holds the lock, :class:`SystemStateError`
    if something could not be restored. Does nothing (None) if this process itself holds the
    namespace: its journal is not a leftover.
    """
    key = netns_key()
    with _guards_lock:
        guard = _guards.get(key)
        if guard is not None and guard._ours():
            return None
        guard = _Guard.open(key, announce=False)
        guard._unlock()
        return guard.repair


class JournalStatus:
    """What :func:`journal_status` found: ``path`` and ``journal`` (None if no journal) and the
    live ``holder`` of the lock (None if free)."""

    def __init__(self, key, path, journal, holder):
        self.key = key
        self.path = path
        self.journal = journal
        self.holder = holder


def journal_status():
    """The journal and lock holder of the calling thread's namespace, without changing anything
    (no directory is created, no lock is taken). Every candidate directory is searched, so an
    unprivileged user sees root's journal."""
    key = netns_key()
    found = JournalStatus(key, None, None, None)
    for directory, _, _ in _candidate_dirs():
        journal_file, lock_file = _paths(directory, key)
        if found.holder is None:
            try:
                with open(lock_file) as stream:
                    holder = json.loads(stream.read() or "null")
                if holder and is_alive(holder):
                    found.holder = holder
            except (OSError, ValueError):
                pass
        if found.journal is None:
            journal = _read_journal(journal_file)
            if journal is not None:
                found.path, found.journal = journal_file, journal
    return found


# --- sysctls and tables ----------------------------------------------------------------------

def _capability_message(what):
    if what.startswith("net.") or what.startswith("nftables"):
        capability = "CAP_NET_ADMIN"
    else:
        capability = "CAP_SYS_ADMIN"
    return f"changing {what} needs {capability}: {privileges.HINT}"


class _Journalled:
    """What a sysctl and a table share: restored once, by the process that made the change,
    with its journal entry dropped only when the undo worked."""

    def restore(self):
        """Undo the change (see :meth:`_undo`) once; does nothing in a forked child."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ok = False
            try:
                self._undo()
                ok = True
            finally:
                self._release()
                if self._guard is not None:
                    self._guard.done(self._ident, ok)

    def _undo(self):
        raise NotImplementedError

    def _release(self):
        """Close what the change held open, whether the undo worked or not."""


class Sysctl(_Journalled):
    """One sysctl (dotted name, e.g. ``net.ipv4.tcp_ecn``) with its original value.

    The file under /proc/sys is opened read-write once; :meth:`set` writes only on change.
    Sysctls under ``net.`` are per network namespace: the value read and written is the one of
    the namespace this thread was in when the knob was opened.

    With ``journal=True`` (the default) the knob takes the namespace's lock (repairing leftovers
    of a dead run first), then reads its original and journals it; :meth:`restore` removes the
    entry (and releases the lock when it was this process's last one).
    """

    def __init__(self, name, journal=True):
        self.name = name
        self.path = _sysctl_path(name)
        self._pid = os.getpid()
        self._guard = None
        self._ident = ("sysctl", name)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            raise SystemStateError(_capability_message(name)) from None
        except FileNotFoundError:
            raise SystemStateError(f"no sysctl {name} ({self.path}) in this kernel") from None
        except OSError as exc:
            raise SystemStateError(
                f"cannot open sysctl {name} for writing ({self.path}): {exc.strerror}") from None
        try:
            if journal:
                # Lock and repair before reading: a killed run's change is not an original.
                self._guard = _acquire()
            self.original = self.read()
            if self._guard is not None:
                self._guard.add(self._ident, {"kind": "sysctl", "name": name,
                                              "original": self.original})
        except BaseException:
            if self._guard is not None:
                self._guard.done(None)
            os.close(self._fd)
            raise
        self._lock = threading.Lock()
        self._current = self.original
        self._changed = False
        self._closed = False

    def read(self):
        """The value the kernel reports now, as a stripped string."""
        return os.pread(self._fd, 4096, 0).decode().strip()

    def set(self, value):
        """Write ``value`` (int or str) unless it is already in force; no-op once restored."""
        text = str(value)
        with self._lock:
            if self._closed or text == self._current:
                return
            try:
                os.pwrite(self._fd, text.encode(), 0)
            except OSError as exc:
                raise SystemStateError(
                    f"cannot set sysctl {self.name}={text}: {exc.strerror}") from exc
            self._current = text
            self._changed = True

    def _undo(self):
        """Write the original value back if this process changed it."""
        if self._changed and self.read() != self.original:
            os.pwrite(self._fd, self.original.encode(), 0)
            log.debug("restored sysctl %s=%s", self.name, self.original)

    def _release(self):
        os.close(self._fd)

    def __repr__(self):
        return f"<Sysctl {self.name} original={self.original!r} current={self._current!r}>"


def run_nft(script, what="nftables"):
    """Run an nftables script atomically (``nft -f -``); raise SystemStateError on failure.

    ``what`` names the change in the message when the capability is missing.
    """
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                              timeout=NFT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise SystemStateError("nft not found: install the nftables package") from None
    except subprocess.TimeoutExpired:
        raise SystemStateError(f"nft did not finish within {NFT_TIMEOUT} s") from None
    if proc.returncode != 0:
        if "Operation not permitted" in proc.stderr:
            raise SystemStateError(_capability_message(what))
        message = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise SystemStateError(f"nft failed: {message}")


class NftTable(_Journalled):
    """An nftables table owned by one plugin: created on construction, deleted on restore.

    ``definition`` is the body of the table (chains and rules, nft syntax). A leftover table of
    the same name (from a run that was killed with SIGKILL) is replaced in the same transaction,
    so creation never fails because of it and never leaves two versions. With ``journal=True``
    (the default) the table is journaled (under the namespace's lock) before it is created.
    """

    def __init__(self, name, definition, family="inet", journal=True):
        self.family = family
        self.name = name
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._guard = None
        self._ident = ("nft", family, name)
        if not privileges.has(privileges.CAP_NET_ADMIN):    # say so before touching any file
            raise SystemStateError(_capability_message(f"nftables (table {family} {name})"))
        try:
            if journal:
                self._guard = _acquire()
                self._guard.add(self._ident, {"kind": "nft", "family": family, "name": name})
            run_nft(f"table {family} {name}\n"
                    f"delete table {family} {name}\n"
                    f"table {family} {name} {{\n{definition}\n}}\n",
                    what=f"nftables (table {family} {name})")
        except BaseException:
            # The transaction is atomic: nothing was created, nothing needs restoring.
            if self._guard is not None:
                self._guard.done(self._ident)
            raise
        log.debug("created nftables table %s %s", family, name)

    @property
    def ref(self):
        """``"<family> <name>"``, for use in commands (``flush chain {ref} toggle``)."""
        return f"{self.family} {self.name}"

    def apply(self, script):
        """Run ``script`` (commands about this table) atomically; no-op once restored."""
        with self._lock:
            if self._closed:
                return
            run_nft(script, what=f"nftables (table {self.ref})")

    def _undo(self):
        """Delete the table (if it still exists)."""
        run_nft(f"table {self.ref}\ndelete table {self.ref}\n",
                what=f"nftables (table {self.ref})")
        log.debug("deleted nftables table %s", self.ref)

    def __repr__(self):
        return f"<NftTable {self.ref}>"


class SystemState:
    """Registry of changed state; restores everything in reverse order of registration.

    Usable as a context manager (restores on exit). :meth:`restore` is idempotent and restores
    each item exactly once; failures are logged and the remaining items are still restored.
    With ``track=True`` the registry is also restored by :func:`restore_all`, i.e. at exit and
    on SIGTERM/SIGHUP, even if its owner never calls :meth:`restore` (a plugin creates its
    registry this way and restores it in ``restore_system_state``).
    """

    def __init__(self, track=False):
        self._items = []
        self._sysctls = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._track = track

    def sysctl(self, name):
        """The :class:`Sysctl` for ``name``, opened and remembered on first use."""
        with self._lock:
            knob = self._sysctls.get(name)
            if knob is None:
                knob = Sysctl(name)
                self._sysctls[name] = knob
                self._register(knob)
                log.debug("registered sysctl %s (original %s)", name, knob.original)
            return knob

    def nft_table(self, name, definition, family="inet"):
        """Create an :class:`NftTable` and register it for deletion."""
        table = NftTable(name, definition, family)
        with self._lock:
            self._register(table)
        return table

    def _register(self, item):
        """Remember ``item`` (lock held); a tracked registry joins :func:`restore_all`."""
        if not self._items and self._track:
            _track(self)
        self._items.append(item)

    def restore(self):
        """Restore every registered item (newest first); returns the list of errors."""
        if os.getpid() != self._pid:
            return []
        with self._lock:
            items, self._items = self._items, []
            self._sysctls = {}
        if self._track:
            _untrack(self)
        errors = []
        for item in reversed(items):
            try:
                item.restore()
            except (OSError, SystemStateError) as exc:
                log.error("could not restore %r: %s", item, exc)
                errors.append(exc)
        return errors

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.restore()
        return False


_tracked = []
_tracked_lock = threading.Lock()
_hooks_installed = False


def _track(state):
    """Remember ``state`` for :func:`restore_all`; install the exit hooks on first use."""
    global _hooks_installed
    with _tracked_lock:
        if state not in _tracked:
            _tracked.append(state)
        install = not _hooks_installed
        _hooks_installed = True
    if install:
        atexit.register(restore_all)
        install_signal_handlers()


def _untrack(state):
    with _tracked_lock:
        if state in _tracked:
            _tracked.remove(state)


_default = None


def _default_state():
    global _default
    with _tracked_lock:
        state = _default
    if state is None:
        state = SystemState(track=True)
        with _tracked_lock:
            if _default is None:
                _default = state
            state = _default
    return state


def sysctl(name):
    """Register (once) and return the process-wide :class:`Sysctl` for ``name``.

    The original value is remembered now and restored when the run ends in any way.
    """
    return _default_state().sysctl(name)


def nft_table(name, definition, family="inet"):
    """Create a process-wide registered :class:`NftTable`; deleted when the run ends."""
    return _default_state().nft_table(name, definition, family)


def restore_all():
    """Restore every tracked registry (:func:`sysctl`, :func:`nft_table`, and every
    ``SystemState(track=True)``), newest first.

    Safe to call several times and from any exit path; returns the list of errors.
    """
    with _tracked_lock:
        states = list(_tracked)
    errors = []
    for state in reversed(states):
        errors.extend(state.restore())
    return errors


def _exit_on_signal(signum, frame):
    """Turn a termination signal into SystemExit so finally blocks and atexit hooks run."""
    raise SystemExit(128 + signum)


def install_signal_handlers(signums=(signal.SIGTERM, signal.SIGHUP)):
    """Make SIGTERM and SIGHUP unwind the main thread (exit status 128+signal).

    Only signals still at their default disposition are taken over, so a runner that installed
    its own handlers keeps them (it must then call :func:`restore_all` itself). Returns the
    signals taken over; does nothing outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    taken = []
    for signum in signums:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _exit_on_signal)
            taken.append(signum)
    return taken
