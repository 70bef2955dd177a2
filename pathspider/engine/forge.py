"""PATHspider 2.0's packet-forging model: the plugin forges, the engine sends and tracks.

A forging plugin sets ``packets = N`` and implements ``forge(job, seq)``, which returns the
probe to send as connection ``seq`` (0..N-1) of a job: a
:class:`~pathspider.client.packets.TCPSyn` or :class:`~pathspider.client.packets.UDPDatagram`
(transport and IP fields, without addresses or source port). Everything else has a default:

* ``pre_connect(job)`` calls the optional ``setup(job)`` hook (2.0), finds the local address
  the kernel routes from towards the target, and returns the job's :class:`ForgeJob` (the
  ``pcs`` of the 1.0 API);
* ``connect(job, pcs, seq)`` calls ``forge``, reserves a source port with a socket of the
  probe's protocol (so the kernel gives it to no other connection while the answer may come
  back), builds the packet (:func:`pathspider.client.packets.build`) and sends it from a raw
  socket, unchanged (see :mod:`pathspider.client.forging` for why ``IPPROTO_RAW``, for IPv4
  and IPv6);
* ``post_connect(job, conn, pcs, seq)`` waits for the answer to a UDP probe on its
  reservation socket, up to ``conn_timeout`` seconds after the probe left (blocking, never
  polling), and returns the result (:meth:`ForgeSpider.forge_result`, a dict with ``ip`` and
  ``port`` = the reserved source port, which is what the merger matches with the observed
  flow's ``dip`` and ``sp``); the last connection of a job releases every port it reserved;
* ``merge(flow, res)`` gives the flow record with the result's fields
  (:data:`RESULT_FIELDS`) added, or a minimal record when no flow was observed.

So a forging plugin writes ``forge``, ``create_observer`` and its interpretation
(``conditions``, ``combine_flows``), nothing else. A TCP SYN's answer is not waited for: the
engine has no socket that could see it (the kernel answers the SYN-ACK with an RST, see
:mod:`pathspider.client.forging`); the Observer's flow record says what came back.

``forge`` may raise :class:`ForgeSkip` to send nothing for that connection (a job whose
data cannot make a valid packet, e.g. a host name that is not a DNS name): the result says
so (``spdr_state`` 3, skipped, and ``forge_skipped``) and the run goes on.
"""
import errno
import logging
import socket
import time

from pathspider.client import forging, packets
from pathspider.client.tcpclient import job_host, job_rank, utc_now_text
from pathspider.constants import NO_FLOW, Conn
from pathspider.engine.desync import DesynchronizedModel, DesynchronizedSpider

log = logging.getLogger("pathspider.engine.forge")

#: Seconds to wait for the answer to a UDP probe when the plugin sets no ``conn_timeout``.
DEFAULT_ANSWER_TIMEOUT = 5.0

#: Most reservations tried for one packet before a port used recently towards the same
#: target is taken anyway (with 28,000 ephemeral ports, two clashes in a row are rare).
RESERVE_TRIES = 8

#: Result fields :meth:`ForgeSpider.merge` copies into the record (besides the flow's).
RESULT_FIELDS = ("config", "proto", "host", "rank", "tstart", "tstop", "spdr_state",
                 "answer", "forge_skipped")


class ForgeSkip(Exception):
    """Raised by ``forge`` (or ``setup``): send nothing for this connection; the message
    says why and goes into the result's ``forge_skipped``."""


class ForgeJob:
    """The per-job state (``pcs``): the target, the local address towards it, the sockets
    holding the job's reserved ports, and what ``setup`` returned."""

    __slots__ = ("dip", "family", "dst", "sip", "src", "route_error", "setup", "reserved")

    def __init__(self, dip, setup=None):
        self.dip = dip
        self.family = socket.AF_INET6 if ":" in dip else socket.AF_INET
        self.dst = socket.inet_pton(self.family, dip)
        self.setup = setup
        self.reserved = []
        self.sip = self.src = self.route_error = None
        try:
            self.sip = forging.route_source(self.family, dip)
            self.src = socket.inet_pton(self.family, self.sip)
        except OSError as exc:
            self.route_error = _error_name(exc)

    def release(self):
        """Close the sockets that hold the job's source ports (the job has ended)."""
        reserved, self.reserved = self.reserved, []
        for sock in reserved:
            sock.close()


class ForgeConn:
    """One forged packet of a job: the probe, its reserved source port and socket, when it
    left, and its state so far (``Conn.OK`` once sent)."""

    __slots__ = ("seq", "probe", "sock", "sport", "tstart", "sent_at", "state", "detail",
                 "skipped")

    def __init__(self, seq, probe=None):
        self.seq, self.probe = seq, probe
        self.sock, self.sport, self.sent_at = None, 0, None
        self.tstart = utc_now_text()
        self.state, self.detail, self.skipped = Conn.FAILED, None, None

    @property
    def waits(self):
        """True if the engine waits for this probe's answer (a UDP probe that was sent)."""
        return (self.state is Conn.OK and self.probe is not None
                and self.probe.proto == packets.PROTO_UDP)


class ForgeModel(DesynchronizedModel):
    """The engine's side of the forging model: ``packets`` connections per job, made back to
    back by one worker (as the desynchronized model), sent through one :class:`RawSender`."""

    def __init__(self, engine):
        spider = engine.spider
        count = getattr(spider, "packets", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise TypeError(f"{type(spider).__name__}.packets must be the number of packets "
                            f"forged per job (1 or more), not {count!r}")
        super().__init__(engine)
        self.sender = forging.RawSender()
        self.recent = forging.RecentPorts()

    def send(self, pcs, conn):
        """Reserve ``conn``'s source port, build its packet and send it; on an OSError the
        connection is marked failed with the error's name (nothing is raised)."""
        probe = conn.probe
        try:
            sock, sport = self.reserve(pcs, probe)
        except OSError as exc:
            conn.detail = _error_name(exc)
            return
        pcs.reserved.append(sock)
        conn.sock, conn.sport = sock, sport
        packet = packets.build(probe, pcs.src, pcs.dst, sport)
        try:
            self.sender.send(pcs.family, packet, pcs.dip)
        except OSError as exc:
            conn.detail = _error_name(exc)
            return
        conn.sent_at = time.monotonic()
        conn.state = Conn.OK

    def reserve(self, pcs, probe):
        """A socket holding a source port for ``probe`` that was not used towards the same
        target recently (see :class:`~pathspider.client.forging.RecentPorts`; at most
        ``RESERVE_TRIES`` tries, each clashing port held until a free one is found)."""
        clashing, sock = [], None
        try:
            for _ in range(RESERVE_TRIES):
                if probe.proto == packets.PROTO_UDP:
                    sock, sport = forging.reserve_udp(pcs.family, pcs.sip, pcs.dip, probe.dport)
                else:
                    sock, sport = forging.reserve_tcp(pcs.family, pcs.sip)
                if self.recent.claim(pcs.dip, probe.proto, sport):
                    break
                clashing.append(sock)
            return sock, sport
        finally:
            for other in clashing:
                if other is not sock:
                    other.close()

    def stop(self):
        """Nothing to stop: the raw sockets close with the process (a worker of an aborted
        run may still be sending)."""


class ForgeSpider(DesynchronizedSpider):
    """PATHspider 2.0's packet-forging model: ``packets`` forged packets per job, one per
    ``seq`` (the ``config`` of the 1.0 API), made by ``forge(job, seq)``."""

    #: How many packets a job forges (2.0: the number of "configurations").
    packets = 0

    #: ``post_connect`` only waits for answers (or their timeouts), which come by themselves.
    post_connect_overlaps = True

    model = ForgeModel

    @property
    def connections(self):
        """One connection per forged packet, each made by :meth:`connect`."""
        return ["connect"] * self.packets

    # ---- the plugin's part ---------------------------------------------------------------------

    def setup(self, job):
        """Optional per-job hook (2.0), called first in :meth:`pre_connect`; its return value
        is ``pcs.setup``. May raise :class:`ForgeSkip` to skip the whole job."""
        return None

    def forge(self, job, seq):
        """The probe to send as packet ``seq`` of ``job``: a
        :class:`~pathspider.client.packets.TCPSyn` or
        :class:`~pathspider.client.packets.UDPDatagram`; or raise :class:`ForgeSkip`."""
        raise NotImplementedError("a forging plugin implements forge(job, seq)")

    # ---- the 1.0 API, done by the model ----------------------------------------------------

    def pre_connect(self, job):
        """Call ``setup(job)`` and prepare the job's :class:`ForgeJob` (route lookup)."""
        try:
            setup = self.setup(job)
        except ForgeSkip as skip:
            setup = skip
        return ForgeJob(job[0], setup)

    def connect(self, job, pcs, config):
        """Forge packet ``config`` of the job and send it from a reserved source port."""
        if isinstance(pcs.setup, ForgeSkip):
            return _skipped(config, pcs.setup)
        try:
            conn = ForgeConn(config, self.forge(job, config))
        except ForgeSkip as skip:
            return _skipped(config, skip)
        except BaseException:
            pcs.release()
            raise
        if pcs.route_error is not None:
            conn.detail = pcs.route_error
        else:
            self.engine.model.send(pcs, conn)
        return conn

    def post_connect(self, job, conn, pcs, config):
        """Wait for a UDP probe's answer (up to ``conn_timeout`` after it left), then return
        :meth:`forge_result`; the job's last packet releases its reserved ports."""
        try:
            if conn.waits:
                timeout = self.conn_timeout or DEFAULT_ANSWER_TIMEOUT
                remaining = conn.sent_at + timeout - time.monotonic()
                conn.state, conn.detail = forging.await_answer(conn.sock, remaining)
            return self.forge_result(job, conn, pcs, config)
        finally:
            if config == self.packets - 1:
                pcs.release()

    def forge_result(self, job, conn, pcs, config):
        """The result of one forged packet (a dict): ``ip`` and ``port`` (the target and the
        reserved source port: the merger's key), ``rport``, ``sip``, ``proto``, ``config``
        (= seq), ``host``, ``rank``, ``tstart`` (the packet left) / ``tstop`` (its answer
        came or the wait ended), ``spdr_state`` (0 sent and, for UDP, answered; 1 not sent
        or an ICMP error came back; 2 no UDP answer in time; 3 skipped), ``answer`` (bytes
        of the UDP answer, or the error's name), ``forge_skipped`` (why, if skipped), and
        one boolean per entry of ``probe_fields`` (the probe's attribute, e.g. whether the
        evil bit was set)."""
        probe = conn.probe
        return {"ip": pcs.dip, "port": conn.sport, "rport": probe.dport if probe else None,
                "sip": pcs.sip, "proto": probe.proto if probe else None, "config": config,
                "host": job_host(job), "rank": job_rank(job), "tstart": conn.tstart,
                "tstop": utc_now_text(), "spdr_state": conn.state.value,
                "answer": conn.detail, "forge_skipped": conn.skipped,
                **{name: bool(probe is not None and getattr(probe, attribute))
                   for name, attribute in self.probe_fields.items()}}

    def merge(self, flow, res):
        """The observed flow (``observed`` true) or a minimal record (``observed`` false),
        with the result's :data:`RESULT_FIELDS`."""
        if flow is NO_FLOW:
            record = {"sip": res["sip"], "dip": res["ip"], "sp": res["port"],
                      "dp": res["rport"], "observed": False}
        else:
            record = flow
            record["observed"] = True
        for name in RESULT_FIELDS:
            record[name] = res[name]
        for name in self.probe_fields:
            record[name] = res.get(name)
        return record

    #: Record field -> probe attribute, copied (as a boolean) into every result and record,
    #: e.g. ``{"evilbit_sent": "evil"}``: what was really sent, next to what was observed.
    probe_fields = {}


def _skipped(seq, skip):
    conn = ForgeConn(seq)
    conn.state, conn.skipped = Conn.SKIPPED, str(skip) or type(skip).__name__
    return conn


def _error_name(exc):
    """``ENETUNREACH`` for an OSError with that errno, else its text."""
    return errno.errorcode.get(exc.errno, str(exc)) if exc.errno else str(exc)
