"""The epoll reactor that finishes plugin connections, on loopback (no root needed)."""
import socket
import threading

import pytest

from pathspider.base import Conn
from pathspider.client import tcpclient
from pathspider.client.reactor import Reactor

REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


class Server:
    """Loopback HTTP-ish server: answers every request with REPLY and closes."""

    def __init__(self, reply=REPLY):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.requests = []
        self.peer_ports = set()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            self.peer_ports.add(peer[1])
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data)
            conn.sendall(self.reply)

    def close(self):
        self.listener.close()


@pytest.fixture
def reactor():
    r = Reactor()
    yield r
    r.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_http_exchange(reactor, server):
    attempt = tcpclient.start_connect("127.0.0.1", server.port, 5)
    job = reactor.submit(attempt, tcpclient.http_request("h.test", "127.0.0.1"), 5).wait()
    assert attempt.state == Conn.OK and job.http_status == 200 and job.received == len(REPLY)
    assert attempt.port > 0 and attempt.connect_time < 5
    assert attempt.sock.fileno() == -1
    assert server.requests[0].startswith(b"GET / HTTP/1.1\r\nHost: h.test\r\n")


def test_tcp_mode_closes_after_handshake(reactor, server):
    attempt = tcpclient.start_connect("127.0.0.1", server.port, 5)
    job = reactor.submit(attempt, None, 5).wait()
    assert attempt.state == Conn.OK and job.http_status is None and job.received == 0


def test_refused(reactor):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    attempt = tcpclient.start_connect("127.0.0.1", port, 5)
    reactor.submit(attempt, b"GET / HTTP/1.1\r\n\r\n", 5).wait()
    assert attempt.state == Conn.FAILED and attempt.port > 0 and attempt.connect_time < 1


def test_timeout_keeps_the_port(reactor):
    # A listener that never accepts, with its queue full: further SYNs go unanswered.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        attempt = tcpclient.start_connect("127.0.0.1", port, 0.5)
        job = reactor.submit(attempt, b"GET / HTTP/1.1\r\n\r\n", 0.5).wait()
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert attempt.state == Conn.TIMEOUT and attempt.port > 0, attempt.error
    assert 0.45 < attempt.connect_time < 2 and job.http_status is None


def test_many_connections_all_finish(reactor, server):
    attempts = [tcpclient.start_connect("127.0.0.1", server.port, 5) for _ in range(200)]
    jobs = [reactor.submit(a, tcpclient.http_request("", "127.0.0.1"), 5) for a in attempts]
    assert all(job.wait().http_status == 200 for job in jobs)
    assert len({a.port for a in attempts}) == 200


def test_failed_socket_is_finished_at_once(reactor):
    attempt = tcpclient.Pending(None, "127.0.0.1", 80, "t", 0.0, 1)
    attempt.error = 24
    assert reactor.submit(attempt, None, 1).wait().finished
    assert attempt.state == Conn.FAILED


def test_open_sockets_are_bounded(server):
    import time
    bounded = Reactor(max_open=2)
    try:
        # two connections to a listener that never answers keep both slots for 0.4 s
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        port = silent.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for s in fillers:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        first = [bounded.start("127.0.0.1", port, 0.4) for _ in range(2)]
        started = time.monotonic()
        third = bounded.start("127.0.0.1", server.port, 5, b"GET / HTTP/1.1\r\n\r\n")
        waited = time.monotonic() - started
        assert all(job.wait().attempt.state == Conn.TIMEOUT for job in first)
        assert third.wait().http_status == 200
        assert waited >= 0.3          # the third connection was started only after a slot freed
    finally:
        for s in fillers:
            s.close()
        silent.close()
        bounded.close()


def closed_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_started_attempts_get_their_local_address_when_they_finish(reactor, server):
    """``Reactor.start`` leaves the local address to the reactor (a system call fewer for the
    connect worker); every outcome still carries the port its SYN used."""
    ok = reactor.start("127.0.0.1", server.port, 5, b"GET / HTTP/1.1\r\n\r\n")
    refused = reactor.start("127.0.0.1", closed_port(), 5, b"GET / HTTP/1.1\r\n\r\n")
    for job, state in ((ok, Conn.OK), (refused, Conn.FAILED)):
        attempt = job.wait().attempt
        assert attempt.state == state and attempt.port > 0 and attempt.sip == "127.0.0.1"
        assert attempt.sock.fileno() == -1
    assert ok.attempt.port in server.peer_ports


def test_a_started_attempt_that_times_out_keeps_its_port(reactor):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        attempt = reactor.start("127.0.0.1", port, 0.3).wait().attempt
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert attempt.state == Conn.TIMEOUT and attempt.port > 0 and attempt.sip == "127.0.0.1"


def test_finished_attempts_leave_the_deadline_heap(server):
    """Memory (issue 13): an attempt that finished before its deadline is not kept alive by
    its heap entry, and the heap stays proportional to the attempts open."""
    from pathspider.client import reactor as reactor_module
    r = Reactor()
    try:
        jobs = [r.start("127.0.0.1", server.port, 30.0, b"GET / HTTP/1.0\r\n\r\n")
                for _ in range(300)]
        for job in jobs:
            job.wait()
        assert all(job.attempt.state == Conn.OK and job.http_status == 200 for job in jobs)
        assert all(job.entry is None for job in jobs)
        heap = []
        dead = [[1.0, i, None] for i in range(5000)]
        heap.extend(dead)
        heap.append([0.5, -1, jobs[0]])
        reactor_module._compact(heap)
        assert heap == [[0.5, -1, jobs[0]]]
    finally:
        r.close()
