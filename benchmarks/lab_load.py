"""How much load the lab's servers take: HTTP connections per second, and DNS bursts.

``connect`` and ``http`` modes: a tight non-blocking loop (epoll) in the client namespace
keeps ``--concurrency`` connections in flight to the clean targets (IPv4 and IPv6 alternately,
254 addresses each) and counts completed ones: ``connect`` = handshake then close, ``http`` =
handshake, GET, whole response. Bounded by ``--count`` connections and ``--seconds``. This is
the ceiling any measurement run on the lab can reach.

``dns`` mode: a burst of ``--dns-queries`` UDP queries (default 1,100) from ``--dns-clients``
concurrent clients (default 100), each sending all its queries at once
(:func:`pathspider.lab.probe.dns_burst`), to the clean targets' addresses (``--dns-to
targets``, as DNS-based plugins do) or to the lab resolver (``--dns-to resolver``), for
``--family``. Reports answered / lost queries and the server namespace's UDP receive-buffer
error counters (``RcvbufErrors`` in ``/proc/net/snmp``, ``Udp6RcvbufErrors`` in
``/proc/net/snmp6``) before and after. Bounded: at most 100,000 queries, each waited for at
most ``--dns-timeout`` (<= 30) seconds after its client's last send; ``--rounds`` repeats it.

Run as root from the repository: ``.venv/bin/python benchmarks/lab_load.py [--name NAME]
[--mode connect|http|dns|both|all]`` (``both``: connect and http, the default; ``all``: the
three). The lab name defaults to ``$PATHSPIDER_LAB_NAME``, else ``psl``. Brings the lab up if
needed and takes it down again only if it brought it up.
"""
import argparse
import errno
import select
import socket
import time

from pathspider.lab import Lab, plan, probe
from pathspider.lab.lab import default_name

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


MODES = {"connect": ("connect",), "http": ("http",), "dns": ("dns",),
         "both": ("connect", "http"), "all": ("connect", "http", "dns")}
MAX_DNS_QUERIES = 100_000
MAX_DNS_TIMEOUT = 30.0


def dns_servers(to, family):
    """The addresses the DNS burst asks: the clean targets or the resolver, per family."""
    families = {"4": (4,), "6": (6,), "both": (4, 6)}[family]
    if to == "resolver":
        return [str(plan.DNS_V4 if f == 4 else plan.DNS_V6) for f in families]
    return [str(plan.target_address("clean", host, f)) for host in plan.HOSTS for f in families]


def run_dns(lab, args):
    """One DNS burst; prints answered / lost and the server's receive-buffer errors."""
    servers = dns_servers(args.dns_to, args.family)
    before = lab.call_in_server(probe.udp_counters)
    got = lab.call_in_client(probe.dns_burst, servers, args.dns_queries, args.dns_clients,
                             args.dns_timeout)
    after = lab.call_in_server(probe.udp_counters)
    errors = " ".join(f"{key}={before[key]}->{after[key]}"
                      for key in ("RcvbufErrors", "Udp6RcvbufErrors"))
    print(f"lab_load mode=dns to={args.dns_to} family={args.family} sent={got['sent']} "
          f"answered={got['answered']} lost={got['lost']} wrong={got['wrong']} "
          f"seconds={got['seconds']:.2f} clients={args.dns_clients} {errors}", flush=True)
    return got


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default=None,
                        help="lab name (default: $PATHSPIDER_LAB_NAME, else psl)")
    parser.add_argument("--mode", choices=tuple(MODES), default="both",
                        help="both: connect and http; all: connect, http and dns")
    parser.add_argument("--count", type=int, default=20000, help="connections (max)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per mode")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--dns-queries", type=int, default=1100,
                        help=f"queries per DNS burst (1 to {MAX_DNS_QUERIES}, default 1100)")
    parser.add_argument("--dns-clients", type=int, default=100,
                        help="concurrent DNS clients (threads; default 100)")
    parser.add_argument("--dns-timeout", type=float, default=3.0,
                        help=f"seconds a client waits for its answers after its last query "
                             f"(at most {MAX_DNS_TIMEOUT:g}; default 3)")
    parser.add_argument("--dns-to", choices=("targets", "resolver"), default="targets",
                        help="ask the clean targets' addresses (default) or the lab resolver")
    parser.add_argument("--family", choices=("4", "6", "both"), default="4",
                        help="IP version of the DNS servers asked (default 4)")
    parser.add_argument("--rounds", type=int, default=1, help="DNS bursts (1 to 20; default 1)")
    args = parser.parse_args()
    if not 1 <= args.dns_queries <= MAX_DNS_QUERIES:
        parser.error(f"--dns-queries must be 1 to {MAX_DNS_QUERIES}")
    if not 1 <= args.dns_clients <= args.dns_queries:
        parser.error("--dns-clients must be 1 to --dns-queries")
    if not 0 < args.dns_timeout <= MAX_DNS_TIMEOUT:
        parser.error(f"--dns-timeout must be more than 0 and at most {MAX_DNS_TIMEOUT:g}")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1 to 20")
    lab = Lab(default_name() if args.name is None else args.name)
    brought_up = lab.up()
    try:
        for mode in MODES[args.mode]:
            if mode == "dns":
                for _ in range(args.rounds):
                    run_dns(lab, args)
                continue
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
