"""Processes the lab started: check, wait for and stop them by PID, without polling."""
import logging
import os
import select
import signal

log = logging.getLogger("pathspider.lab")

MARKER = b"pathspider.lab"


def cmdline(pid):
    """The command line of ``pid`` as bytes, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
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
    """SIGTERM ``pids``, wait up to ``timeout`` for each, then SIGKILL any that remain."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
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
