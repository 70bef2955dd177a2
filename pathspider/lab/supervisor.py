"""Starts the lab's servers in the server namespace, restarts them if they die, stops them.

Run by ``Lab.up`` as ``ip netns exec <name>-server python -m pathspider.lab.supervisor --rundir
DIR --daemon``. It starts every service (several ``httpd`` workers sharing the port with
SO_REUSEPORT, ``h2d`` for HTTPS and HTTP/2, and ``dnsd``), each logging to
``DIR/<service>.log``; waits until every one has signalled readiness; records the PIDs in
``DIR/pids.json``; prints ``ready`` on stdout (which ``Lab.up`` waits for; with ``--daemon`` it
has detached by then); then supervises: a service that exits is restarted, at most
``MAX_RESTARTS`` times per ``RESTART_WINDOW`` seconds. SIGTERM stops all services and exits.

Children get SIGKILL from the kernel should the supervisor itself die (PR_SET_PDEATHSIG),
so a killed supervisor never leaves orphans. Waiting uses pidfds and a signal wake-up pipe
in one selector: no polling.
"""
import argparse
import ctypes
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time

from . import pki, service

log = logging.getLogger("pathspider.lab.supervisor")

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
_PR_SET_PDEATHSIG = 1


#: h2d's socket for h2c upgrades handed over by httpd, in the run directory (services run
#: there, as do the certificates ``lab up`` made, see :mod:`pathspider.lab.pki`).
H2C_HANDOFF = "h2c.sock"


def services(http_workers, http_port=80, dns_port=53, https_port=443):
    """The services to run: name -> module arguments."""
    out = {f"httpd-{i}": ["pathspider.lab.httpd", "--port", str(http_port),
                          "--handoff", H2C_HANDOFF]
           for i in range(http_workers)}
    out["h2d"] = ["pathspider.lab.h2d", "--port", str(https_port), "--cert", pki.CERT_FILE,
                  "--key", pki.KEY_FILE, "--handoff", H2C_HANDOFF]
    out["dnsd"] = ["pathspider.lab.dnsd", "--port", str(dns_port)]
    return out


def _die_with_parent():
    """In the child, before exec: get SIGKILL when the supervisor goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Supervisor:
    """Keeps a set of service processes running; see the module docstring."""

    def __init__(self, rundir, specs):
        self.rundir = rundir
        self.specs = specs
        self.procs = {}        # name -> Popen
        self.pidfds = {}       # name -> pidfd
        self.restarts = {name: [] for name in specs}
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self.sigr, self.sigw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.sigw)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # handled through the wake-up pipe
        self.sel.register(self.sigr, selectors.EVENT_READ, "signal")

    def start(self, name):
        """Start service ``name``; returns the read end of its readiness pipe."""
        readr, readw = os.pipe2(os.O_CLOEXEC)
        env = dict(os.environ, **{service.READY_ENV: str(readw)})
        with open(os.path.join(self.rundir, f"{name}.log"), "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", *self.specs[name]], stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT, env=env, pass_fds=(readw,),
                preexec_fn=_die_with_parent, cwd=self.rundir)
        os.close(readw)
        self.procs[name] = proc
        fd = os.pidfd_open(proc.pid)
        self.pidfds[name] = fd
        self.sel.register(fd, selectors.EVENT_READ, name)
        log.info("started %s (pid %d)", name, proc.pid)
        return readr

    def start_all(self):
        """Start every service and wait (bounded) until each says it is ready."""
        pending = {self.start(name): name for name in self.specs}
        deadline = time.monotonic() + READY_TIMEOUT
        waiter = selectors.DefaultSelector()
        for fd in pending:
            waiter.register(fd, selectors.EVENT_READ)
        while pending:
            left = deadline - time.monotonic()
            events = waiter.select(timeout=max(left, 0)) if left > 0 else []
            if not events:
                raise RuntimeError("services not ready in time: " + ", ".join(pending.values()))
            for key, _ in events:
                line = os.read(key.fd, 256)
                name = pending.pop(key.fd)
                waiter.unregister(key.fd)
                os.close(key.fd)
                if not line:
                    raise RuntimeError(f"service {name} exited before it was ready "
                                       f"(see {name}.log)")
        waiter.close()
        self.write_pids()

    def write_pids(self):
        """Record the supervisor's and services' PIDs (atomically) for status and down."""
        state = {"supervisor": os.getpid(),
                 "services": {name: p.pid for name, p in self.procs.items()}}
        tmp = os.path.join(self.rundir, "pids.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(self.rundir, "pids.json"))

    def _reap(self, name):
        """A service exited: reap it and restart it unless stopping or restarting too often."""
        self.sel.unregister(self.pidfds[name])
        os.close(self.pidfds.pop(name))
        code = self.procs[name].wait()
        if self.stopping:
            return
        now = time.monotonic()
        recent = [t for t in self.restarts[name] if now - t < RESTART_WINDOW]
        if len(recent) >= MAX_RESTARTS:
            log.error("%s exited (status %s) %d times within %.0f s; not restarting it",
                      name, code, len(recent), RESTART_WINDOW)
            return
        self.restarts[name] = recent + [now]
        log.warning("%s exited (status %s); restarting it", name, code)
        readr = self.start(name)
        # Keep the readiness pipe open until the service reports (a service whose report
        # found the pipe closed would die of it); the report is logged, not awaited.
        self.sel.register(readr, selectors.EVENT_READ, ("ready", name))
        self.write_pids()

    def _restarted_ready(self, fd, name):
        """A restarted service reported readiness (or exited before it did)."""
        self.sel.unregister(fd)
        line = os.read(fd, 256)
        os.close(fd)
        if line:
            log.info("%s (restarted) is ready", name)

    def run(self):
        """Supervise until SIGTERM/SIGINT, then stop every service."""
        while not self.stopping:
            for key, _ in self.sel.select():
                if key.data == "signal":
                    sigs = os.read(self.sigr, 64)
                    if any(s in (signal.SIGTERM, signal.SIGINT) for s in sigs):
                        self.stopping = True
                elif isinstance(key.data, tuple):
                    self._restarted_ready(key.fd, key.data[1])
                elif not self.stopping:
                    self._reap(key.data)
        self.stop_all()

    def stop_all(self):
        """SIGTERM every service, wait up to STOP_TIMEOUT, SIGKILL what remains."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait()
        log.info("all services stopped")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rundir", required=True)
    parser.add_argument("--http-workers", type=int, default=2)
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--dns-port", type=int, default=53)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--daemon", action="store_true",
                        help="detach once every service is ready (used by Lab.up)")
    args = parser.parse_args(argv)
    service.setup_logging("supervisor")
    verdict = service.daemonize() if args.daemon else sys.stdout
    sup = Supervisor(args.rundir, services(args.http_workers, args.http_port, args.dns_port,
                                           args.https_port))
    try:
        sup.start_all()
    except Exception as exc:
        log.error("start failed: %s", exc)
        sup.stop_all()
        verdict.write(f"failed: {exc}\n")
        verdict.close()
        return 1
    verdict.write("ready\n")
    verdict.flush()
    if verdict is not sys.stdout:
        verdict.close()
    log.info("all services ready")
    sup.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
