"""The lab's HTTP/1.1 server: answers GET and HEAD on every target address with a small page.

Run as ``python -m pathspider.lab.httpd [--port 80]`` inside the server namespace; the
supervisor starts several of these with SO_REUSEPORT so the kernel spreads connections over
them. Listeners are wildcard (IPv4 and IPv6), so with the AnyIP routes every target address is
served. TCP Fast Open is enabled on the listeners (the namespace also needs
``net.ipv4.tcp_fastopen=3``), so data on SYN reaches the server.

One request per connection: the response carries ``Connection: close`` and the server closes,
which is all a measurement client needs and keeps the per-connection cost small.

The server is one ``epoll`` loop over plain sockets (:class:`Server`), not asyncio: the lab's
servers share the machine with the measurement they serve (``benchmarks/e2e.py`` runs both on
the same two cores), and asyncio's per-connection machinery (transport and protocol objects,
scheduled callbacks, a timer, a peer-name look-up, epoll registration and removal) made these
processes the largest user of CPU time after the measurement itself. A connection needs an
accept, a read of its request (which has usually arrived by the time the connection is
accepted, so it is read at once, without registering the socket with epoll), a write and a
close; responses are built once per request line and target address. What goes on the wire
is what the asyncio server sent: the same bytes, one write, then the close (FIN).

HTTP/2 cleartext upgrades (RFC 7540 section 3.2): with ``--handoff PATH`` (the supervisor gives
it), a request asking for ``Upgrade: h2c`` to a target that speaks HTTP/2
(:func:`pathspider.lab.plan.serves_h2`) is handed, with its socket (``SCM_RIGHTS`` over a
connection to the Unix ``SOCK_SEQPACKET`` socket ``PATH``), to :mod:`pathspider.lab.h2d`, which
answers ``101 Switching Protocols`` and speaks HTTP/2 on it. Every other request, an upgrade
request to an ``h2-none`` target included, is answered here exactly as before; should the
handoff fail (h2d restarting), the request is answered here too, in HTTP/1.1. The only cost for
plain requests is looking for ``h2c`` in the header block.
"""
import argparse
import array
import collections
import logging
import select
import socket
import time

from . import plan, service

log = logging.getLogger("pathspider.lab.httpd")

MAX_HEADER = 8192
IDLE_TIMEOUT = 10.0
TFO_QUEUE = 1024
#: Bytes read from a connection at a time.
READ_SIZE = 65536
#: Most connections accepted from one listener before the loop looks at the others.
ACCEPT_BATCH = 256
#: Responses remembered (by request line and target address) before the memo is cleared.
RESPONSES_KEPT = 65536

#: Bytes that every h2c upgrade request holds (the ``Upgrade`` token), looked for first.
_H2C = b"h2c"

_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}


def page(local_ip):
    """The body served from ``local_ip``: says which target and class answered."""
    cls = plan.class_of(local_ip) or "none"
    return (f"<!DOCTYPE html>\n<html><head><title>pathspider lab</title></head>"
            f"<body><p>pathspider lab target {local_ip} class {cls}</p></body></html>\n"
            ).encode()


def response(status, body, head_only=False):
    """A complete HTTP/1.1 response with ``Connection: close``."""
    header = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
              f"Server: pathspider-lab\r\n"
              f"Content-Type: text/html\r\n"
              f"Content-Length: {len(body)}\r\n"
              f"Connection: close\r\n\r\n").encode()
    return header if head_only else header + body


def _fields(lines):
    """``{lower-case name: value}`` of header lines (repeated fields joined with ``,``), or
    None if a line is not a header field."""
    fields = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        name, value = name.strip().lower(), value.strip()
        fields[name] = fields[name] + b"," + value if name in fields else value
    return fields


def _tokens(value):
    return {token.strip().lower() for token in value.split(b",")}


def h2c_upgrade(head):
    """``(HTTP2-Settings value, method)`` if the header block ``head`` is an h2c upgrade
    request that RFC 7540 section 3.2 lets a server accept (``GET`` or ``HEAD``, HTTP/1.1,
    ``Upgrade: h2c``, ``Connection: Upgrade, HTTP2-Settings`` and exactly one
    ``HTTP2-Settings`` field), else None."""
    lines = head.split(b"\r\n")
    request = lines[0].split()
    if len(request) != 3 or request[0] not in (b"GET", b"HEAD") or request[2] != b"HTTP/1.1":
        return None
    fields = _fields(lines[1:])
    if not fields or _H2C not in _tokens(fields.get(b"upgrade", b"")):
        return None
    if not {b"upgrade", b"http2-settings"} <= _tokens(fields.get(b"connection", b"")):
        return None
    settings = fields.get(b"http2-settings")
    if settings is None or b"," in settings:
        return None
    return settings, request[0]


def handle_request(head, local_ip):
    """The response bytes for a request whose header block is ``head`` (up to CRLFCRLF)."""
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
        return response(400, b"bad request\n")
    method = line[0]
    if method not in (b"GET", b"HEAD"):
        return response(405, b"method not allowed\n")
    return response(200, page(local_ip), head_only=(method == b"HEAD"))


class _Connection:
    """An accepted connection whose request has not (completely) arrived, or whose response
    could not be written at once."""

    __slots__ = ("sock", "local_ip", "buf", "out", "deadline")

    def __init__(self, sock, local_ip, buf, deadline):
        self.sock = sock
        self.local_ip = local_ip
        self.buf = buf
        self.out = None
        self.deadline = deadline


class Server:
    """The epoll loop of one server process (see the module docstring).

    A connection is accepted, and its request read at once: when the client's request has
    already arrived (the usual case) the response is written and the socket closed without
    ever being registered with epoll. Otherwise the socket waits in epoll until the header
    block is complete (or the client closes, or ``IDLE_TIMEOUT`` passes: then it is closed,
    as the asyncio server aborted it). Deadlines are kept in arrival order (the timeout is
    the same for all), so the loop sleeps exactly until the first one.
    """

    def __init__(self, listeners, stop_fd, handoff=None):
        self.epoll = select.epoll()
        self.handoff = handoff              # h2d's Unix socket path, or None
        self._handoff_sock = None
        self._handoff_failures = 0
        self.listeners = {sock.fileno(): sock for sock in listeners}
        self.stop_fd = stop_fd
        self.conns = {}                     # fd -> _Connection
        self.deadlines = collections.deque()  # (deadline, fd, _Connection), oldest first
        self._responses = {}                # (request line, local ip) -> response bytes
        for fd in self.listeners:
            self.epoll.register(fd, select.EPOLLIN)
        self.epoll.register(stop_fd, select.EPOLLIN)

    def run(self):
        """Serve until ``stop_fd`` becomes readable."""
        poll, listeners, conns = self.epoll.poll, self.listeners, self.conns
        while True:
            timeout = -1
            if self.deadlines:
                timeout = max(0.0, self.deadlines[0][0] - time.monotonic())
            for fd, events in poll(timeout):
                if fd in listeners:
                    self._accept(listeners[fd])
                elif fd == self.stop_fd:
                    return
                else:
                    conn = conns.get(fd)
                    if conn is not None:
                        try:
                            if conn.out is None:
                                self._read(fd, conn)
                            else:
                                self._write(fd, conn)
                        except Exception:   # a bug must not stop the other connections
                            log.exception("error serving a connection")
                            self._close(fd, conn)
            if self.deadlines:
                self._expire(time.monotonic())

    def _accept(self, listener):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:                 # e.g. ECONNABORTED, EMFILE: try again later
                return
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                local_ip = sock.getsockname()[0]
            except OSError:
                sock.close()
                continue
            fd, conn = sock.fileno(), _Connection(sock, local_ip, b"", None)
            try:
                self._read(fd, conn)
            except Exception:               # a bug must not stop the other connections
                log.exception("error serving a connection")
                self._close(fd, conn)

    def _read(self, fd, conn):
        """Read what arrived; answer once the header block is complete."""
        sock = conn.sock
        while True:
            try:
                data = sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(fd, conn)
                return
            if not data:                    # the client closed before a whole request
                self._close(fd, conn)
                return
            buf = conn.buf = conn.buf + data
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end]
                if self.handoff is not None and _H2C in head and \
                        self._upgrade(fd, conn, head, buf):
                    return
                self._respond(fd, conn, self._response(head, conn.local_ip))
                return
            if len(buf) > MAX_HEADER:
                self._respond(fd, conn, response(431, b"header too large\n"))
                return
        if conn.deadline is None:           # wait for the rest of the request
            conn.deadline = time.monotonic() + IDLE_TIMEOUT
            self.conns[fd] = conn
            self.deadlines.append((conn.deadline, fd, conn))
            self.epoll.register(fd, select.EPOLLIN)

    def _upgrade(self, fd, conn, head, buf):
        """Hand an h2c upgrade request for an HTTP/2 target, with its socket, to h2d.

        True if h2d has it (this process then lets go of the socket); False if it is not such
        a request or h2d could not take it: the caller answers in HTTP/1.1.
        """
        if not plan.serves_h2(conn.local_ip) or h2c_upgrade(head) is None:
            return False
        rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))
        for _ in range(2):          # once more on a new connection if h2d was restarted
            try:
                if self._handoff_sock is None:
                    self._handoff_sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET |
                                                       socket.SOCK_CLOEXEC)
                    self._handoff_sock.settimeout(1.0)      # bounded, even with a full backlog
                    self._handoff_sock.connect(self.handoff)
                self._handoff_sock.sendmsg([buf], [rights], socket.MSG_DONTWAIT)
                break
            except OSError as exc:
                error = exc
                if self._handoff_sock is not None:
                    self._handoff_sock.close()
                    self._handoff_sock = None
        else:
            self._handoff_failures += 1
            if self._handoff_failures == 1 or self._handoff_failures % 1000 == 0:
                log.warning("cannot hand an h2c upgrade to h2d (%s; %d so far): answering "
                            "in HTTP/1.1", error, self._handoff_failures)
            return False
        if conn.deadline is not None:       # h2d shares the socket: epoll would keep it
            self.epoll.unregister(fd)
        self._close(fd, conn)
        return True

    def _response(self, head, local_ip):
        """``handle_request(head, local_ip)``, remembered by request line and address."""
        key = (head.split(b"\r\n", 1)[0], local_ip)
        data = self._responses.get(key)
        if data is None:
            if len(self._responses) >= RESPONSES_KEPT:
                self._responses.clear()
            data = self._responses[key] = handle_request(head, local_ip)
        return data

    def _respond(self, fd, conn, data):
        try:
            sent = conn.sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(fd, conn)
            return
        if sent == len(data):
            self._close(fd, conn)
            return
        conn.out = data[sent:]              # the rest when the socket is writable
        if conn.deadline is None:
            conn.deadline = time.monotonic() + IDLE_TIMEOUT
            self.conns[fd] = conn
            self.deadlines.append((conn.deadline, fd, conn))
            self.epoll.register(fd, select.EPOLLOUT)
        else:
            self.epoll.modify(fd, select.EPOLLOUT)

    def _write(self, fd, conn):
        try:
            sent = conn.sock.send(conn.out, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd, conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(fd, conn)

    def _close(self, fd, conn):
        """Close the connection (the kernel removes it from the epoll set)."""
        if self.conns.get(fd) is conn:
            del self.conns[fd]
        conn.deadline = None
        conn.sock.close()

    def _expire(self, now):
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _, fd, conn = deadlines.popleft()
            if conn.deadline is not None and self.conns.get(fd) is conn:
                self._close(fd, conn)


def make_listeners(port):
    """IPv4 and IPv6 wildcard listeners with SO_REUSEPORT and TCP Fast Open."""
    socks = []
    for family in (socket.AF_INET, socket.AF_INET6):
        sock = service.listener(family, socket.SOCK_STREAM, port, reuseport=True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, TFO_QUEUE)
        socks.append(sock)
    return socks


def serve(port, handoff=None):
    """Listen on ``port``, say so to the supervisor, serve until SIGTERM or SIGINT (h2c
    upgrades go to h2d's socket ``handoff`` when given)."""
    listeners = make_listeners(port)
    stop_fd = service.term_wakeup_fd()
    service.signal_ready(f"httpd listening on port {port}")
    Server(listeners, stop_fd, handoff).run()
    for sock in listeners:
        sock.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=plan.HTTP_PORT)
    parser.add_argument("--handoff", metavar="PATH",
                        help="h2d's Unix socket: hand h2c upgrade requests to it")
    args = parser.parse_args(argv)
    service.setup_logging("httpd")
    log.info("starting on port %d", args.port)
    serve(args.port, args.handoff)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
