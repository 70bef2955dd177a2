"""Non-blocking TCP (and HTTP) client steps for measurement plugins.

A synchronized measurement only needs its configuration in force while the part of the
connection that depends on it happens. For ECN that is the moment the SYN leaves: the kernel
decides per socket, inside ``connect()``, whether to ask for ECN. So the plugins split a
connection in two:

* :func:`start_connect` (called from ``connect``, inside the configuration): creates the socket
  and starts a non-blocking connect. The SYN is sent before it returns; it never waits for the
  network.
* :func:`finish_connect` / :func:`http_get` / :func:`close` (called from ``post_connect``,
  outside the lock-step): wait for the handshake with a deadline, optionally exchange an HTTP
  request and reply, and close the socket.

The local (source) port is read from the socket before it is closed (right after the connect
starts, or, for the reactor's attempts, when the attempt finishes: the kernel keeps it after a
refusal or an ICMP error too), so the result of a refused or timed-out connection still
carries the port its SYN used, and the merger can pair it with the observed flow. Every path
closes the socket.
"""
import datetime
import errno
import logging
import resource
import select
import socket
import time

from pathspider.client.names import dns_name
from pathspider.constants import Conn, Connection

log = logging.getLogger("pathspider.client.tcpclient")

USER_AGENT = "pathspider"
MAX_REPLY = 1 << 20
"""Bytes of an HTTP reply read at most; the rest is not needed to see the marks."""

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)

_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR)

_POLL_OUT = select.POLLOUT | select.POLLERR | select.POLLHUP
_POLL_IN = select.POLLIN | select.POLLERR | select.POLLHUP


class Pending:
    """A connection attempt in progress (what ``connect`` hands to ``post_connect``).

    ``tstart`` is the UTC time the attempt started, as :func:`utc_now_text` writes it. An
    attempt made by :func:`start_connect` keeps the clock reading and makes the text when
    ``tstart`` is first read (by whoever builds the record, after the connection), so the
    formatting is not done while the configuration is in force.
    """

    __slots__ = ("sock", "ip", "rport", "port", "sip", "_tstart", "_start_ns", "started",
                 "deadline", "error", "state", "connect_time", "sent")

    def __init__(self, sock, ip, rport, tstart, started, timeout, start_ns=None):
        self.sock = sock
        self.ip = ip
        self.rport = rport
        self.port = 0
        self.sip = None
        self._tstart = tstart           # text, or None: made from _start_ns when read
        self._start_ns = start_ns       # time.time_ns() when the attempt started
        self.started = started
        self.deadline = started + timeout
        self.error = None
        self.state = None
        self.connect_time = None
        self.sent = 0

    @property
    def tstart(self):
        text = self._tstart
        if text is None and self._start_ns is not None:
            text = self._tstart = utc_text(self._start_ns)
        return text

    @tstart.setter
    def tstart(self, text):
        self._tstart = text


def utc_now_text():
    """The current UTC time as 1.0 wrote it (``str(datetime.utcnow())``)."""
    return str(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None))


_EPOCH = datetime.datetime(1970, 1, 1)


def utc_text(ns):
    """:func:`utc_now_text` for the moment ``time.time_ns()`` returned ``ns`` (the same text:
    ``datetime.now`` also truncates the system clock to microseconds)."""
    return str(_EPOCH + datetime.timedelta(microseconds=ns // 1000))


def job_host(job):
    """The job's hostname (third column), or '' if the job has none (1.0 assumed four)."""
    return job[2] if len(job) > 2 and job[2] is not None else ""


def job_rank(job):
    """The job's rank (fourth column), or None."""
    return job[3] if len(job) > 3 else None


def family_of(ip):
    """AF_INET6 for textual IPv6 addresses, AF_INET otherwise."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def read_local_address(pending):
    """Set ``pending.sip`` and ``pending.port`` from its socket (unchanged without one).

    The kernel keeps the local address and port of a connecting socket also after the attempt
    failed (refused, unreachable) or while it is still waiting, until the socket is closed:
    read them any time before :func:`close`.
    """
    try:
        name = pending.sock.getsockname()
    except (OSError, AttributeError):
        return
    pending.sip, pending.port = name[0], name[1]


def start_connect(ip, port, timeout, data=None, local_address=True):
    """Create a non-blocking socket and start connecting to ``(ip, port)``.

    With ``data`` the connect is a TCP Fast Open one (``sendto`` with ``MSG_FASTOPEN``): with a
    cached cookie the data leaves on the SYN, without one the SYN asks for a cookie and the data
    is sent by :func:`send_all` after the handshake (``pending.sent`` says how much already
    left). Returns a :class:`Pending`; errors are recorded in it, never raised.

    ``local_address=False`` leaves ``sip`` and ``port`` unread: the caller reads them with
    :func:`read_local_address` before closing the socket (the reactor does, off the thread
    that makes connections while a configuration is in force).
    """
    start_ns = time.time_ns()
    started = time.monotonic()
    family = family_of(ip)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as exc:          # e.g. EMFILE: report the job as failed, do not lose it
        pending = Pending(None, ip, port, None, started, timeout, start_ns)
        pending.error = exc.errno or errno.EIO
        return pending
    pending = Pending(sock, ip, port, None, started, timeout, start_ns)
    try:
        _receive_errors(sock, family)
        if data is None:
            err = sock.connect_ex((ip, port))     # no exception on the normal EINPROGRESS
            if err and err not in _IN_PROGRESS:
                pending.error = err
        else:
            pending.sent = sock.sendto(data, socket.MSG_FASTOPEN, (ip, port))
    except (BlockingIOError, InterruptedError):
        pass
    except OSError as exc:
        pending.error = exc.errno or errno.EIO
    except BaseException:
        sock.close()
        raise
    if local_address:
        read_local_address(pending)
    return pending


def _receive_errors(sock, family):
    """Make ICMP errors about this connection end it at once (IP_RECVERR / IPV6_RECVERR).

    Without this, an ICMP unreachable that arrives while ``connect()`` still holds the socket
    lock is only noted as a "soft" error (Linux counts it in LockDroppedIcmps) and the kernel
    keeps retransmitting the SYN: in the lab an ICMPv6 unreachable target took a full SYN
    retransmission (1 s) instead of a few microseconds to fail. With the option the error is
    queued on the socket, ``poll`` reports it, and the attempt fails with its errno.
    """
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def _wait(sock, events, deadline):
    """Poll one socket until ``events`` or the deadline; True if an event came."""
    poller = select.poll()
    poller.register(sock, events)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if poller.poll(remaining * 1000):
            return True


def finish_connect(pending):
    """Wait (until the deadline) for the handshake; returns and records the :class:`Conn`."""
    if pending.state is None:
        if pending.error is not None:
            pending.state = Conn.FAILED
        elif not _wait(pending.sock, _POLL_OUT, pending.deadline):
            # A soft error (e.g. an ICMPv6 unreachable, which Linux does not treat as fatal
            # while connecting) means an answer did come: report the attempt as failed.
            err = pending.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            pending.error = err or None
            pending.state = Conn.FAILED if err else Conn.TIMEOUT
        else:
            err = pending.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                pending.error = err
                pending.state = Conn.FAILED
            else:
                pending.state = Conn.OK
        pending.connect_time = time.monotonic() - pending.started
        if not pending.port:
            read_local_address(pending)
    return pending.state


def send_all(sock, data, deadline):
    """Send ``data`` on a non-blocking socket before the deadline; False if it could not."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError):
            if not _wait(sock, _POLL_OUT, deadline):
                return False
            continue
        except OSError:
            return False
        view = view[sent:]
    return True


def recv_reply(sock, deadline, limit=MAX_REPLY):
    """Read until the peer closes, ``limit`` bytes, or the deadline; returns the bytes."""
    chunks, size = [], 0
    while size < limit:
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            if not _wait(sock, _POLL_IN, deadline):
                break
            continue
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def http_request(host, ip):
    """The ``GET /`` request sent by the plugins (``Connection: close`` so the server ends the
    connection with a FIN and the Observer sees the flow complete).

    ``host`` comes from the target list: it goes into the Host header only as a valid DNS name
    (its A-label form), else ``ValueError`` -- a name with CR/LF must never add headers or a
    second request, whatever reader produced the job. Without a host, the address is used.
    """
    if host:
        try:
            host = dns_name(host)
        except ValueError as exc:
            raise ValueError(f"not a host name for the Host header: {host!r:.60} ({exc})") \
                from None
    else:
        host = _address_literal(ip)
    return (f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Connection: close\r\n\r\n").encode("ascii")


def _address_literal(ip):
    """``ip`` as a Host header value (``[v6]``); ``ValueError`` if it is not an IP address."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        socket.inet_pton(family, ip)
    except (OSError, ValueError):
        raise ValueError(f"not an IP address: {ip!r}") from None
    return f"[{ip}]" if family == socket.AF_INET6 else ip


def http_status(reply):
    """The status code of an HTTP reply, or None if it does not start with a status line."""
    line = reply.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return None


def http_get(pending, request, timeout):
    """Send ``request`` (the part not already sent on the SYN) and read the reply.

    Gets its own ``timeout`` after the connection was established. Returns the HTTP status
    code, or None if no status line arrived.
    """
    deadline = time.monotonic() + timeout
    if not send_all(pending.sock, request[pending.sent:], deadline):
        return None
    return http_status(recv_reply(pending.sock, deadline))


def close(pending, graceful=True):
    """Close the socket of an attempt; never raises.

    ``graceful``: shut the connection down first if it was established (sends the FIN even if
    the socket were shared). After reading a reply to its end a plain close does the same.
    """
    sock = pending.sock
    if sock is None:
        return
    if graceful and pending.state == Conn.OK:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    sock.close()


def raise_fd_limit():
    """Raise this process's open-file limit to its hard limit.

    A run keeps two sockets open per job in flight; with many workers and silent targets that
    is thousands of sockets, beyond the usual soft limit of 1024. Returns the new soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("could not raise the open-file limit: %s", exc)
    return soft


def blocking_connect(ip, port, timeout):
    """Connect to ``(ip, port)`` within ``timeout`` seconds (1.0's ``Spider.tcp_connect``).

    Returns ``Connection(socket, local_port, state, tstart)`` and never raises for network
    errors. The local port is the one the kernel chose also when the connection was refused
    or timed out, so the failed attempt still matches its observed SYN. On failure the socket
    is already closed.
    """
    tstart = utc_now_text()
    sock = socket.socket(family_of(ip), socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        return Connection(sock, sock.getsockname()[1], Conn.OK, tstart)
    except (TimeoutError, socket.timeout):
        state = Conn.TIMEOUT
    except OSError:
        state = Conn.FAILED
    except BaseException:
        sock.close()
        raise
    port = _local_port(sock)
    sock.close()
    return Connection(sock, port, state, tstart)


def _local_port(sock):
    try:
        return sock.getsockname()[1]
    except OSError:
        return 0
