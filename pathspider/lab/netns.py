"""Named network namespaces: create, remove, find their processes, run code inside them.

Two ways in:

- :func:`call_in` runs a Python callable on a fresh thread that joined the namespace with
  ``setns(2)``; the network namespace is per thread on Linux, so the calling thread (and the
  root namespace) are never touched, and sockets made there stay in the namespace for life.
  The thread checks it really is in the namespace before it runs anything.
- :func:`command` builds an ``ip netns exec`` command line for subprocesses.
"""
import ctypes
import errno
import logging
import os
import shutil
import subprocess
import threading

from pyroute2 import netns as _pr_netns

log = logging.getLogger("pathspider.lab")

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def path(name):
    """The bind-mount file that keeps namespace ``name`` alive."""
    return os.path.join(NETNS_RUN_DIR, name)


def inode(name):
    """The namespace's identity (nsfs inode) or None if no namespace has that name."""
    try:
        return os.stat(path(name)).st_ino
    except FileNotFoundError:
        return None


def exists(name):
    """Whether a named namespace ``name`` exists."""
    return inode(name) is not None


def create(name):
    """Create the named namespace ``name``; returns its inode. Fails if it exists."""
    if exists(name):
        raise FileExistsError(errno.EEXIST, f"network namespace {name} already exists")
    _pr_netns.create(name)
    return inode(name)


def remove(name):
    """Remove the named namespace ``name`` (missing is fine)."""
    if exists(name):
        _pr_netns.remove(name)


def pids(name):
    """PIDs of processes whose network namespace is ``name`` (as ``ip netns pids`` does)."""
    ino = inode(name)
    if ino is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                found.append(int(entry))
        except OSError:
            continue  # the process ended meanwhile, or is not ours to look at
    return found


def _join(name):
    """Move the calling thread into namespace ``name`` and check that it got there."""
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
        want = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    if os.stat("/proc/thread-self/ns/net").st_ino != want:
        raise RuntimeError(f"thread did not enter network namespace {name}")


def call_in(name, fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` inside namespace ``name`` and return its result.

    The call happens on a new thread (joined before returning); exceptions propagate.
    """
    box = {}

    def runner():
        try:
            _join(name)
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller, re-raised there
            box["error"] = exc

    thread = threading.Thread(target=runner, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def command(name, argv):
    """The argv that runs ``argv`` inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *[str(a) for a in argv]]


def run(name, argv, check=True, **kwargs):
    """Run ``argv`` inside namespace ``name``; returns the CompletedProcess.

    With ``check`` a non-zero exit raises RuntimeError carrying the command's stderr.
    """
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    done = subprocess.run(command(name, argv), check=False, **kwargs)
    if check and done.returncode != 0:
        err = (done.stderr or "").strip() if isinstance(done.stderr, str) else ""
        raise RuntimeError(f"in namespace {name}: {' '.join(map(str, argv))} failed "
                           f"(exit {done.returncode}): {err}")
    return done


def _sysctl_path(key):
    return "/proc/sys/" + key.replace(".", "/")


def sysctl_get(name, key):
    """Read sysctl ``key`` (dotted) as seen inside namespace ``name``; None if absent."""
    def read():
        try:
            with open(_sysctl_path(key)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None
    return call_in(name, read)


def sysctl_set(name, key, value, missing_ok=False):
    """Write sysctl ``key`` inside namespace ``name`` (never the root namespace)."""
    def write():
        try:
            with open(_sysctl_path(key), "w") as f:
                f.write(str(value))
        except FileNotFoundError:
            if not missing_ok:
                raise
            log.debug("sysctl %s absent in namespace %s; skipped", key, name)
    call_in(name, write)


def which(tool):
    """Whether an executable ``tool`` is on PATH."""
    return shutil.which(tool) is not None
