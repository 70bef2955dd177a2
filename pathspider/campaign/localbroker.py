"""A private Redis for the lab, the tests and the benchmarks: Debian's ``redis-server`` on
127.0.0.1, a random free port, a random password, its own run directory, no persistence.

    python -m pathspider.campaign.localbroker [--rundir DIR]

starts one, prints its URL (with the password) as the first line on stdout once it accepts
connections, and stops it (by its PID) on SIGTERM, SIGINT or SIGHUP (``scripts/broker.sh``
uses this). From Python: ``with LocalBroker() as broker: broker.url``. ``redis-server`` is
installed by ``scripts/install.sh``; it is never assumed: without it :meth:`start` raises
:class:`BrokerUnavailable`.
"""
import argparse
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

log = logging.getLogger("pathspider.campaign.localbroker")

READY = b"Ready to accept connections"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class BrokerUnavailable(RuntimeError):
    """No ``redis-server`` here, or it did not start (the message says which)."""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unblock_signals():
    """preexec_fn: redis-server starts with no signal blocked (:func:`main` blocks the stop
    signals to wait for them, and a child inherits the mask)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


class LocalBroker:
    """One private redis-server (see the module docstring)."""

    def __init__(self, rundir=None, port=None):
        self.rundir = rundir
        self._own_rundir = rundir is None
        self.port = port
        self.password = secrets.token_urlsafe(24)
        self.proc = None
        self._drainer = None

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _config(self):
        return "\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode yes",
            f"requirepass {self.password}", 'save ""', "appendonly no",
            f"dir {self.rundir}", "daemonize no", 'logfile ""', "databases 4", ""])

    def start(self, timeout=START_TIMEOUT):
        """Start redis-server and return its URL once it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise BrokerUnavailable("redis-server is not installed (scripts/install.sh "
                                    "installs Debian's redis-server)")
        if self._own_rundir:
            self.rundir = tempfile.mkdtemp(prefix="pathspider-broker-")
        os.makedirs(self.rundir, mode=0o700, exist_ok=True)
        self.port = self.port or _free_port()
        conf = os.path.join(self.rundir, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(self._config())
        self.proc = subprocess.Popen([binary, conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_unblock_signals)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self, timeout):
        """Read redis-server's log until it says it is ready (bounded by ``timeout``)."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        seen = b""
        while READY not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(f"redis-server not ready within {timeout:g} s: "
                                        f"{seen[-300:].decode(errors='replace')}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BrokerUnavailable("redis-server ended: "
                                            f"{seen[-300:].decode(errors='replace')}")
                seen += chunk
        self._drainer = threading.Thread(target=self._drain, name="redis-log", daemon=True)
        self._drainer.start()

    def _drain(self):
        """Copy the rest of redis-server's log to ``redis.log`` in its run directory."""
        path = os.path.join(self.rundir, "redis.log")
        try:
            with open(path, "ab") as out:
                for line in self.proc.stdout:
                    out.write(line)
        except (OSError, ValueError):
            pass

    def stop(self):
        """Stop redis-server (SIGTERM, SIGKILL after :data:`STOP_TIMEOUT` s) by its PID and
        remove the run directory this broker made."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self._drainer is not None:
            self._drainer.join(2)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self._own_rundir and self.rundir and os.path.isdir(self.rundir):
            shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    """Start a broker, print its URL, stop it on SIGTERM/SIGINT/SIGHUP."""
    parser = argparse.ArgumentParser(prog="python -m pathspider.campaign.localbroker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rundir", help="run directory (default: a new temporary one, "
                                         "removed at the end)")
    args = parser.parse_args(argv)
    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    broker = LocalBroker(args.rundir)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        print(f"localbroker: {exc}", file=sys.stderr)
        return 1
    try:
        print(broker.url, flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)                 # the reader of the URL may go away
        print(f"localbroker: redis-server pid {broker.pid} on 127.0.0.1:{broker.port}",
              file=sys.stderr, flush=True)
        signal.sigwait(stops)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
