"""Stop signals that arrive while the program is still starting up, held until someone owns them.

A run installs its signal handlers (:class:`pathspider.engine.coordinator.Supervisor`) only
after plugins are loaded and arguments parsed — a few hundred milliseconds after the process
started. A SIGTERM in that window (``pathspider lab exec`` killed at once, whose child gets
SIGTERM through ``PR_SET_PDEATHSIG``; a supervisor stopping a job that just began) would end the
process silently, without the one-line summary and exit status a stopped run owes its caller.

The console entry point calls :func:`hold` first thing. A measurement then :func:`take` s the
held signals and treats them as if they had arrived after its own handlers were installed; any
other command :func:`release` s them, which restores the previous handlers and delivers the held
signals again, so ``pathspider summary`` and friends keep their usual reaction to SIGTERM.
"""

import signal
import threading

#: The signals a run treats as "stop": Ctrl-C, kill, hang-up.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_held = []                      # signal numbers received while holding, in order
_previous = {}                  # signum -> the handler in place before hold()


def _record(signum, frame):
    _held.append(signum)


def hold():
    """Record stop signals from now on instead of acting on them (main thread only)."""
    if _previous or threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        _previous[signum] = signal.signal(signum, _record)


def holding():
    """True between :func:`hold` and :func:`take` / :func:`release`."""
    return bool(_previous)


def take():
    """Put the previous handlers back and return the held signals, in arrival order.

    The caller installs its own handlers next and acts on the returned signals itself.
    """
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    held = list(_held)
    _held.clear()
    return held


def release():
    """Put the previous handlers back and deliver the held signals to them."""
    for signum in take():
        signal.raise_signal(signum)
