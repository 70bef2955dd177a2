"""Run metadata (``--metadata FILE``): what was run, where, when, and how it ended.

The results stay pure records; everything about the run goes into its own JSON file:

* ``tool`` (name, version, Python), ``command`` (the argv), ``plugin`` (command and class),
  ``options`` (the parsed arguments without the engine's internals), ``interface``,
  ``input`` and ``output`` (path, and the output's ``--format``);
* ``vantage``: hostname, kernel release, the capture interface's addresses, the network
  namespace (``<dev>-<inode>``, as in the system-state journal);
* ``segments``: one per run over the same output (a fresh run has one; each ``--resume``
  adds one), each with ``started``/``ended`` (UTC), ``pid``, ``resumed`` (what the resume kept
  and removed, see :meth:`pathspider.engine.resume.ResumePlan.as_dict`), ``system_state``
  (``before``: the sysctls plugins switch, and pathspider's nftables tables, read before the
  plugin starts; ``changed``: what this run journaled as changed, with the originals;
  ``after``: the same settings once the run restored them), ``counters`` (jobs read, skipped,
  completed, bad rows, records, unobserved records, capture drops, plugin errors, failed
  connections, jobs not started) and ``outcome``: ``{"ended": "done" | "stopped" | "failed",
  "reason", "exit_status"}``;
* at the top: ``status`` (``running`` until the run ends, then ``ended``), ``started``,
  ``ended``, ``outcome`` (the last segment's), ``records_in_output``.

The file is written when the run starts, again when it measures (with the state the plugin
changed), and when it ends, however it ends (signals, an output or Observer failure); every
write is atomic (a temporary file in the same directory, ``fsync``, ``rename``), so a reader
sees one whole version. A run killed with SIGKILL leaves the last version, whose ``status``
is still ``running`` and whose segment has no ``ended``.

The file name is the user's: it must not be the input or the output file, and a file that
exists is only replaced if it is empty or already holds pathspider run metadata.
"""

import datetime
import json
import logging
import os
import platform
import socket
import stat
import subprocess
import sys
import tempfile

from pathspider.version import __version__

log = logging.getLogger("pathspider.engine.metadata")

#: Version of this file's layout.
LAYOUT = 1
#: Marks a file as pathspider run metadata.
MARK = "pathspider_metadata"
#: Sysctls that plugins switch (``ecn``, ``tfo``), read before and after every run; the run's
#: journal adds any other a plugin registered.
RELEVANT_SYSCTLS = ("net.ipv4.tcp_ecn", "net.ipv4.tcp_ecn_fallback", "net.ipv4.tcp_fastopen")
#: Prefix of the nftables tables pathspider creates (``dscp``).
NFT_PREFIX = "pathspider_"
#: Parsed arguments that are the engine's, not options (the plugin class, a utility's main).
INTERNAL_OPTIONS = ("spider", "func")
#: Most bytes of an existing file read to tell whether it is run metadata.
MAX_READ = 16 << 20


class MetadataError(Exception):
    """The metadata file cannot be used; the message is the one line shown to the user."""


def utc_now():
    """The time now, UTC, as ISO 8601 text with milliseconds (``2026-12-02T02:47:08.146Z``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- the file name ------------------------------------------------------------------------------

def check_path(path, input_stat=None, output_path=None):
    """Refuse a ``--metadata`` path that would destroy something; returns the previous
    metadata in it (a dict) or None. Raises :class:`MetadataError` with one line."""
    if path in ("", "-") or path.startswith("/dev/std") or path.startswith("/proc/self/fd"):
        raise MetadataError(f"--metadata {path!r} must name a file (it is written atomically, "
                            "by renaming a temporary file over it)")
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        raise MetadataError(f"--metadata {path}: the directory {directory} does not exist")
    if output_path is not None and output_path not in ("-", "/dev/stdout") \
            and os.path.realpath(output_path) == real:
        raise MetadataError(f"--metadata {path} is the --output file: choose another file")
    try:
        existing = os.stat(real)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise MetadataError(f"--metadata {path}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MetadataError(f"--metadata {path}: cannot create files in {directory}")
    if existing is None:
        return None
    _refuse_same(existing, input_stat, path, "--input")
    _refuse_same(existing, _stat_or_none(output_path), path, "--output")
    if not stat.S_ISREG(existing.st_mode):
        raise MetadataError(f"--metadata {path} exists and is not a regular file")
    return _previous(real, path)


def _stat_or_none(path):
    if path is None:
        return None
    try:
        return os.stat(path)
    except OSError:
        return None


def _refuse_same(existing, other, path, what):
    if other is not None and (existing.st_dev, existing.st_ino) == (other.st_dev, other.st_ino):
        raise MetadataError(f"--metadata {path} is the {what} file: choose another file")


def _previous(real, path):
    """The metadata already in ``real``; None if the file is empty; refuses anything else."""
    try:
        with open(real, "rb") as stream:
            text = stream.read(MAX_READ + 1)
    except OSError as exc:
        raise MetadataError(f"--metadata {path}: {exc.strerror}") from None
    if not text.strip():
        return None
    try:
        document = json.loads(text) if len(text) <= MAX_READ else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or MARK not in document:
        raise MetadataError(f"--metadata {path} exists and is not pathspider run metadata: "
                            "refusing to overwrite it (choose another file or remove it)")
    return document


# ---- what the file holds ------------------------------------------------------------------------

def options(args):
    """The parsed arguments as JSON-ready values, without the engine's internals."""
    out = {}
    for name, value in sorted(vars(args).items()):
        if name in INTERNAL_OPTIONS or name.startswith("_") or callable(value):
            continue
        out[name] = value if _plain(value) else repr(value)
    return out


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    return False


def plugin_of(args):
    """``{"name": command, "class": module.Class}`` of the measurement."""
    spider = getattr(args, "spider", None)
    name = f"{spider.__module__}.{spider.__qualname__}" if spider is not None else None
    return {"name": getattr(args, "command", None), "class": name}


def vantage(interface):
    """Where the run measures from: hostname, kernel, the interface's addresses, netns."""
    return {"hostname": socket.gethostname(), "kernel": platform.release(),
            "system": platform.system(), "machine": platform.machine(),
            "interface": {"name": interface, "addresses": interface_addresses(interface)},
            "netns": _netns()}


def interface_addresses(interface):
    """``["198.18.0.2/24", "2001:db8::2/64", ...]`` of ``interface``, or None."""
    try:
        from pyroute2 import IPRoute

        index = socket.if_nametoindex(interface)
        with IPRoute() as ipr:
            found = ipr.get_addr(index=index)
        return sorted(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in found)
    except Exception:                           # metadata never stops a run
        log.debug("cannot list the addresses of %s", interface, exc_info=True)
        return None


def _netns():
    try:
        info = os.stat("/proc/thread-self/ns/net")
        return f"{info.st_dev}-{info.st_ino}"
    except OSError:
        return None


def sysctl_values(names):
    """``{name: value}`` now (None for a sysctl that cannot be read)."""
    values = {}
    for name in names:
        try:
            with open("/proc/sys/" + name.replace(".", "/")) as stream:
                values[name] = stream.read().strip()
        except OSError:
            values[name] = None
    return values


def nft_tables():
    """pathspider's nftables tables now (``["inet pathspider_dscp"]``), None if nft cannot
    tell (not installed, no permission)."""
    try:
        proc = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    tables = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[2].startswith(NFT_PREFIX):
            tables.append(f"{words[1]} {words[2]}")
    return sorted(tables)


def system_settings(extra=()):
    """The settings plugins change: the relevant sysctls and pathspider's nftables tables."""
    names = list(RELEVANT_SYSCTLS) + [n for n in extra if n not in RELEVANT_SYSCTLS]
    return {"sysctls": sysctl_values(names), "nft_tables": nft_tables()}


def journaled_changes():
    """What this process journaled as changed (sysctls with their originals, nftables
    tables), from :mod:`pathspider.client.sysstate`'s journal; [] if nothing."""
    try:
        from pathspider.client import sysstate

        journal = sysstate.journal_status().journal or {}
    except Exception:
        log.debug("cannot read the system-state journal", exc_info=True)
        return []
    owner = journal.get("owner") or {}
    if owner.get("pid") != os.getpid():
        return []
    return list(journal.get("entries") or [])


def outcome(status, reason=None):
    """``{"ended", "reason", "exit_status"}`` for an exit status (see the coordinator)."""
    if status == 0:
        return {"ended": "done", "reason": None, "exit_status": 0}
    if status == 141:
        return {"ended": "stopped", "reason": reason or "the output was closed by its reader",
                "exit_status": status}
    if status is not None and status > 128:
        return {"ended": "stopped", "reason": reason or f"signal {status - 128}",
                "exit_status": status}
    return {"ended": "failed", "reason": reason or "unknown", "exit_status": status}


# ---- the document ------------------------------------------------------------------------------

class RunMetadata:
    """The metadata of one run (one segment of its output), written to ``path``.

    ``previous`` is the metadata already in the file (a resumed run adds its segment to it;
    a fresh run starts anew).
    """

    def __init__(self, path, args, previous=None, resumed=False):
        self.path = os.path.realpath(path)
        self.args = args
        earlier = []
        if resumed and previous is not None:
            earlier = list(previous.get("segments") or [])
            self._check_same_measurement(previous)
        self.segment = {"started": utc_now(), "ended": None, "pid": os.getpid(),
                        "resumed": None, "system_state": {"before": None, "changed": None,
                                                           "after": None},
                        "counters": None, "outcome": None}
        self.document = {
            MARK: LAYOUT, "status": "running",
            "tool": {"name": "pathspider", "version": __version__,
                     "python": platform.python_version()},
            "command": list(sys.argv), "plugin": plugin_of(args), "options": options(args),
            "interface": getattr(args, "interface", None),
            "input": {"path": getattr(args, "input", None)},
            "output": {"path": getattr(args, "output", None),
                       "format": getattr(args, "output_format", "flows")},
            "vantage": vantage(getattr(args, "interface", None)),
            "started": (earlier[0].get("started") if earlier else self.segment["started"]),
            "ended": None, "outcome": None, "records_in_output": None,
            "segments": earlier + [self.segment]}
        if resumed and previous is None:
            self.document["earlier_segments"] = "unknown (no metadata of the interrupted run)"

    def _check_same_measurement(self, previous):
        """A resumed output must go on with the measurement it holds."""
        before = (previous.get("plugin") or {}).get("name")
        now = plugin_of(self.args)["name"]
        if before is not None and before != now:
            raise MetadataError(f"--resume: {self.path} says the output was measured with "
                                f"{before!r}, not {now!r}: resuming would mix two measurements")

    def write(self):
        """Replace the file atomically with the document now. Raises OSError."""
        directory = os.path.dirname(self.path)
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=".tmp",
                                    dir=directory)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(self.document, out, indent=2, default=repr)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, self.path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise

    def try_write(self):
        """:meth:`write`, logging a failure instead of raising (the run goes on)."""
        try:
            self.write()
            return True
        except OSError as exc:
            log.error("could not write the run metadata to %s: %s", self.path,
                      exc.strerror or exc)
            return False

    # ---- the stages of a run ------------------------------------------------------------------

    def started(self):
        """At the start, before the plugin changes anything: the settings as found."""
        self.segment["system_state"]["before"] = system_settings()
        self.write()

    def measuring(self, resumed=None, connections=None):
        """Once the run measures: what the plugin changed, what a resume kept."""
        self.segment["system_state"]["changed"] = journaled_changes()
        self.segment["resumed"] = resumed
        self.segment["connections_per_job"] = connections
        self.try_write()

    def ended(self, status, reason, counters, records_in_output=None):
        """At the end, after system state was restored: how the run ended."""
        changed = self.segment["system_state"]["changed"] or []
        extra = [e.get("name") for e in changed if e.get("kind") == "sysctl"]
        self.segment["system_state"]["after"] = system_settings(extra)
        self.segment["ended"] = utc_now()
        self.segment["counters"] = counters
        self.segment["outcome"] = outcome(status, reason)
        self.document.update(status="ended", ended=self.segment["ended"],
                             outcome=self.segment["outcome"],
                             records_in_output=records_in_output)
        return self.try_write()
