"""Constant path delay in user space, for kernels built without tc netem.

Run by ``Lab.set_netem`` as ``ip netns exec <name>-mbox python -m pathspider.lab.delayer
--delay-ms D --daemon``. It owns a TUN device; the middlebox's policy routing sends every
packet arriving from the client or server link into it (see :mod:`pathspider.lab.path`), and
the delayer writes each packet back after ``D`` milliseconds, whereupon the kernel forwards it
on as usual. The delay is constant, so a FIFO keeps packets in order; waiting is a select on
the TUN descriptor with the time to the next due packet as timeout.

When the process ends the TUN device, and the routes through it, vanish with it: the path
falls back to no delay.
"""
import argparse
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

from . import service

TUN_NAME = "dly0"
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
MAX_QUEUE = 100000


def open_tun(name):
    """Create and open TUN device ``name`` (no packet-info header); returns the fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def _read_all(fd, queue, due):
    """Queue every packet waiting on ``fd`` to leave at ``due`` (drop beyond MAX_QUEUE)."""
    while True:
        try:
            packet = os.read(fd, 65536)
        except BlockingIOError:
            return
        if len(queue) < MAX_QUEUE:
            queue.append((due, packet))


def _write_due(fd, queue, now):
    while queue and queue[0][0] <= now:
        try:
            os.write(fd, queue.popleft()[1])
        except OSError:
            pass  # e.g. the kernel refused one packet: drop it, as a link would


def run(fd, delay, stop_fd):
    """Delay packets by ``delay`` seconds until ``stop_fd`` becomes readable."""
    queue = collections.deque()
    while True:
        now = time.monotonic()
        _write_due(fd, queue, now)
        timeout = max(queue[0][0] - now, 0) if queue else None
        ready, _, _ = select.select([fd, stop_fd], [], [], timeout)
        if stop_fd in ready:
            return
        if fd in ready:
            _read_all(fd, queue, time.monotonic() + delay)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--iface", default=TUN_NAME)
    parser.add_argument("--daemon", action="store_true")
    args = parser.parse_args(argv)
    log = service.setup_logging("delayer")
    verdict = service.daemonize() if args.daemon else sys.stdout
    try:
        fd = open_tun(args.iface)
    except OSError as exc:
        verdict.write(f"failed: cannot create TUN device {args.iface}: {exc}\n")
        verdict.close()
        return 1
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(stop_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    verdict.write("ready\n")
    verdict.close()
    log.info("delaying packets through %s by %.1f ms", args.iface, args.delay_ms)
    run(fd, args.delay_ms / 1000.0, stop_r)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
