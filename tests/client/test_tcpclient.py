"""The non-blocking connect/HTTP steps the plugins use, on loopback (no root needed)."""
import socket
import threading

import pytest

from pathspider.base import Conn
from pathspider.client import tcpclient


def serve_once(reply=b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"):
    """A loopback listener answering one request with ``reply``; returns (port, thread)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen = {}

    def run():
        conn, _ = listener.accept()
        with conn:
            seen["request"] = conn.recv(4096)
            conn.sendall(reply)
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, seen


def test_http_exchange_and_local_port():
    port, thread, seen = serve_once()
    attempt = tcpclient.start_connect("127.0.0.1", port, 5)
    assert attempt.port > 0 and attempt.sip == "127.0.0.1"
    assert tcpclient.finish_connect(attempt) == Conn.OK
    request = tcpclient.http_request("t1.clean.lab.test", "127.0.0.1")
    assert tcpclient.http_get(attempt, request, 5) == 204
    tcpclient.close(attempt)
    thread.join(5)
    assert seen["request"].startswith(b"GET / HTTP/1.1\r\nHost: t1.clean.lab.test\r\n")
    assert attempt.sock.fileno() == -1


def test_refused_keeps_the_local_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    attempt = tcpclient.start_connect("127.0.0.1", closed_port, 5)
    port = attempt.port
    assert tcpclient.finish_connect(attempt) == Conn.FAILED
    tcpclient.close(attempt)
    assert port > 0 and attempt.port == port
    assert attempt.connect_time is not None and attempt.connect_time < 5


def test_host_header_defaults_to_the_address():
    assert b"Host: [::1]\r\n" in tcpclient.http_request("", "::1")
    assert b"Host: 198.18.64.1\r\n" in tcpclient.http_request(None, "198.18.64.1")


@pytest.mark.parametrize("host", ["a.example\r\nX-Injected: 1", "a.example\n\nGET /x HTTP/1.1",
                                  "a.example\r", "a b", "a.example:80", "a.example/x",
                                  "u@a.example"])
def test_host_header_refuses_what_is_not_a_host_name(host):
    """Defence in depth: whatever made the job, no CR/LF (or other junk) reaches the request."""
    with pytest.raises(ValueError, match="not a host name"):
        tcpclient.http_request(host, "198.18.64.1")


def test_host_header_uses_the_a_label_in_lower_case():
    request = tcpclient.http_request("Bücher.Example.", "198.18.64.1")
    assert b"Host: xn--bcher-kva.example\r\n" in request
    assert request.count(b"\r\n") == 5


def test_host_header_fallback_needs_an_address():
    with pytest.raises(ValueError, match="not an IP address"):
        tcpclient.http_request("", "198.18.64.1\r\nX: 1")


def test_http_status_parsing():
    assert tcpclient.http_status(b"HTTP/1.0 200 OK\r\n\r\n") == 200
    assert tcpclient.http_status(b"garbage") is None
    assert tcpclient.http_status(b"") is None


def test_job_columns_are_optional():
    assert tcpclient.job_host(["198.18.64.1", 80]) == ""
    assert tcpclient.job_rank(["198.18.64.1", 80, "h"]) is None
    assert tcpclient.job_rank(["198.18.64.1", 80, "h", "7"]) == "7"


def test_start_time_text_is_made_when_read_and_reads_as_utc_now_text():
    import datetime
    import time
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    attempt = tcpclient.start_connect("127.0.0.1", 9, 5)
    after = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    tcpclient.close(attempt)
    assert attempt._tstart is None                  # not formatted while connecting
    text = attempt.tstart
    assert before <= datetime.datetime.fromisoformat(text) <= after
    assert attempt.tstart is text
    ns = time.time_ns()
    seconds, micros = divmod(ns // 1000, 10**6)
    expected = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    assert tcpclient.utc_text(ns) == str(expected.replace(tzinfo=None, microsecond=micros))
    assert tcpclient.utc_text(1_000_000_000 * 10**9) == "2001-09-09 01:46:40"   # as str()
    explicit = tcpclient.Pending(None, "127.0.0.1", 80, "t", 0.0, 1)
    assert explicit.tstart == "t"


def test_the_local_address_can_be_read_later():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    attempt = tcpclient.start_connect("127.0.0.1", closed_port, 5, local_address=False)
    assert attempt.port == 0 and attempt.sip is None
    assert tcpclient.finish_connect(attempt) == Conn.FAILED     # reads it if not read yet
    assert attempt.port > 0 and attempt.sip == "127.0.0.1"
    later = tcpclient.start_connect("127.0.0.1", closed_port, 5, local_address=False)
    tcpclient.finish_connect(later)
    port = later.port
    later.port = 0
    tcpclient.read_local_address(later)             # still there after the refusal
    tcpclient.close(later)
    assert later.port == port > 0
