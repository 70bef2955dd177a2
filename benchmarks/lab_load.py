"""How many connections per second the lab client can complete against the lab HTTP server.

A tight non-blocking loop (epoll) in the client namespace keeps ``--concurrency`` connections
in flight to the clean targets (IPv4 and IPv6 alternately, 254 addresses each) and counts
completed ones: ``connect`` mode = handshake then close, ``http`` mode = handshake, GET, whole
response. Bounded by ``--count`` connections and ``--seconds``. This is the ceiling any
measurement run on the lab can reach.

Run as root from the repository: ``.venv/bin/python benchmarks/lab_load.py [--name psl]``.
Brings the lab up if needed and takes it down again only if it brought it up.
"""
import argparse
import errno
import select
import socket
import time

from pathspider.lab import Lab, plan

REQUEST = b"GET / HTTP/1.1\r\nHost: lab.test\r\nConnection: close\r\n\r\n"


def targets():
    """Clean target addresses, alternating IPv4 and IPv6."""
    out = []
    for host in plan.HOSTS:
        for family in (4, 6):
            out.append((socket.AF_INET if family == 4 else socket.AF_INET6,
                        str(plan.target_address("clean", host, family))))
    return out


class Load:
    """The connect loop; runs entirely on one thread inside the client namespace."""

    def __init__(self, mode, count, seconds, concurrency):
        self.mode, self.count, self.seconds, self.concurrency = mode, count, seconds, concurrency
        self.ep = select.epoll()
        self.conns = {}  # fd -> [socket, state, buffer]
        self.addrs = targets()
        self.started = self.done = self.failed = 0

    def open_one(self):
        family, addr = self.addrs[self.started % len(self.addrs)]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex((addr, plan.HTTP_PORT))
        self.started += 1
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed += 1
            return
        self.conns[sock.fileno()] = [sock, "connecting"]
        self.ep.register(sock.fileno(), select.EPOLLOUT)

    def finish(self, fd, ok):
        sock = self.conns.pop(fd)[0]
        self.ep.unregister(fd)
        sock.close()
        if ok:
            self.done += 1
        else:
            self.failed += 1

    def on_event(self, fd, events):
        sock, state = self.conns[fd]
        if state == "connecting":
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or events & select.EPOLLERR:
                return self.finish(fd, False)
            if self.mode == "connect":
                return self.finish(fd, True)
            sock.send(REQUEST)
            self.conns[fd][1] = "reading"
            self.ep.modify(fd, select.EPOLLIN)
            return None
        try:
            data = sock.recv(65536)
        except OSError:
            return self.finish(fd, False)
        if not data:  # the server closes after its response
            return self.finish(fd, True)
        return None

    def run(self):
        start = time.monotonic()
        deadline = start + self.seconds
        while self.done + self.failed < self.count:
            now = time.monotonic()
            if now >= deadline:
                break
            while len(self.conns) < self.concurrency and self.started < self.count:
                self.open_one()
            for fd, events in self.ep.poll(min(deadline - now, 1.0)):
                self.on_event(fd, events)
        elapsed = time.monotonic() - start
        for fd in list(self.conns):
            self.finish(fd, False)
        return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="psl", help="lab name (default psl)")
    parser.add_argument("--mode", choices=("connect", "http", "both"), default="both")
    parser.add_argument("--count", type=int, default=20000, help="connections (max)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per mode")
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    lab = Lab(args.name)
    brought_up = lab.up()
    try:
        for mode in (("connect", "http") if args.mode == "both" else (args.mode,)):
            load = Load(mode, args.count, args.seconds, args.concurrency)
            elapsed = lab.call_in_client(load.run)
            print(f"lab_load mode={mode} completed={load.done} failed={load.failed} "
                  f"seconds={elapsed:.2f} rate={load.done / elapsed:.0f}/s "
                  f"concurrency={args.concurrency} http_workers={lab.http_workers}")
    finally:
        if brought_up:
            lab.down()


if __name__ == "__main__":
    main()
