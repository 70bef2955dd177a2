"""What the lab's server processes share: readiness signalling, logging set-up, sockets.

A server process started by the supervisor gets the number of a pipe in the environment
variable ``PATHSPIDER_LAB_READY_FD``; it writes one line there once it listens, so that the
supervisor (and through it ``Lab.up``) knows it is serving without polling.
"""
import logging
import os
import signal
import socket
import sys

READY_ENV = "PATHSPIDER_LAB_READY_FD"


def setup_logging(name):
    """Log to stderr (the supervisor points it at the service's log file in the run dir)."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s")
    return logging.getLogger(f"pathspider.lab.{name}")


def signal_ready(detail="ready"):
    """Tell the supervisor this service is serving (no-op when started by hand)."""
    fd = os.environ.pop(READY_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), (detail + "\n").encode())
    except BrokenPipeError:
        pass  # nobody waits for the report any more; serving matters, not the report
    finally:
        os.close(int(fd))


def exit_on_term_event(loop, event):
    """Make SIGTERM and SIGINT set ``event`` on the asyncio ``loop`` (a clean stop)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)


def term_wakeup_fd():
    """A descriptor that becomes readable on SIGTERM or SIGINT, for servers without asyncio
    (their loop waits on it with everything else; the signals do nothing else)."""
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(stop_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    return stop_r


def listener(family, kind, port, backlog=4096, reuseport=False):
    """A bound wildcard socket (``0.0.0.0`` or ``::`` with V6ONLY) on ``port``."""
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


def daemonize():
    """Fork: the parent relays the child's first report and exits; returns the child's pipe.

    The child writes ``ready`` (or ``failed: why``) on the returned file and closes it. So
    whoever started this process can wait for, and reap, it, while the daemon lives on in its
    own session, re-parented away from the caller.
    """
    readr, readw = os.pipe()
    if os.fork():
        os.close(readw)
        with os.fdopen(readr, "rb") as pipe:
            verdict = pipe.read()
        sys.stdout.buffer.write(verdict)
        sys.stdout.flush()
        os._exit(0 if verdict.startswith(b"ready") else 1)
    os.close(readr)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return os.fdopen(readw, "w")
