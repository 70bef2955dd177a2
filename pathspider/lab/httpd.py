"""The lab's HTTP/1.1 server: answers GET and HEAD on every target address with a small page.

Run as ``python -m pathspider.lab.httpd [--port 80]`` inside the server namespace; the
supervisor starts several of these with SO_REUSEPORT so the kernel spreads connections over
them. Listeners are wildcard (IPv4 and IPv6), so with the AnyIP routes every target address is
served. TCP Fast Open is enabled on the listeners (the namespace also needs
``net.ipv4.tcp_fastopen=3``), so data on SYN reaches the server.

One request per connection: the response carries ``Connection: close`` and the server closes,
which is all a measurement client needs and keeps the per-connection cost small.
"""
import argparse
import asyncio
import socket

from . import plan, service

MAX_HEADER = 8192
IDLE_TIMEOUT = 10.0
TFO_QUEUE = 1024

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


def handle_request(head, local_ip):
    """The response bytes for a request whose header block is ``head`` (up to CRLFCRLF)."""
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
        return response(400, b"bad request\n")
    method = line[0]
    if method not in (b"GET", b"HEAD"):
        return response(405, b"method not allowed\n")
    return response(200, page(local_ip), head_only=(method == b"HEAD"))


class HTTPProtocol(asyncio.Protocol):
    """Reads one request header block, writes the response, closes."""

    __slots__ = ("transport", "buf", "timer")

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, transport.abort)

    def data_received(self, data):
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEADER:
                self._finish(response(431, b"header too large\n"))
            return
        local_ip = self.transport.get_extra_info("sockname")[0]
        self._finish(handle_request(self.buf[:end], local_ip))

    def _finish(self, data):
        self.timer.cancel()
        self.transport.write(data)
        self.transport.close()

    def eof_received(self):
        self.timer.cancel()
        return False  # close our side too

    def connection_lost(self, exc):
        self.timer.cancel()


def make_listeners(port):
    """IPv4 and IPv6 wildcard listeners with SO_REUSEPORT and TCP Fast Open."""
    socks = []
    for family in (socket.AF_INET, socket.AF_INET6):
        sock = service.listener(family, socket.SOCK_STREAM, port, reuseport=True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, TFO_QUEUE)
        socks.append(sock)
    return socks


async def serve(port):
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(HTTPProtocol, sock=s, backlog=4096)
               for s in make_listeners(port)]
    service.signal_ready(f"httpd listening on port {port}")
    stop = asyncio.Event()
    service.exit_on_term_event(loop, stop)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=plan.HTTP_PORT)
    args = parser.parse_args(argv)
    log = service.setup_logging("httpd")
    log.info("starting on port %d", args.port)
    asyncio.run(serve(args.port))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
