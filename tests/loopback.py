"""Real loopback TCP targets for engine tests: accepting, refusing and silent ports."""
import socket
import threading


class LoopbackTargets:
    """Three kinds of 127.0.0.1 ports, made without root.

    * ``accepting``: a listener that accepts every connection and remembers the client ports.
    * ``refusing``: a bound socket that does not listen, so a SYN gets a RST.
    * ``silent``: a listener with a full accept queue, so SYNs are dropped (connects time out).
    """

    def __init__(self):
        self.client_ports = set()
        self._lock = threading.Lock()
        self._sockets = []
        self._listener = self._socket()
        self._listener.listen(4096)
        self.accepting = self._listener.getsockname()[1]
        refuser = self._socket()
        self.refusing = refuser.getsockname()[1]
        self._silent = self._socket()
        self._silent.listen(0)
        self.silent = self._silent.getsockname()[1]
        self._fill_silent_queue()
        self._stop = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _socket(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._sockets.append(sock)
        return sock

    def _fill_silent_queue(self):
        for _ in range(3):
            filler = socket.socket()
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", self.silent))
            except OSError:
                pass
            self._sockets.append(filler)

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.client_ports.add(peer[1])
            conn.close()

    def close(self):
        self._stop = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for sock in self._sockets:
            sock.close()
        self._thread.join(5)
