"""HTTPS clients for measurement plugins: TLS with ALPN, then ``GET /`` in what was chosen.

:func:`https_get` connects, makes a TLS handshake offering the ALPN protocols asked for
(``ALPN_H2`` = ``h2`` and ``http/1.1``, as a browser or libcurl asking for HTTP/2 does;
``ALPN_HTTP1`` = ``http/1.1`` only), and sends ``GET /``: over HTTP/2 (hyper-h2) when the
server chose ``h2``, else over HTTP/1.1. The result is :class:`pathspider.client.http.HttpResult`
with ``alpn`` the protocol the server chose (None if it chose none) and ``protocol`` the one
the response came in.

Certificates are not checked by default: a measurement asks whether the path lets the
protocol through, not whether the server's certificate is right. With ``cafile`` they are,
against that CA file only (the lab's is ``Lab.ca_file``), and the certificate must name
``host`` (or, without a host, the address). The host name is sent as SNI only after
:func:`pathspider.client.names.dns_name` accepted it; without one no SNI is sent.

Like :mod:`pathspider.client.http`, the calls block, bounded by ``timeout`` for the TCP
connection and again for the handshake and exchange, and the result carries the local port
also when anything failed.
"""
import functools
import logging
import ssl
import time

from pathspider.client import http, tcpclient
from pathspider.constants import Conn

log = logging.getLogger("pathspider.client.tls")

#: ALPN offers: asking for HTTP/2 (with HTTP/1.1 as the fallback), and not asking for it.
ALPN_H2 = ("h2", "http/1.1")
ALPN_HTTP1 = ("http/1.1",)


@functools.lru_cache(maxsize=16)
def context(alpn=ALPN_H2, cafile=None):
    """A client TLS context offering ``alpn`` (a tuple); certificate checks only with
    ``cafile``. Contexts are shared (one per argument pair): making one costs milliseconds,
    using one from many threads is safe."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _server_hostname(host, ip, verify):
    """SNI (and the name verified): the checked host name; the address only to verify."""
    if host:
        return http.authority(host, ip)
    return ip if verify else None


def exchange(protocol, channel, value):
    """``GET /`` over the TLS channel in ``protocol`` (``h2`` or ``http/1.1``); returns the
    status code."""
    if protocol == "h2":
        conn = http.h2_client()
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"https"),
                              (b":authority", value.encode("ascii")), (b":path", b"/"),
                              (b"user-agent", http.USER_AGENT.encode()),
                              (b"accept", b"*/*")], end_stream=True)
        return http.exchange_h2(channel, conn)
    return http.exchange_http1(channel, http.request(value))


def https_get(ip, port=443, host="", timeout=http.DEFAULT_TIMEOUT, alpn=ALPN_H2,
              cafile=None):
    """``GET /`` from ``(ip, port)`` over TLS offering ``alpn``. Returns an
    :class:`~pathspider.client.http.HttpResult` (never raises for network or TLS errors;
    ``ValueError`` for a ``host`` that is not a host name, before connecting)."""
    value = http.authority(host, ip)
    sni = _server_hostname(host, ip, cafile is not None)
    ctx = context(tuple(alpn) if alpn else (), cafile)
    attempt, state, error = http.connect(ip, port, timeout)
    if state != Conn.OK:
        tcpclient.close(attempt, graceful=False)
        return http.result(attempt, state, error=error)
    sock, chosen, protocol, status = attempt.sock, None, None, None
    try:
        sock = ctx.wrap_socket(attempt.sock, server_hostname=sni,
                               do_handshake_on_connect=False)
        channel = http.Channel(sock, time.monotonic() + timeout)
        channel.arm()
        sock.do_handshake()
        chosen = sock.selected_alpn_protocol()
        protocol = "h2" if chosen == "h2" else "http/1.1"
        status = exchange(protocol, channel, value)
    except (OSError, ValueError, http.ExchangeError) as exc:
        state, error = http.outcome(exc)
        status = None
    finally:
        sock.close()
    return http.result(attempt, state, status, protocol, chosen, error)
