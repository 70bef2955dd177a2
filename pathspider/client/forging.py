"""Sending forged packets: raw sockets, source-port reservations, waiting for UDP answers.

The active side of :class:`pathspider.engine.forge.ForgeSpider` (the engine decides *when*;
this module does the sending):

* :class:`RawSender`: one raw socket per address family, ``IPPROTO_RAW``, so the packet goes
  out byte for byte as :mod:`pathspider.client.packets` built it. IPv4: ``IPPROTO_RAW``
  implies ``IP_HDRINCL``; the kernel only fills in the header checksum and total length
  (which are right already) and leaves the flags alone, so the reserved ("evil") bit and a
  zero UDP checksum leave as forged. IPv6: ``IPPROTO_RAW`` on an ``AF_INET6`` socket is
  Linux's ``IPV6_HDRINCL`` (since Linux 4.5): the whole IPv6 header is ours too. Chosen over
  a raw socket of the transport protocol (which gets a copy of every incoming TCP or UDP
  packet to drain, and whose kernel-made header needs a socket option per field) and over
  ``AF_PACKET`` (which bypasses routing and neighbour resolution: the link-layer header,
  the interface and the next hop's MAC address would all be ours to find). ``IPPROTO_RAW``
  sockets receive nothing, so there is no queue to drain; routing, netfilter and the
  neighbour cache work as for any local packet. Needs CAP_NET_RAW (as capturing does).
* :func:`route_source`: the local address the kernel would use towards a target (a UDP
  ``connect``, which sends nothing), which the transport checksum covers.
* :func:`reserve_tcp` / :func:`reserve_udp`: a socket of the probe's protocol that holds its
  source port, so the kernel hands that port to no other connection while the answer may
  come back and the merger can match the observed flow to the result by it. The UDP one is
  connected to the target: the answer to the forged datagram arrives on it (and an ICMP
  error for it is reported on it), so :func:`await_answer` blocks on it.

The TCP reservation is bound, not listening: a SYN-ACK to a forged SYN finds no socket, and
the kernel answers it with an RST. That is what ends the server's half-open connection (no
SYN-ACK retransmissions, no SYN-queue build-up on the target), and the Observer has seen the
SYN-ACK, which is the observation, before the RST leaves.

The end of the module has what the forging plugins (``evilbit``, ``udpzero``) share: the DNS
query a job's probe carries (:func:`dns_query_for`) and whether a probe was answered
(:func:`answered`).
"""
import collections
import errno
import functools
import logging
import socket
import threading
import time

from pathspider.client import names, packets, pluginkit, tcpclient
from pathspider.constants import Conn

log = logging.getLogger("pathspider.client.forging")

#: Most bytes read of an answer (the Observer records what the answer was; the socket only
#: tells that one came).
ANSWER_BYTES = 4096

#: errno values of a send or an answer that mean "this target cannot be reached", not a bug.
UNREACHABLE = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                         errno.EHOSTDOWN, errno.ENETDOWN, errno.EACCES, errno.EPERM,
                         errno.EMSGSIZE, errno.ENOBUFS, errno.EADDRNOTAVAIL))


class RawSender:
    """Raw ``IPPROTO_RAW`` sockets, one per family, opened on first use and shared by every
    thread (``sendto`` on one socket from many threads is safe: each call is one packet)."""

    def __init__(self):
        self._sockets = {}
        self._lock = threading.Lock()

    def send(self, family, packet, dst):
        """Send the whole IP ``packet`` to the text address ``dst``; OSError on failure."""
        sock = self._sockets.get(family)
        if sock is None:
            sock = self._open(family)
        sock.sendto(packet, (dst, 0))

    def _open(self, family):
        with self._lock:
            sock = self._sockets.get(family)
            if sock is None:
                sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
                self._sockets[family] = sock
                log.debug("raw %s socket open", "IPv6" if family == socket.AF_INET6 else "IPv4")
            return sock

    def close(self):
        """Close the raw sockets (a later :meth:`send` opens them again)."""
        with self._lock:
            sockets, self._sockets = self._sockets, {}
        for sock in sockets.values():
            sock.close()


def route_source(family, dst):
    """The local address (text) the kernel routes from towards ``dst``; OSError if there is
    no route. Connecting a UDP socket sends nothing."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((dst, 9))
        return probe.getsockname()[0]


def reserve_tcp(family, src):
    """A TCP socket bound to ``src`` and a port the kernel picks: ``(socket, port)``."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((src, 0))
        return sock, sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise


#: ``IP_RECVERR`` / ``IPV6_RECVERR``: without it Linux keeps an ICMP host or network
#: unreachable for a UDP socket to itself (a "soft" error), and the wait would run to its end.
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, tcpclient.IP_RECVERR),
            socket.AF_INET6: (socket.IPPROTO_IPV6, tcpclient.IPV6_RECVERR)}


def reserve_udp(family, src, dst, dport):
    """A UDP socket bound to ``src`` and a port the kernel picks, connected to ``(dst,
    dport)``: ``(socket, port)``. It receives the target's answers to datagrams forged from
    that port, and the ICMP errors they draw (every kind: ``IP_RECVERR``)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(*_RECVERR[family], 1)
        sock.bind((src, 0))
        sock.connect((dst, dport))
        return sock, sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise


class RecentPorts:
    """The (target, protocol, source port) triples used in the last ``window`` seconds (at
    most ``most`` of them): a port the kernel hands out again for the same target within the
    Observer's flow lifetime would put two probes into one observed flow (UDP has no SYN to
    tell them apart), so the engine asks for another port instead.

    Triples are kept as their hashes (a false match only costs one more reservation), in
    arrival order, so forgetting is a ``popleft``; a lock makes it safe from every worker.
    """

    def __init__(self, window=30.0, most=1 << 17):
        self.window, self.most = window, most
        self._keys = set()
        self._order = collections.deque()
        self._lock = threading.Lock()

    def claim(self, dst, proto, port):
        """Record the triple and return True, or False if it was used in the window."""
        key = hash((dst, proto, port))
        now = time.monotonic()
        with self._lock:
            order, keys = self._order, self._keys
            while order and (order[0][0] < now or len(order) >= self.most):
                keys.discard(order.popleft()[1])
            if key in keys:
                return False
            keys.add(key)
            order.append((now + self.window, key))
            return True


def await_answer(sock, seconds):
    """Block on the connected UDP socket ``sock`` for up to ``seconds`` (what is already
    queued is read even when ``seconds`` is 0 or less): ``(Conn state, detail)``.

    ``Conn.OK`` and the answer's length when a datagram came; ``Conn.FAILED`` and the error's
    name when an ICMP error came back instead (port or host unreachable...);
    ``Conn.TIMEOUT`` and None when nothing came in time.
    """
    try:
        sock.settimeout(max(0.0, seconds))
        return Conn.OK, len(sock.recv(ANSWER_BYTES))
    except (socket.timeout, BlockingIOError):
        return Conn.TIMEOUT, None
    except OSError as exc:
        return Conn.FAILED, errno.errorcode.get(exc.errno, str(exc))


# ---- what the forging plugins share -------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def dns_query_for(host):
    """The DNS query (wire bytes) a probe of a target with hostname ``host`` carries: an A
    query for the host, or an NS query for the root zone when the job has no hostname.

    ``ValueError`` if ``host`` is not a DNS host name (:func:`pathspider.client.names.dns_name`,
    then dnspython's own parser): target data never reaches a packet raw. Both packets of a
    job, and repeated targets, ask for the same bytes: remembered for the last names.
    """
    if not host:
        return packets.dns_query(".", "NS")
    return packets.dns_query(names.dns_name(host), "A")


#: TCP flags SYN and ACK (a SYN-ACK answers a forged SYN).
_SYN_ACK = 0x12


def answered(record):
    """Whether the probe of a merged forge record (or None) was answered.

    Observed flows say it themselves: a SYN-ACK back (``rev_syn_flags``) for a TCP probe, a
    valid DNS response (``dns_response_valid``) for a UDP one. Without a flow, a UDP probe
    whose reservation socket got the answer (``spdr_state`` 0) still counts; a TCP probe's
    answer only the Observer can see.
    """
    if not record:
        return False
    if record.get("observed"):
        if record.get("proto") == packets.PROTO_TCP:
            return (record.get("rev_syn_flags") or 0) & _SYN_ACK == _SYN_ACK
        return bool(record.get("dns_response_valid"))
    return record.get("proto") == packets.PROTO_UDP and record.get("spdr_state") == 0


#: The only condition of a job whose packets could not be made (nothing was sent).
SKIPPED = "pathspider.forge_skipped"


def connectivity_conditions(name, baseline, experiment):
    """The conditions every two-packet forging plugin starts with:
    ``<name>.connectivity.works|broken|transient|offline`` (see :func:`answered`), then
    ``pathspider.not_observed`` if a record has no flow (or is missing); or just
    ``[SKIPPED]`` when a packet of the job was not made."""
    if any(rec and rec.get("forge_skipped") for rec in (baseline, experiment)):
        return [SKIPPED]
    state = pluginkit.connectivity(answered(baseline), answered(experiment))
    conds = [f"{name}.connectivity.{state}"]
    if any(rec is None or not rec.get("observed") for rec in (baseline, experiment)):
        conds.append("pathspider.not_observed")
    return conds


def answered_column(seq):
    """Summary-column predicate: packet ``seq`` (0 the baseline, 1 the experiment) was
    answered (see :func:`answered`)."""
    return lambda conds, baseline, experiment: answered(experiment if seq else baseline)
