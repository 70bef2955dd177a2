"""Which meter runs: the compiled one (C extensions built by setup.py) or the interpreted one.

The Observer's meter (the dissector, the flow table and the chain library) is written once,
in Python, and compiled with Cython in pure-Python mode when pathspider is installed with a C
compiler (``setup.py`` builds :data:`METER_MODULES`; the ``.pxd`` files beside them add C
types). Without a compiler the same files run interpreted: same records, several times slower.
:func:`meter_mode` says which it is; :func:`log_meter_mode` says it once per process when it
is not the compiled meter, so a slow run explains itself.
"""

import importlib
import importlib.machinery
import logging
import os

logger = logging.getLogger("pathspider.observer.build")

#: The modules of :mod:`pathspider.observer` that setup.py compiles (it reads this line).
METER_MODULES = ("dissector", "icmp", "tcp", "basic", "ecn", "dscp", "evil", "tfo", "mss",
                 "udp", "dns", "native", "flowtable")

_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
_logged = []


def module_states():
    """``{module name: "compiled" | "interpreted" | "stale"}`` for :data:`METER_MODULES`.

    "stale": a compiled module older than its ``.py`` or ``.pxd`` (edited since the last
    build: the extension, not the edited file, is what runs).
    """
    states = {}
    for name in METER_MODULES:
        path = importlib.import_module("pathspider.observer." + name).__file__ or ""
        if not path.endswith(_EXTENSION_SUFFIXES):
            states[name] = "interpreted"
        elif _older_than_source(path, name):
            states[name] = "stale"
        else:
            states[name] = "compiled"
    return states


def _older_than_source(extension, name):
    built = os.stat(extension).st_mtime
    folder = os.path.dirname(extension)
    for suffix in (".py", ".pxd"):
        try:
            if os.stat(os.path.join(folder, name + suffix)).st_mtime > built:
                return True
        except OSError:             # an installed wheel ships no .pxd: nothing to compare
            pass
    return False


def meter_mode():
    """"compiled", "interpreted", or a description of a mixed or stale build."""
    states = module_states()
    kinds = set(states.values())
    if len(kinds) == 1:
        return kinds.pop()
    odd = sorted(name for name, state in states.items() if state != "compiled")
    return "partly compiled (%s)" % ", ".join("%s %s" % (name, states[name]) for name in odd)


def log_meter_mode():
    """Log once per process, as a warning, when the meter is not fully compiled."""
    if _logged:
        return
    _logged.append(True)
    mode = meter_mode()
    if mode == "interpreted":
        logger.warning("the Observer runs its interpreted meter (no compiled build: install a "
                       "C compiler and Python headers, then run scripts/install.sh again); "
                       "records are the same, packets/s several times lower")
    elif mode != "compiled":
        logger.warning("the Observer's meter is %s: run scripts/install.sh again to rebuild "
                       "it", mode)
