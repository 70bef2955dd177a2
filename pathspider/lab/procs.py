"""Processes the lab started: check, wait for and stop them by PID, without polling; run a
command in the foreground with signals forwarded to it (``pathspider lab exec``)."""
import ctypes
import logging
import os
import select
import signal
import subprocess
import threading

log = logging.getLogger("pathspider.lab")

MARKER = b"pathspider.lab"

#: Signals ``run_foreground`` passes on to its child instead of dying of them.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1
_SI_KERNEL = 0x80


def cmdline(pid):
    """The command line of ``pid`` as bytes, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def state(pid):
    """The state letter of ``pid`` (``R``, ``S``, ``T`` stopped, ``Z`` zombie, ...) or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_lab_process(pid, marker=MARKER):
    """Whether ``pid`` runs and its command line shows it is one of the lab's (not reused)."""
    line = cmdline(pid)
    return bool(line) and marker in line


def wait_exit(pid, timeout):
    """Block until ``pid`` has exited or ``timeout`` seconds passed; True if it exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def stop(pids, timeout=5.0):
    """SIGTERM ``pids``, wait up to ``timeout`` for each, then SIGKILL any that remain.
    (SIGCONT after SIGTERM, so that a stopped process acts on it.)"""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)
    for pid in pids:
        if not wait_exit(pid, timeout):
            log.warning("process %d ignored SIGTERM; killing it", pid)
            _signal(pid, signal.SIGKILL)
            wait_exit(pid, timeout)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def die_with_parent(sig=signal.SIGTERM):
    """A ``preexec_fn`` that makes the child get ``sig`` when its parent goes away.

    ``prctl(PR_SET_PDEATHSIG)`` survives the exec of ``ip netns exec`` and of the command (not
    of set-user-ID programs). The kernel sends the signal when the *thread* that forked the
    child exits, so fork from a thread that outlives the child (the main thread, or one that
    waits for the child). Build it in the parent, just before the fork: it remembers the
    parent's PID, and a child whose parent died before the prctl took effect ends at once.
    """
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)   # loaded before the fork, not in the child
    sig = int(sig)

    def setup():
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)
            os._exit(128 + sig)
    return setup


def shell_status(returncode):
    """A Popen return code as a shell reports it: 128+N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_foreground(argv, **popen_kwargs):
    """Run ``argv`` as a child, forwarding signals to it; returns its shell-style status.

    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to this process go to the child
    instead (this process does not die of them; it waits for the child), except that a signal
    the kernel sent to the whole foreground process group (Ctrl-C, Ctrl-\\, a terminal
    hang-up) is not sent a second time to a child in that group. The child starts with the
    signal dispositions this process had (a signal ignored here, e.g. SIGHUP under ``nohup``
    or SIGINT in a background job of a script, is ignored there too unless the child sets a
    handler; it is forwarded all the same). The child gets SIGTERM should this process die
    (even of SIGKILL). The status is the child's exit status, or 128+N if it died of signal N.

    Signals are taken synchronously (blocked, then ``sigwaitinfo``), so none is lost between
    the fork and the wait, and none arriving after the child ended kills this process. Call it
    from the main thread of a program with no other threads that could take the signals.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_foreground must be called from the main thread")
    # Blocked signals are queued even when ignored, so sigwaitinfo gets them all.
    watched = set(FORWARDED_SIGNALS) | {signal.SIGCHLD}
    old_chld = signal.getsignal(signal.SIGCHLD)
    if old_chld == signal.SIG_IGN:      # ignored SIGCHLD would reap the child behind our back
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    die = die_with_parent(signal.SIGTERM)

    def child_setup():
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        die()

    try:
        proc = subprocess.Popen(argv, preexec_fn=child_setup, **popen_kwargs)
        pidfd = os.pidfd_open(proc.pid)
        try:
            while proc.poll() is None:
                info = signal.sigwaitinfo(watched)
                if info.si_signo == signal.SIGCHLD:
                    continue
                if info.si_code == _SI_KERNEL and _in_our_process_group(proc.pid):
                    log.debug("signal %d went to the child's process group too", info.si_signo)
                    continue
                try:
                    signal.pidfd_send_signal(pidfd, info.si_signo)
                except ProcessLookupError:
                    pass            # it has just ended; the loop reaps it
        finally:
            os.close(pidfd)
    finally:
        _discard_pending(watched)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if old_chld == signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    return shell_status(proc.returncode)


def _in_our_process_group(pid):
    try:
        return os.getpgid(pid) == os.getpgrp()
    except ProcessLookupError:
        return False


def _discard_pending(signals):
    """Take (and drop) the blocked ``signals`` still pending, so unblocking does not act on
    them: they were meant for a child that has ended."""
    pending = signal.sigpending() & set(signals)
    while pending:
        signal.sigtimedwait(pending, 0)
        pending = signal.sigpending() & set(signals)
