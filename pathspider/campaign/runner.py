"""Run one chunk with the same engine as a local run, and read back what it wrote.

The agent builds the argv itself from a validated message (:mod:`.messages`) and its own
settings::

    [ip netns exec NS] python -m pathspider.run -i IFACE -w W --input CHUNK --output OUT
        --metadata META --no-progress [agent scope options] [run options] PLUGIN [options]

No shell is involved. The run gets SIGTERM should the agent die (``PR_SET_PDEATHSIG``), so
it ends the usual way (records written, system state restored) instead of running on. Its
records come back with ``vantage`` added, with the run's metadata.
"""
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

log = logging.getLogger("pathspider.campaign.runner")

_PR_SET_PDEATHSIG = 1
#: Most characters of the run's stderr kept for a failure report.
STDERR_TAIL = 4000


@dataclass
class AgentSettings:
    """What the vantage's operator chose for every run of this agent."""
    vantage: str
    interface: str = "eth0"
    workers: int = 100
    netns: str = None                       # run inside ``ip netns exec NETNS``
    scope_options: list = field(default_factory=list)   # --allow, --blocklist F, --allowlist F
    env: dict = None                        # environment of the runs (default: the agent's)
    timeout: float = None                   # seconds a chunk may take (None: no limit)
    workdir: str = None                     # where chunk files live while a run uses them


class ChunkFailed(Exception):
    """The run of a chunk ended with a status other than 0 (the message has its stderr)."""


def build_argv(settings, message, input_path, output_path, metadata_path):
    """The argv of the run of ``message`` (already validated) under ``settings``."""
    argv = [sys.executable, "-m", "pathspider.run", "-i", settings.interface,
            "-w", str(settings.workers), "--input", input_path, "--output", output_path,
            "--metadata", metadata_path, "--no-progress", *settings.scope_options,
            *message["run_options"], message["plugin"], *message["options"]]
    if settings.netns:
        argv = ["ip", "netns", "exec", settings.netns, *argv]
    return argv


def _die_with_parent():
    """preexec_fn: SIGTERM to the run should the agent die; no signal blocked."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_chunk(settings, message):
    """Measure ``message``'s targets; return ``{"records", "metadata", "exit_status",
    "stderr_tail"}``. Raises :class:`ChunkFailed` when the run does not end with 0."""
    with tempfile.TemporaryDirectory(prefix="pathspider-chunk-", dir=settings.workdir) as tmp:
        paths = [os.path.join(tmp, name) for name in ("targets", "records.ndjson",
                                                      "metadata.json")]
        with open(paths[0], "w", encoding="utf-8") as stream:
            stream.write(message["targets"])
        argv = build_argv(settings, message, *paths)
        log.info("vantage %s: chunk %s of campaign %s: %s", settings.vantage,
                 message["chunk"], message["campaign"], " ".join(argv[-len(message["options"])
                                                                     - 1:]))
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=settings.env, timeout=settings.timeout,
                              preexec_fn=_die_with_parent, check=False)
        stderr = proc.stderr.decode("utf-8", "replace")[-STDERR_TAIL:]
        if proc.returncode != 0:
            raise ChunkFailed(f"the run exited with status {proc.returncode}: "
                              f"{_last_lines(stderr)}")
        return {"records": read_records(paths[1], settings.vantage),
                "metadata": read_metadata(paths[2]), "exit_status": proc.returncode,
                "stderr_tail": stderr[-1000:]}


def _last_lines(text, count=3):
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(nothing on stderr)"


def read_records(path, vantage):
    """The JSON records of ``path``, each with ``"vantage": vantage``."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.strip():
                record = json.loads(line)
                if isinstance(record, dict):
                    record["vantage"] = vantage
                records.append(record)
    return records


def read_metadata(path):
    """The run's metadata file, or None if it could not be read."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError) as exc:
        log.warning("the run's metadata could not be read: %s", exc)
        return None
