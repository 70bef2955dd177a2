"""The lab server's side of HTTP/2 (RFC 7540), on top of hyper-h2's state machine.

:class:`H2Server` is one server connection, with no I/O of its own: feed it what the client
sent (:meth:`H2Server.receive`), send what it returns. Every request on it gets the lab page
that the HTTP/1.1 server sends (:func:`pathspider.lab.httpd.page`), so a measurement sees the
same content whichever protocol carried it. Used by :mod:`pathspider.lab.h2d` for HTTP/2 over
TLS (ALPN ``h2``) and for connections upgraded from HTTP/1.1 (``Upgrade: h2c``, RFC 7540
section 3.2), whose first request (stream 1) is the HTTP/1.1 request that asked for the
upgrade.
"""
import h2.config
import h2.connection
import h2.events
import h2.exceptions

from . import httpd

#: What the server says to an h2c upgrade it accepts; HTTP/2 frames follow at once.
SWITCHING = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
             b"Upgrade: h2c\r\n\r\n")

#: What can go wrong inside hyper-h2 with a misbehaving client.
H2_ERRORS = (h2.exceptions.H2Error, ValueError)


class H2Server:
    """One HTTP/2 server connection on target address ``local_ip``.

    ``upgrade``: ``(settings, method)`` of an h2c upgrade request (the ``HTTP2-Settings``
    value and ``GET``/``HEAD``): the connection starts upgraded and stream 1 is answered at
    once. Raises one of :data:`H2_ERRORS` if the settings are not valid.
    """

    def __init__(self, local_ip, upgrade=None):
        self.local_ip = local_ip
        self.closed = False
        self.requests = 0
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        if upgrade is None:
            self.conn.initiate_connection()
        else:
            settings, method = upgrade
            self.conn.initiate_upgrade_connection(settings_header=settings)
            self._answer(1, method)

    def outgoing(self):
        """Bytes to send now (may be empty)."""
        return self.conn.data_to_send()

    def receive(self, data):
        """Handle bytes from the client; returns the bytes to send in reply.

        After a protocol error the connection is closed (``closed``) and the reply holds the
        GOAWAY frame hyper-h2 made for it.
        """
        try:
            events = self.conn.receive_data(data)
        except H2_ERRORS:
            self.closed = True
            return self.outgoing()
        for event in events:
            self._handle(event)
        return self.outgoing()

    def goaway(self):
        """Say goodbye (GOAWAY, no error); returns the bytes to send."""
        self.closed = True
        try:
            self.conn.close_connection()
        except H2_ERRORS:
            pass
        return self.outgoing()

    def _handle(self, event):
        if isinstance(event, h2.events.RequestReceived):
            method = dict(event.headers).get(b":method", b"")
            self._answer(event.stream_id, method)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def _answer(self, stream_id, method):
        """The lab page on ``stream_id`` (headers only for HEAD; 405 for other methods)."""
        self.requests += 1
        if method in (b"GET", b"HEAD", "GET", "HEAD"):
            status, body = 200, httpd.page(self.local_ip)
        else:
            status, body = 405, b"method not allowed\n"
        head_only = method in (b"HEAD", "HEAD")
        headers = [(b":status", str(status).encode()), (b"server", b"pathspider-lab"),
                   (b"content-type", b"text/html"),
                   (b"content-length", str(len(body)).encode())]
        self.conn.send_headers(stream_id, headers, end_stream=head_only)
        if not head_only:
            self.conn.send_data(stream_id, body, end_stream=True)
