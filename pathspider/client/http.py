"""HTTP clients for measurement plugins: HTTP/1.1 ``GET /``, optionally asking for HTTP/2.

:func:`http_get` makes one connection to a target and one request over it, and reports what
happened in an :class:`HttpResult`: the outcome (``Conn.OK`` once an HTTP response arrived,
whatever its status; ``Conn.FAILED``; ``Conn.TIMEOUT``), the status code, the protocol the
response came in (``"h2"`` or ``"http/1.1"``), and the local address and port, also when the
connection failed, so the result still matches the flow the Observer saw.

With ``h2c=True`` the request asks to switch to HTTP/2 in cleartext (RFC 7540 section 3.2:
``Connection: Upgrade, HTTP2-Settings``, ``Upgrade: h2c``, ``HTTP2-Settings``), as libcurl
does for ``http://`` URLs with HTTP/2 asked for. A server that agrees answers ``101
Switching Protocols`` and sends the response on HTTP/2 stream 1; one that does not simply
answers in HTTP/1.1 (``protocol`` ``"http/1.1"``). HTTP/2 framing is hyper-h2's (the ``h2``
package). :mod:`pathspider.client.tls` does the same over TLS, where ALPN chooses.

The calls block (bounded by ``timeout`` for the connection and again for the exchange): use
them from a desynchronized plugin's ``connect``, which runs in a worker thread. The
connection itself is :func:`pathspider.client.tcpclient.start_connect`'s, so ICMP errors end
it at once and the local port is known before the first packet leaves.

A host name from the target list goes into the request only as a valid DNS name
(:func:`pathspider.client.names.dns_name`); anything else raises ``ValueError`` before a
packet is sent.
"""
import collections
import ipaddress
import logging
import os
import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from pathspider.client import tcpclient
from pathspider.client.names import dns_name
from pathspider.constants import Conn

log = logging.getLogger("pathspider.client.http")

DEFAULT_TIMEOUT = 5.0
USER_AGENT = tcpclient.USER_AGENT
READ_SIZE = 65536
#: Largest response header block read; a longer one is a failed exchange.
MAX_HEAD = 65536
#: Bytes of a response body read at most (the rest is not needed for a status).
MAX_BODY = tcpclient.MAX_REPLY
#: Seconds, at most, to wait for the server's close after the exchange (so the connection
#: ends with FINs, not a reset), within what is left of the exchange's timeout.
LINGER = 1.0

#: The outcome of one request (see the module docstring). ``alpn``: the protocol TLS
#: negotiated (None for cleartext); ``error``: a short reason when ``state`` is not OK.
HttpResult = collections.namedtuple(
    "HttpResult", ["state", "status", "protocol", "alpn", "sp", "sip", "connect_time",
                   "error"])


class ExchangeError(Exception):
    """The server answered, but not with an HTTP response (closed, reset the stream...)."""


# ---- requests ------------------------------------------------------------------------------------

def authority(host, ip):
    """The ``Host`` (``:authority``) value: ``host`` as a checked DNS name, else the address
    (``[v6]``); ``ValueError`` if ``host`` is not a host name or ``ip`` not an address."""
    if host:
        try:
            return dns_name(host)
        except ValueError as exc:
            raise ValueError(f"not a host name for a request: {host!r:.60} ({exc})") from None
    address = ipaddress.ip_address(ip)
    return f"[{address}]" if address.version == 6 else str(address)


def request(authority_value, h2c_settings=None):
    """The HTTP/1.1 ``GET /`` request bytes; with ``h2c_settings`` (the ``HTTP2-Settings``
    value) an h2c upgrade request, else one with ``Connection: close``."""
    if h2c_settings is None:
        connection = "Connection: close\r\n"
    else:
        connection = (f"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                      f"HTTP2-Settings: {h2c_settings.decode('ascii')}\r\n")
    return (f"GET / HTTP/1.1\r\nHost: {authority_value}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Accept: */*\r\n{connection}\r\n").encode("ascii")


def h2_client():
    """A hyper-h2 client connection (header names and values as bytes)."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    return h2.connection.H2Connection(config=config)


# ---- one socket with one deadline ----------------------------------------------------------------

class Channel:
    """A connected socket (plain or TLS) whose every operation ends by ``deadline``
    (``time.monotonic()``), raising ``TimeoutError`` after it."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        try:    # small requests and frames leave at once, not after a delayed ACK (40 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def arm(self, deadline=None):
        """Set the socket's timeout to what is left (``TimeoutError`` if nothing)."""
        left = (deadline or self.deadline) - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)

    def send(self, data):
        if data:
            self.arm()
            self.sock.sendall(data)

    def recv(self, deadline=None):
        """Up to READ_SIZE bytes; b"" when the peer closed."""
        self.arm(deadline)
        return self.sock.recv(READ_SIZE)

    def linger(self):
        """Read and drop what the server still sends until it closes (at most ``LINGER``
        seconds), so that closing does not reset the connection. Never raises."""
        until = min(self.deadline, time.monotonic() + LINGER)
        try:
            while self.recv(until):
                pass
        except (OSError, ValueError):
            pass


# ---- HTTP/1.1 ----------------------------------------------------------------------------------

def read_head(channel):
    """Read a response's header block; returns ``(status, head, rest)``.

    ``ExchangeError`` if the server closes before a status line or sends too much.
    """
    buf = b""
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            break
        if len(buf) > MAX_HEAD:
            raise ExchangeError("response header block too large")
        data = channel.recv()
        if not data:
            head, rest = buf, b""
            break
        buf += data
    status = tcpclient.http_status(head)
    if status is None:
        raise ExchangeError("no HTTP response" if not head else
                            f"not an HTTP response: {head[:40]!r}")
    return status, head, rest


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def read_body(channel, head, rest):
    """Read the body after ``head`` (Content-Length, chunked end, or the close; at most
    ``MAX_BODY`` bytes). A server that stops sending only ends the read."""
    length = _content_length(head)
    chunked = b"chunked" in head.lower()
    size = len(rest)
    try:
        while size < MAX_BODY:
            if length is not None and size >= length:
                return
            if chunked and rest.endswith(b"0\r\n\r\n"):
                return
            data = channel.recv()
            if not data:
                return
            size += len(data)
            rest = rest[-5:] + data
    except (OSError, ValueError):
        return


def exchange_http1(channel, request_bytes):
    """Send an HTTP/1.1 request and read the response; returns the status code."""
    channel.send(request_bytes)
    status, head, rest = read_head(channel)
    read_body(channel, head, rest)
    return status


# ---- HTTP/2 ------------------------------------------------------------------------------------

def _on_event(conn, event, got):
    """Note what an HTTP/2 event says about stream 1 in ``got`` (status, ended)."""
    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
        status = dict(event.headers).get(b":status", b"")
        got["status"] = int(status) if status.isdigit() else None
    elif isinstance(event, h2.events.DataReceived):
        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
        got["ended"] = True
    elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
        got["ended"] = True
        if got["status"] is None:
            raise ExchangeError(f"HTTP/2 {type(event).__name__} before a response")


def exchange_h2(channel, conn, received=b""):
    """Drive the client connection ``conn`` (stream 1 already requested) until stream 1's
    response has ended; ``received``: bytes already read after a ``101``. Returns the status.
    Then says GOAWAY and waits (briefly) for the server to close."""
    got = {"status": None, "ended": False}
    channel.send(conn.data_to_send())
    data = received
    while not got["ended"]:
        if data:
            try:
                events = conn.receive_data(data)
            except h2.exceptions.H2Error as exc:
                raise ExchangeError(f"HTTP/2 protocol error: {exc}") from None
            for event in events:
                _on_event(conn, event, got)
            channel.send(conn.data_to_send())
            if got["ended"]:
                break
        data = channel.recv()
        if not data:
            break
    if got["status"] is None:
        raise ExchangeError("closed before an HTTP/2 response")
    _goodbye(channel, conn)
    return got["status"]


def _goodbye(channel, conn):
    """GOAWAY, then let the server close first. Never raises."""
    try:
        conn.close_connection()
        channel.send(conn.data_to_send())
    except (OSError, ValueError, h2.exceptions.H2Error):
        return
    channel.linger()


# ---- the request --------------------------------------------------------------------------------

def outcome(exc):
    """``(Conn state, short reason)`` for an exception raised by an exchange."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return Conn.TIMEOUT, "timed out"
    return Conn.FAILED, (str(exc) or type(exc).__name__)[:120]


def connect(ip, port, timeout):
    """Start and finish a TCP connection (:mod:`~pathspider.client.tcpclient`); returns the
    ``Pending`` attempt, its state and the error text when it failed."""
    attempt = tcpclient.start_connect(ip, port, timeout)
    state = tcpclient.finish_connect(attempt)
    error = None
    if state != Conn.OK:
        error = "timed out" if state == Conn.TIMEOUT else socket_error_text(attempt.error)
    return attempt, state, error


def socket_error_text(err):
    """A short text for an errno (or None)."""
    return os.strerror(err) if isinstance(err, int) else (str(err) if err else "failed")


def result(attempt, state, status=None, protocol=None, alpn=None, error=None):
    """The :class:`HttpResult` of ``attempt``."""
    return HttpResult(state, status, protocol, alpn, attempt.port, attempt.sip,
                      round(attempt.connect_time or 0.0, 6), error)


def http_get(ip, port=80, host="", timeout=DEFAULT_TIMEOUT, h2c=False):
    """``GET /`` from ``(ip, port)`` over cleartext HTTP; with ``h2c`` ask to upgrade to
    HTTP/2. Returns an :class:`HttpResult` (never raises for network errors; ``ValueError``
    for a ``host`` that is not a host name, before connecting)."""
    value = authority(host, ip)
    conn = h2_client() if h2c else None
    request_bytes = request(value, conn.initiate_upgrade_connection() if conn else None)
    attempt, state, error = connect(ip, port, timeout)
    if state != Conn.OK:
        tcpclient.close(attempt, graceful=False)
        return result(attempt, state, error=error)
    channel = Channel(attempt.sock, time.monotonic() + timeout)
    protocol = status = None
    try:
        channel.send(request_bytes)
        status, head, rest = read_head(channel)
        if conn is not None and status == 101:
            protocol = "h2"
            status = exchange_h2(channel, conn, rest)
        else:
            protocol = "http/1.1"
            read_body(channel, head, rest)
    except (OSError, ValueError, ExchangeError) as exc:
        state, error = outcome(exc)
        status = None
    finally:
        attempt.sock.close()
    return result(attempt, state, status, protocol, error=error)
