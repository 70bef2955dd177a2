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
  main thread, so the same unwinding happens (only if nothing else handles these signals yet).

Sysctls are written through a file descriptor opened once (``pwrite`` at offset 0), so a switch
costs one system call and no process. Values are only written when they change, and restoring
writes the original back only if this process changed it.

nftables state lives only in tables this module creates (``table inet pathspider_<plugin>``);
they are created atomically with ``nft -f -`` and deleted on restore. Nothing else is flushed or
touched.

Restoring happens only in the process that registered the state: a forked child (the observer
process) never restores its parent's state. After a knob was restored, further writes to it are
ignored, so a worker thread that is still switching configurations while the interpreter shuts
down cannot undo the restoration.
"""
import atexit
import logging
import os
import signal
import subprocess
import threading

log = logging.getLogger("pathspider.client.sysstate")

NFT_TIMEOUT = 10.0
"""Seconds one ``nft`` invocation may take before it counts as failed."""


class SystemStateError(RuntimeError):
    """A sysctl or nftables change could not be made or undone."""


class Sysctl:
    """One sysctl (dotted name, e.g. ``net.ipv4.tcp_ecn``) with its original value.

    The file under /proc/sys is opened read-write once; :meth:`set` writes only on change.
    Sysctls under ``net.`` are per network namespace: the value read and written is the one of
    the namespace this process was in when the knob was opened.
    """

    def __init__(self, name):
        self.name = name
        self.path = "/proc/sys/" + name.replace(".", "/")
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise SystemStateError(
                f"cannot open sysctl {name} for writing ({self.path}): {exc.strerror}; "
                "changing it needs root (run inside a network namespace)") from exc
        self._lock = threading.Lock()
        self.original = self.read()
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

    def restore(self):
        """Write the original value back if it was changed, then close the knob."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._changed and self.read() != self.original:
                    os.pwrite(self._fd, self.original.encode(), 0)
                    log.debug("restored sysctl %s=%s", self.name, self.original)
            finally:
                os.close(self._fd)

    def __repr__(self):
        return f"<Sysctl {self.name} original={self.original!r} current={self._current!r}>"


def run_nft(script):
    """Run an nftables script atomically (``nft -f -``); raise SystemStateError on failure."""
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                              timeout=NFT_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise SystemStateError("nft not found: install the nftables package") from exc
    except subprocess.TimeoutExpired as exc:
        raise SystemStateError(f"nft did not finish within {NFT_TIMEOUT} s") from exc
    if proc.returncode != 0:
        message = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise SystemStateError(f"nft failed: {message}")


class NftTable:
    """An nftables table owned by one plugin: created on construction, deleted on restore.

    ``definition`` is the body of the table (chains and rules, nft syntax). A leftover table of
    the same name (from a run that was killed with SIGKILL) is replaced in the same transaction,
    so creation never fails because of it and never leaves two versions.
    """

    def __init__(self, name, definition, family="inet"):
        self.family = family
        self.name = name
        self._lock = threading.Lock()
        self._closed = False
        run_nft(f"table {family} {name}\n"
                f"delete table {family} {name}\n"
                f"table {family} {name} {{\n{definition}\n}}\n")
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
            run_nft(script)

    def restore(self):
        """Delete the table (if it still exists)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            run_nft(f"table {self.ref}\ndelete table {self.ref}\n")
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
