"""The lab's HTTPS and HTTP/2 server: port 443 with ALPN, and h2c upgrades handed over by httpd.

Run as ``python -m pathspider.lab.h2d --cert server.crt --key server.key --handoff h2c.sock``
inside the server namespace (the supervisor does, in the run directory, where ``lab up``
put the certificates, see :mod:`pathspider.lab.pki`). One asyncio process:

* TCP port 443 on every target address (wildcard IPv4 and IPv6 listeners): TLS with ALPN.
  Targets that speak HTTP/2 (:func:`pathspider.lab.plan.serves_h2`) offer ``h2`` and
  ``http/1.1``, the others (class ``h2-none``) only ``http/1.1``; the context is chosen by
  the address the client connected to, before the handshake. ``h2`` gets HTTP/2
  (:class:`pathspider.lab.h2serve.H2Server`), anything else (``http/1.1`` or no ALPN) one
  HTTP/1.1 request answered as the port-80 server answers it, then the close.
* The Unix ``SOCK_SEQPACKET`` socket ``--handoff``: each port-80 server process
  (:mod:`pathspider.lab.httpd`) connects to it and sends, one message each, the socket of a
  connection whose request asked for an h2c upgrade, with the bytes read so far. (Datagrams
  would be simpler, but a Unix datagram queue holds ``net.unix.max_dgram_qlen`` = 10
  messages: a burst of upgrades overflowed it.) h2d answers ``101 Switching Protocols``,
  its SETTINGS and the response to that request on stream 1, then serves the connection in
  HTTP/2.

An HTTP/2 connection ends when the client closes it or sends GOAWAY (h2d then closes too),
or after ``IDLE_TIMEOUT`` seconds without data (h2d sends GOAWAY and closes). Slow or
silent TLS clients are dropped after ``HANDSHAKE_TIMEOUT``.
"""
import argparse
import asyncio
import logging
import os
import socket
import ssl

from . import h2serve, httpd, plan, service

log = logging.getLogger("pathspider.lab.h2d")

IDLE_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
READ_SIZE = 65536
#: Most handed-over connections taken from the handoff socket per wake-up.
HANDOFF_BATCH = 64


def tls_context(cert, key, h2=True):
    """The server's TLS context: ALPN ``h2`` and ``http/1.1``, or ``http/1.1`` only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"] if h2 else ["http/1.1"])
    return ctx


async def run_h2(reader, writer, session):
    """Serve an HTTP/2 connection until the client goes, says GOAWAY, or is idle too long."""
    try:
        writer.write(session.outgoing())
        await writer.drain()
        while not session.closed:
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT)
            except asyncio.TimeoutError:
                writer.write(session.goaway())
                break
            if not data:
                break
            writer.write(session.receive(data))
            await writer.drain()
    finally:
        await close(writer)


async def close(writer):
    """Close a connection, ignoring a peer that already went away."""
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), HANDSHAKE_TIMEOUT)
    except (OSError, ssl.SSLError, asyncio.TimeoutError):
        pass


async def serve_http1(reader, writer, local_ip):
    """One HTTP/1.1 request over TLS, answered as :mod:`pathspider.lab.httpd` answers it."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
    except asyncio.LimitOverrunError:
        writer.write(httpd.response(431, b"header too large\n"))
    else:
        writer.write(httpd.handle_request(head[:-4], local_ip))
    await writer.drain()
    await close(writer)


async def serve_h2c(sock, data):
    """A connection httpd handed over with ``data`` (its request): upgrade it to HTTP/2."""
    local_ip = sock.getsockname()[0]
    reader, writer = await asyncio.open_connection(sock=sock, limit=httpd.MAX_HEADER)
    upgrade = httpd.h2c_upgrade(data.split(b"\r\n\r\n", 1)[0])
    try:
        session = h2serve.H2Server(local_ip, upgrade=upgrade)
    except (h2serve.H2_ERRORS + (TypeError,)) as exc:
        log.debug("refusing an h2c upgrade from %s: %s", local_ip, exc)
        writer.write(httpd.response(400, b"bad HTTP2-Settings\n"))
        await close(writer)
        return
    writer.write(h2serve.SWITCHING + session.outgoing())   # one segment: 101 and frames
    await run_h2(reader, writer, session)


class H2d:
    """The server's state: TLS contexts, listeners, the handoff socket, running tasks."""

    def __init__(self, cert, key, handoff):
        self.contexts = {True: tls_context(cert, key, True), False: tls_context(cert, key, False)}
        self.handoff_path = handoff
        self.tasks = set()

    def spawn(self, coro):
        """Run ``coro`` as a task that logs (never raises) what went wrong."""
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _guarded(coro):
        try:
            await coro
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("connection ended: %r", exc)
        except Exception:                       # a bug must not stop the other connections
            log.exception("error serving a connection")

    async def accept(self, listener):
        """Accept connections to port 443 on ``listener``, each served by its own task."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:              # e.g. ECONNABORTED, EMFILE: go on
                log.debug("accept failed: %s", exc)
                continue
            self.spawn(self._tls(sock))

    async def _tls(self, sock):
        """TLS handshake with the ALPN list of the address the client connected to, then
        serve. (The socket is wrapped before anything is read from it: a StreamWriter's
        ``start_tls`` loses a ClientHello that arrived before the call.)"""
        loop = asyncio.get_running_loop()
        # (asyncio sets TCP_NODELAY only on sockets made with proto IPPROTO_TCP, not these)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local_ip = sock.getsockname()[0]
        reader = asyncio.StreamReader(limit=httpd.MAX_HEADER)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.contexts[plan.serves_h2(local_ip)],
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2":
            await run_h2(reader, writer, h2serve.H2Server(local_ip))
        else:
            await serve_http1(reader, writer, local_ip)

    async def accept_handoffs(self, listener):
        """Accept the httpd processes' handoff connections; read each when it is readable."""
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            loop.add_reader(sock, self.on_handoff, sock)

    def on_handoff(self, sock):
        """A handoff connection is readable: take over each connection httpd sent."""
        for _ in range(HANDOFF_BATCH):
            try:
                data, fds, _, _ = socket.recv_fds(sock, 2 * httpd.MAX_HEADER + httpd.READ_SIZE,
                                                  4, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            for extra in fds[1:]:
                os.close(extra)
            if fds:
                self.spawn(serve_h2c(socket.socket(fileno=fds[0]), data))
            elif not data:                      # that httpd went away
                asyncio.get_running_loop().remove_reader(sock)
                sock.close()
                return

    def handoff_socket(self):
        """The Unix socket httpd processes connect to (replacing a stale one)."""
        if os.path.lexists(self.handoff_path):
            os.unlink(self.handoff_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.bind(self.handoff_path)
        os.chmod(self.handoff_path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    async def serve(self, port):
        """Serve until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        service.exit_on_term_event(loop, stop)
        handoff = self.handoff_socket()
        listeners = [service.listener(family, socket.SOCK_STREAM, port)
                     for family in (socket.AF_INET, socket.AF_INET6)]
        acceptors = [loop.create_task(self.accept(sock)) for sock in listeners]
        acceptors.append(loop.create_task(self.accept_handoffs(handoff)))
        service.signal_ready(f"h2d listening on port {port} and {self.handoff_path}")
        await stop.wait()
        for task in acceptors:
            task.cancel()
        for sock in listeners + [handoff]:
            sock.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=plan.HTTPS_PORT)
    parser.add_argument("--cert", required=True, help="certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="private key (PEM)")
    parser.add_argument("--handoff", required=True, metavar="PATH",
                        help="Unix socket to take h2c upgrades from httpd on")
    args = parser.parse_args(argv)
    service.setup_logging("h2d")
    log.info("starting on port %d", args.port)
    asyncio.run(H2d(args.cert, args.key, args.handoff).serve(args.port))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
