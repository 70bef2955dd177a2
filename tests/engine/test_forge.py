"""The packet-forging model (ForgeSpider) on loopback: N forged packets per job, each from a
reserved source port that the result carries, UDP answers waited for on the reservation,
ports released when the job ends, skipped and failing packets, real raw sockets (root)."""
import errno
import socket
import threading
import time

import pytest

from pathspider.base import ForgeSkip, ForgeSpider
from pathspider.client import forging
from pathspider.client.packets import TCPSyn, UDPDatagram
from pathspider.engine.forge import ForgeModel
from pathspider.lab import packets as lab_packets
from pathspider.observer.dummy import Observer as DummyObserver

from test_sync_engine import run_jobs


class LoopbackServers:
    """A UDP server on an IPv4 (and IPv6) loopback port that answers, and a port that is
    silent (bound, never read)."""

    def __init__(self):
        self.answering = {}
        self.silent = {}
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((addr, 0))
            self.answering[addr] = sock
            quiet = socket.socket(family, socket.SOCK_DGRAM)
            quiet.bind((addr, 0))
            self.silent[addr] = quiet
        self.port = self.answering["127.0.0.1"].getsockname()[1]
        self.silent_port = self.silent["127.0.0.1"].getsockname()[1]
        self.port6 = self.answering["::1"].getsockname()[1]
        self._threads = [threading.Thread(target=self._echo, args=(s,), daemon=True)
                         for s in self.answering.values()]
        for thread in self._threads:
            thread.start()

    def _echo(self, sock):
        while True:
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                return
            sock.sendto(b"answer:" + data, peer)

    def close(self):
        for sock in [*self.answering.values(), *self.silent.values()]:
            sock.close()


class FakeSender:
    """Stands in for the raw sender without root: records every packet, and delivers a UDP
    datagram to the loopback server it is addressed to (through an ordinary socket, so the
    answer comes back from the server's port to the reserved one)."""

    def __init__(self, servers):
        self.servers = servers
        self.sent = []
        self._lock = threading.Lock()

    def send(self, family, packet, dst):
        pkt = lab_packets.parse(packet, lab_packets.DLT_RAW)
        with self._lock:
            self.sent.append(pkt)
        if pkt["proto"] == 17 and pkt["dport"] == self.servers.port:
            self.servers.answering[dst].sendto(b"answer:" + pkt["payload"], (dst, pkt["sport"]))

    def close(self):
        pass


class FakeModel(ForgeModel):
    def __init__(self, engine):
        super().__init__(engine)
        self.sender = engine.spider.test_sender


class Probing(ForgeSpider):
    """Three packets per job: TCP SYNs (evil on seq 1) for ``tcp`` jobs, UDP datagrams (zero
    checksum on seq 2) otherwise; ``skip`` jobs are refused by ``forge``."""

    packets = 3
    model = FakeModel

    def __init__(self, worker_count, libtrace_uri, args, sender=None):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = 0.3
        self.test_sender = sender

    def forge(self, job, seq):
        kind = job[2]
        if kind == "skip":
            raise ForgeSkip("not a packet")
        if kind == "broken":
            raise RuntimeError("plugin bug")
        if kind == "tcp":
            return TCPSyn(job[1], evil=seq == 1)
        return UDPDatagram(job[1], b"query %d" % seq, zero_checksum=seq == 2)

    def create_observer(self):
        return DummyObserver()


@pytest.fixture
def servers():
    s = LoopbackServers()
    yield s
    s.close()


@pytest.fixture
def reservations(monkeypatch):
    """Every socket the engine reserves a port with."""
    made = []
    for name in ("reserve_tcp", "reserve_udp"):
        real = getattr(forging, name)

        def wrapper(*args, _real=real):
            sock, port = _real(*args)
            made.append(sock)
            return sock, port
        monkeypatch.setattr(forging, name, wrapper)
    return made


def jobs_for(servers, count=60):
    kinds = ["udp", "tcp", "silent", "skip"]
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        port = servers.silent_port if kind == "silent" else servers.port
        out.append(["127.0.0.1", port, kind, str(i)])
    return out


def by_job(records):
    out = {}
    for rec in records:
        out.setdefault(rec["rank"], {})[rec["config"]] = rec
    return out


def test_each_job_forges_its_packets_from_reserved_ports(servers, reservations):
    sender = FakeSender(servers)
    spider = Probing(8, "int:lo", None, sender)
    jobs = jobs_for(servers)
    records = run_jobs(spider, jobs)

    assert len(records) == 3 * len(jobs)
    table = by_job(records)
    sent = {(p["proto"], p["sport"]): p for p in sender.sent}  # TCP and UDP ports differ
    for job in jobs:
        recs = table[job[3]]
        assert set(recs) == {0, 1, 2}
        if job[2] == "skip":
            assert all(r["spdr_state"] == 3 and r["forge_skipped"] == "not a packet"
                       and r["sp"] == 0 for r in recs.values())
            continue
        ports = [recs[seq]["sp"] for seq in range(3)]
        assert len(set(ports)) == 3 and all(port > 1023 for port in ports)
        for seq, rec in recs.items():
            pkt = sent[rec["proto"], rec["sp"]]    # the packet carries the result's port
            assert (pkt["dst"], pkt["dport"], rec["dip"]) == ("127.0.0.1", job[1], job[0])
            assert rec["observed"] is False and rec["sip"] == "127.0.0.1"
            if job[2] == "tcp":
                assert pkt["flags"] == lab_packets.SYN and pkt["evil"] is (seq == 1)
                assert rec["proto"] == 6 and rec["spdr_state"] == 0 and rec["answer"] is None
            else:
                assert rec["proto"] == 17 and (pkt["checksum"] == 0) is (seq == 2)
    assert len(sender.sent) == 3 * sum(job[2] != "skip" for job in jobs)
    # every reserved port was released when its job ended
    assert reservations and all(sock.fileno() == -1 for sock in reservations)


def test_udp_answers_are_waited_for_on_the_reserved_socket(servers):
    spider = Probing(4, "int:lo", None, FakeSender(servers))
    jobs = [["127.0.0.1", servers.port, "udp", "a"], ["::1", servers.port6, "udp", "b"],
            ["127.0.0.1", servers.silent_port, "silent", "c"]]
    # FakeSender answers for the IPv4 server only: the IPv6 job waits out its timeout
    table = by_job(run_jobs(spider, jobs))
    assert [table["a"][s]["spdr_state"] for s in range(3)] == [0, 0, 0]
    assert [table["b"][s]["spdr_state"] for s in range(3)] == [2, 2, 2]
    assert table["b"][0]["sip"] == "::1" and table["b"][0]["sp"] > 0
    assert table["a"][0]["answer"] == len(b"answer:query 0")
    for seq in range(3):
        silent = table["c"][seq]
        assert silent["spdr_state"] == 2 and silent["answer"] is None


def test_a_silent_target_is_waited_for_from_when_its_packet_left(servers):
    spider = Probing(2, "int:lo", None, FakeSender(servers))
    started = time.monotonic()
    table = by_job(run_jobs(spider, [["127.0.0.1", servers.silent_port, "silent", "s"]]))
    elapsed = time.monotonic() - started
    assert [table["s"][seq]["spdr_state"] for seq in range(3)] == [2, 2, 2]
    # the three waits overlap: each ends conn_timeout after its own packet left
    assert 0.3 <= elapsed < 0.3 * 3


def test_a_failing_forge_counts_a_job_error_and_releases_its_ports(servers, reservations):
    spider = Probing(2, "int:lo", None, FakeSender(servers))
    records = run_jobs(spider, [["127.0.0.1", servers.port, "broken", "x"],
                                ["127.0.0.1", servers.port, "udp", "y"]])
    assert {r["rank"] for r in records} == {"y"}
    assert spider.engine.job_errors == 1
    assert all(sock.fileno() == -1 for sock in reservations)


def test_no_route_fails_the_packets_without_sending(servers, monkeypatch):
    def no_route(family, dst):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")
    monkeypatch.setattr(forging, "route_source", no_route)
    sender = FakeSender(servers)
    records = run_jobs(Probing(2, "int:lo", None, sender),
                       [["127.0.0.1", servers.port, "udp", "n"]])
    assert [(r["spdr_state"], r["answer"], r["sp"]) for r in records] == \
        [(1, "ENETUNREACH", 0)] * 3
    assert sender.sent == []


def test_a_forge_spider_needs_packets():
    class NoPackets(Probing):
        packets = 0

    with pytest.raises(TypeError, match="packets must be the number of packets"):
        NoPackets(1, "int:lo", None, None).start()


def test_a_job_with_a_hostile_hostname_sends_nothing(servers):
    """Jobs that bypass the CSV reader (added from code, other input formats) still never
    put a bad host name into a packet: the plugin's forge refuses it (ForgeSkip)."""
    from pathspider.plugins.udpzero import UDPZero

    class Plugin(UDPZero):
        model = FakeModel

        def __init__(self, worker_count, libtrace_uri, args, sender):
            super().__init__(worker_count, libtrace_uri, args)
            self.conn_timeout = 0.3
            self.test_sender = sender

        def create_observer(self):
            return DummyObserver()

    sender = FakeSender(servers)
    records = run_jobs(Plugin(2, "int:lo", None, sender),
                       [["127.0.0.1", servers.port, "evil.test\r\nX: y", "1"]])
    assert [r["spdr_state"] for r in records] == [3, 3]
    assert all("not a DNS name" in r["forge_skipped"] for r in records)
    assert sender.sent == []


# ---- real raw sockets (root), loopback only --------------------------------------------------

class RealProbing(Probing):
    model = ForgeModel


@pytest.mark.root
def test_real_raw_sockets_reach_loopback_servers_in_both_families(servers):
    jobs = [["127.0.0.1", servers.port, "udp", "v4"], ["::1", servers.port6, "udp", "v6"]]
    table = by_job(run_jobs(RealProbing(2, "int:lo", None), jobs))
    # IPv4: all three answered, the zero checksum too (legal: "no checksum")
    assert [table["v4"][s]["spdr_state"] for s in range(3)] == [0, 0, 0]
    # IPv6: a zero checksum is invalid, so the kernel drops packet 2 before the server
    assert [table["v6"][s]["spdr_state"] for s in range(3)] == [0, 0, 2]
