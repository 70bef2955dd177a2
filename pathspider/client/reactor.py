"""One epoll thread that finishes many TCP/HTTP connection attempts at once.

The measurement plugins start a connection in ``connect`` (the SYN leaves while the
configuration is in force, see :mod:`pathspider.client.tcpclient`) and need its outcome in
``post_connect``. Waiting for each attempt in its own thread costs several thread wake-ups per
connection (handshake, request, every reply segment, end) and, with hundreds of threads
contending for the GIL, that dominated a run's CPU time. Instead the :class:`Reactor` drives
every attempt to its end from one thread with ``epoll``: it notices the handshake, sends the
HTTP request, reads the reply, closes the socket and marks the attempt finished; the
thread running ``post_connect`` wakes up once, when the attempt is finished.

Each attempt has two deadlines: ``timeout`` for the handshake (from the SYN), and ``timeout``
again for the HTTP exchange (from the moment the connection was established). Deadlines are kept
in a heap; the reactor sleeps exactly until the next one, and a wake-up ``eventfd`` interrupts
the sleep when an earlier deadline is added. Nothing polls.
"""
import heapq
import itertools
import logging
import os
import queue
import resource
import select
import socket
import threading
import time

from pathspider.constants import Conn
from pathspider.client import tcpclient

log = logging.getLogger("pathspider.client.reactor")

_EP_ERR = select.EPOLLERR | select.EPOLLHUP
#: Edge-triggered, all events at once: one epoll_ctl per connection (no modify, and closing
#: the socket removes it from the epoll set).
_EP_ALL = select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_EP_END = select.EPOLLRDHUP | _EP_ERR
_EP_IN = select.EPOLLIN | _EP_END
_BUFSIZE = 65536
#: Most sockets the reactor keeps open at once (fewer if the open-file limit is lower). Enough
#: for 800 silent targets a second with a 5 s timeout; beyond what the reactor finishes in
#: time, more open sockets only make a queue: on the lab (~6,000 connections a second) 16,384
#: held ~3 s of connections, their objects in this process and their flows in the Observer's
#: (~60 MB in all), and a machine slowed by other work could push them past their deadline.
MAX_OPEN = 8192
_CONNECTING, _SENDING, _READING = range(3)
#: Longest single epoll wait (seconds): far deadlines are approached in steps, since epoll
#: refuses timeouts beyond a few weeks.
_LONGEST_WAIT = 3600.0
_STATUS_BYTES = 64
#: The deadline heap is rebuilt without the entries of finished attempts once it holds more
#: than two entries per open attempt (each has one live entry) plus this many (see
#: :func:`_compact`).
_HEAP_SLACK = 1024
#: Tie-breakers of heap entries (unique, so entries never compare their attempts).
_entry_numbers = itertools.count()


class Job:
    """What the reactor does with one :class:`tcpclient.Pending` attempt.

    A future of sorts: :meth:`wait` blocks until the attempt is finished, and
    :meth:`add_done_callback` runs a function when it is (the engine completes jobs this way,
    without a thread waiting for each).
    """

    __slots__ = ("attempt", "request", "timeout", "phase", "deadline", "head", "received",
                 "http_status", "finished", "_done", "_callbacks", "slot", "entry")

    def __init__(self, attempt, request, timeout):
        self.slot = None                # the reactor's slots, if one was reserved
        self.entry = None               # its entry in the reactor's deadline heap, if any
        self.attempt = attempt
        self.request = request          # bytes to send after the handshake, or None (tcp)
        self.timeout = timeout
        self.phase = _CONNECTING
        self.deadline = attempt.deadline
        self.head = b""
        self.received = 0
        self.http_status = None
        self.finished = False
        self._callbacks = None
        self._done = threading.Lock()   # held until the attempt is finished (cheaper than an
        self._done.acquire()            # Event: one C-level lock, no Condition)

    def set_done(self):
        """Mark the attempt finished, wake the thread waiting in :meth:`wait` and run the
        callbacks (on the calling thread: the reactor's; they must not block)."""
        with _callback_lock:
            self.finished = True
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        for fn in callbacks or ():
            _run_callback(fn, self)

    def add_done_callback(self, fn):
        """Call ``fn(job)`` once the attempt is finished (at once if it already is)."""
        with _callback_lock:
            if not self.finished:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        _run_callback(fn, self)

    def wait(self):
        """Block until the reactor finished the attempt (bounded by its deadlines)."""
        if not self.finished:
            limit = (self.attempt.deadline - time.monotonic()) + self.timeout + 5.0
            if self._done.acquire(timeout=min(max(limit, 0.1), threading.TIMEOUT_MAX)):
                self._done.release()
            else:
                log.error("reactor did not finish %s within its deadlines", self.attempt.ip)
        return self


class _Slots:
    """A counting semaphore of ``count`` slots kept as tokens in a ``queue.SimpleQueue``.

    Taking a free slot or returning one is a single C call that never waits for a
    Python-level lock. ``threading.Semaphore`` guards its count with a ``Condition``: with a
    hundred connect workers taking slots, the reactor thread, returning one for every
    finished attempt, waited for that lock (and then for the interpreter lock) about as long
    as for a system call, on every connection.
    """

    def __init__(self, count):
        self._tokens = queue.SimpleQueue()
        for _ in range(count):
            self._tokens.put(None)
        self.acquire = self._tokens.get         # blocks while every slot is taken

    def release(self):
        self._tokens.put(None)


#: Guards the hand-over between :meth:`Job.add_done_callback` and :meth:`Job.set_done`.
_callback_lock = threading.Lock()


def _run_callback(fn, job):
    try:
        fn(job)
    except Exception:                   # a caller's bug must not stop the reactor
        log.exception("reactor: completion callback for %s failed", job.attempt.ip)


class Reactor:
    """Drives attempts to completion on one daemon thread (started on first use)."""

    def __init__(self, name="reactor", max_open=None):
        if max_open is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft == resource.RLIM_INFINITY:
                soft = 1 << 20
            max_open = max(64, min(MAX_OPEN, soft - 512))
        self.max_open = max_open
        self._slots = _Slots(max_open)
        self._epoll = select.epoll()
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakefd, select.EPOLLIN)
        self._jobs = {}                 # fd -> Job (touched by the reactor thread only)
        # replies are read into this buffer (only the first bytes are kept): a fresh 64 KiB
        # object per read, shrunk to what arrived, cost an allocation and fragmented the heap
        self._buffer = memoryview(bytearray(_BUFSIZE))
        self._incoming = []             # Jobs handed over by other threads
        self._lock = threading.Lock()
        self._next_wake = float("inf")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---- called from worker threads ---------------------------------------------------------

    def start(self, ip, port, timeout, request=None):
        """Start a connection and hand it over: :func:`tcpclient.start_connect` plus
        :meth:`submit`, after waiting for one of ``max_open`` slots.

        The slot bounds the sockets open at once. Without it, when the machine cannot finish
        connections as fast as the workers start them, open sockets pile up until the
        process runs out of file descriptors (connections then fail at once), and the
        reactor's backlog grows until deadlines expire before their events are handled.
        Waiting here slows the start of new connections to the pace at which old ones end.

        The local address and port are read when the attempt finishes (before its socket is
        closed), not here: the caller is a connect worker holding a configuration, and every
        system call it makes is one more hand-over of the interpreter lock among the workers.
        """
        self._slots.acquire()
        try:
            attempt = tcpclient.start_connect(ip, port, timeout, local_address=False)
        except BaseException:
            self._slots.release()
            raise
        return self.submit(attempt, request, timeout, slot=self._slots)

    def submit(self, attempt, request=None, timeout=5.0, slot=None):
        """Hand an attempt started by :func:`tcpclient.start_connect` to the reactor.

        ``request`` (bytes) is sent once the connection is established and the reply is read
        until the server closes; without it the connection is closed right after the
        handshake. Returns a :class:`Job`; ``job.wait()`` blocks until it is finished.
        """
        job = Job(attempt, request, timeout)
        job.slot = slot
        if attempt.sock is None or attempt.error is not None:
            self._finish(job, Conn.FAILED)
            return job
        with self._lock:
            if self._closed:
                raise RuntimeError("reactor is closed")
            self._incoming.append(job)
            wake = attempt.deadline < self._next_wake or len(self._incoming) == 1
        if wake:
            os.eventfd_write(self._wakefd, 1)
        return job

    def close(self):
        """Stop the thread; attempts still open are finished as timed out."""
        with self._lock:
            self._closed = True
        os.eventfd_write(self._wakefd, 1)
        self._thread.join(10)

    # ---- the reactor thread -----------------------------------------------------------------

    def _run(self):
        heap = []
        poll = self._epoll.poll
        while True:
            self._take_incoming(heap)
            now = time.monotonic()
            while heap and (heap[0][0] <= now or heap[0][2] is None):
                _, _, job = heapq.heappop(heap)
                if job is not None and not job.finished:
                    self._expired(job, heap, now)
            if len(heap) > 2 * len(self._jobs) + _HEAP_SLACK:
                _compact(heap)
            with self._lock:
                if self._closed:
                    break
                self._next_wake = heap[0][0] if heap else float("inf")
                if self._incoming:
                    continue
            timeout = min(max(self._next_wake - time.monotonic(), 0), _LONGEST_WAIT) \
                if heap else -1
            for fd, events in poll(timeout):
                if fd == self._wakefd:
                    try:
                        os.eventfd_read(self._wakefd)
                    except BlockingIOError:
                        pass
                    continue
                job = self._jobs.get(fd)
                if job is not None:
                    try:
                        self._event(job, events, heap)
                    except Exception:       # a bug must not stop every other connection
                        log.exception("reactor: error handling %s", job.attempt.ip)
                        if not job.finished:
                            self._finish(job, Conn.FAILED)
        for job in list(self._jobs.values()):
            self._finish(job, Conn.TIMEOUT if job.phase == _CONNECTING else Conn.OK)

    def _take_incoming(self, heap):
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for job in incoming:
            fd = job.attempt.sock.fileno()
            try:
                self._epoll.register(fd, _EP_ALL)
            except OSError as exc:
                log.error("reactor: cannot watch the socket to %s: %s", job.attempt.ip, exc)
                job.attempt.error = exc.errno
                self._finish(job, Conn.FAILED)
                continue
            self._jobs[fd] = job
            _arm(job, heap)

    def _event(self, job, events, heap):
        if job.phase == _CONNECTING:
            if events & (select.EPOLLOUT | _EP_ERR):
                self._connected(job, heap)
        elif job.phase == _SENDING:
            self._send(job, heap)
        else:
            self._read(job, events)

    def _connected(self, job, heap):
        attempt = job.attempt
        err = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        attempt.connect_time = time.monotonic() - attempt.started
        if err:
            attempt.error = err
            self._finish(job, Conn.FAILED)
            return
        attempt.state = Conn.OK
        if job.request is None:
            self._finish(job, Conn.OK)
            return
        job.phase = _SENDING
        job.deadline = time.monotonic() + job.timeout
        _arm(job, heap)
        self._send(job, heap)

    def _send(self, job, heap):
        attempt = job.attempt
        try:
            sent = attempt.sock.send(job.request[attempt.sent:])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._finish(job, Conn.OK)
            return
        attempt.sent += sent
        if attempt.sent < len(job.request):
            return                      # the next EPOLLOUT edge continues
        job.phase = _READING            # the reply's EPOLLIN edge continues

    def _read(self, job, events):
        """Read what arrived. Edge-triggered: every arriving segment gives a new EPOLLIN, so
        one read per event suffices until the peer's FIN (EPOLLRDHUP) or an error, after which
        everything is read to the end. This avoids raising EAGAIN on every event.

        Once the FIN has arrived (the usual case when the reply and the FIN came together,
        or the reactor is behind), a read shorter than the buffer has taken everything the
        peer sent, so the end of the stream is not read separately: one system call fewer per
        connection, each of which costs the reactor a turn at the interpreter lock."""
        if not events & _EP_IN:
            return                      # an EPOLLOUT edge (our request was acknowledged)
        sock = job.attempt.sock
        ending = events & _EP_END
        buf = self._buffer
        while True:
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                if ending:
                    break
                return
            except OSError:
                break
            if not n:
                break
            if len(job.head) < _STATUS_BYTES:
                job.head += buf[:min(n, _STATUS_BYTES)]
            job.received += n
            if job.received >= tcpclient.MAX_REPLY:
                break
            if n < _BUFSIZE:
                if ending:
                    break               # everything before the peer's FIN is read
                return
        self._finish(job, Conn.OK)

    def _expired(self, job, heap, now):
        """A deadline passed: the handshake timed out, or the HTTP exchange ends here."""
        if job.deadline > now:              # an older heap entry of a job that moved on
            return
        attempt = job.attempt
        if job.phase == _CONNECTING:
            if _is_connected(attempt.sock):   # its event is still waiting to be handled
                self._connected(job, heap)
                return
            err = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            attempt.connect_time = now - attempt.started
            attempt.error = err or None
            self._finish(job, Conn.FAILED if err else Conn.TIMEOUT)
        elif job.phase == _READING:
            self._read(job, _EP_END)          # take what did arrive, then end
        else:
            self._finish(job, Conn.OK)

    def _finish(self, job, state):
        attempt = job.attempt
        attempt.state = state
        if attempt.connect_time is None:
            attempt.connect_time = time.monotonic() - attempt.started
        if job.request is not None and job.head:
            job.http_status = tcpclient.http_status(job.head)
        if attempt.sock is not None:
            if not attempt.port:
                tcpclient.read_local_address(attempt)
            self._jobs.pop(attempt.sock.fileno(), None)
            tcpclient.close(attempt, graceful=job.request is None)
        if job.slot is not None:
            job.slot.release()
            job.slot = None
        if job.entry is not None:       # its heap entry no longer keeps the job alive
            job.entry[2] = None
            job.entry = None
        job.set_done()


def _arm(job, heap):
    """Put ``job``'s deadline in the heap, as a ``[deadline, number, job]`` entry that
    replaces the one it had (whose job is set to None: entries are skipped, not searched
    for)."""
    if job.entry is not None:
        job.entry[2] = None
    job.entry = [job.deadline, next(_entry_numbers), job]
    heapq.heappush(heap, job.entry)


def _compact(heap):
    """Drop the entries of finished attempts (and replaced entries) from the deadline heap,
    in place.

    An attempt that finishes before its deadline leaves its entry in the heap until that
    deadline comes up (taking it out at once would cost a search). The entry lets go of the
    attempt when it finishes (:meth:`Reactor._finish`): before that, with thousands of
    connections a second and a 5 s timeout, the heap kept tens of thousands of finished
    attempts, their sockets and replies alive. What is left is a small list per entry; an
    open attempt has one live entry, so rebuilding once the heap holds more than twice the
    open attempts (plus ``_HEAP_SLACK``) keeps it proportional to them at an amortized cost
    of one entry looked at per entry pushed.
    """
    heap[:] = [entry for entry in heap if entry[2] is not None]
    heapq.heapify(heap)


def _is_connected(sock):
    """Whether a connecting socket has in fact connected (it has a peer)."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


_shared = None
_shared_lock = threading.Lock()


def shared():
    """The process-wide reactor (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Reactor()
        return _shared
