"""Small, bounded client probes of the lab's services (HTTP and DNS), with plain sockets.

Used by ``Lab.up`` to wait until every service answers through the routers, and by tests;
:func:`ttl_probe` asks which router a TTL-limited datagram expires at.
Call them inside the client namespace (``netns.call_in``). Every operation has a timeout;
nothing sleeps.
"""
import collections
import ipaddress
import select
import selectors
import socket
import ssl
import struct
import threading
import time

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from . import names, plan


def http_get(address, port=plan.HTTP_PORT, host="lab.test", timeout=2.0, path="/"):
    """GET ``path`` from ``address``; returns (status code, body bytes). Raises OSError."""
    family = socket.AF_INET6 if ":" in str(address) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((str(address), port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)
    if len(status) < 2 or not status[1].isdigit():
        raise OSError(f"bad HTTP response from {address}: {raw[:60]!r}")
    return int(status[1]), body


def dns_query(server, qname, rdtype="A", tcp=False, timeout=2.0, port=plan.DNS_PORT):
    """Ask ``server`` for ``qname``/``rdtype`` over UDP or TCP; returns the response message."""
    query = dns.message.make_query(qname, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, str(server), timeout=timeout, port=port)


def dns_addresses(response):
    """The A/AAAA addresses in a response's answer section, as strings."""
    return [item.address for rrset in response.answer
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for item in rrset]


def _check_http(family):
    addr = plan.target_address("clean", 1, family)
    status, body = http_get(addr)
    if status != 200 or str(addr).encode() not in body:
        raise OSError(f"HTTP check of {addr} got status {status}")


def tls_alpn(address, port=plan.HTTPS_PORT, alpn=("h2", "http/1.1"), timeout=2.0):
    """TLS handshake (no certificate check) offering ``alpn``; returns the protocol the
    server chose (None if none). Raises OSError (``ssl.SSLError`` included)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    family = socket.AF_INET6 if ":" in str(address) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((str(address), port))
        with ctx.wrap_socket(sock) as tls:
            return tls.selected_alpn_protocol()


def _check_https(family):
    addr = plan.target_address("clean", 1, family)
    chosen = tls_alpn(addr)
    if chosen != "h2":
        raise OSError(f"HTTPS check of {addr}: ALPN chose {chosen!r}, not 'h2'")


def _check_dns(server, tcp):
    want = str(plan.target_address("clean", 1, 4))
    resp = dns_query(server, names.hostname("clean", 1), "A", tcp=tcp)
    if dns_addresses(resp) != [want]:
        raise OSError(f"DNS check of {server} ({'TCP' if tcp else 'UDP'}) got {resp.answer}")


def checks():
    """The readiness checks: (description, callable) pairs."""
    out = [(f"HTTP over IPv{f}", lambda f=f: _check_http(f)) for f in (4, 6)]
    out += [(f"HTTPS over IPv{f}", lambda f=f: _check_https(f)) for f in (4, 6)]
    for server in (plan.DNS_V4, plan.DNS_V6):
        for tcp in (False, True):
            out.append((f"DNS {'TCP' if tcp else 'UDP'} at {server}",
                        lambda s=server, t=tcp: _check_dns(s, t)))
    return out


def wait_ready(attempts=3):
    """Run every check, each up to ``attempts`` times (each attempt bounded by its timeout).

    Returns an empty list when all pass, else the failures as strings.
    """
    failures = []
    for what, check in checks():
        error = None
        for _ in range(attempts):
            try:
                check()
                error = None
                break
            except (OSError, dns.exception.DNSException) as exc:
                error = exc
        if error is not None:
            failures.append(f"{what}: {error}")
    return failures


def dns_burst(servers, count=1100, clients=100, timeout=3.0, window=None,
              classes=("clean",), port=plan.DNS_PORT):
    """Fire ``count`` DNS queries over UDP from ``clients`` concurrent clients; a summary.

    Each client is a thread with its own UDP socket (one per address family) that takes every
    ``clients``-th query: it asks the next server of ``servers`` (addresses, cycled) for
    ``t<n>.<class>.lab.test`` (A from IPv4 servers, AAAA from IPv6 ones) on UDP ``port``. A
    client keeps up to ``window`` queries in flight (None: sends all of its queries at once,
    a true burst) and waits up to ``timeout`` seconds from its last send for the answers,
    without retrying: a query without an answer by then is lost. Bounded: returns within
    about ``timeout`` seconds after the last query is sent.

    Call it inside the client namespace (``Lab.call_in_client``; the threads it starts are in
    that namespace too). Returns a dict: ``sent``, ``answered`` (a response with the query's
    ID carrying the right address), ``wrong`` (any other response to it), ``lost``,
    ``seconds`` (wall time of the burst).
    """
    servers = [str(s) for s in servers]
    if not servers or count < 1 or clients < 1 or (window is not None and window < 1):
        raise ValueError("dns_burst needs servers, count >= 1, clients >= 1 and window >= 1")
    if min(window or count, -(-count // clients)) > 0x10000:
        raise ValueError("more than 65,536 queries in flight per client: DNS IDs would repeat")
    jobs = []
    for i in range(count):
        server = servers[i % len(servers)]
        cls = classes[i % len(classes)]
        host = plan.HOSTS[i % len(plan.HOSTS)]
        family = 6 if ":" in server else 4
        jobs.append((server, names.hostname(cls, host), "AAAA" if family == 6 else "A",
                     str(plan.target_address(cls, host, family))))
    clients = min(clients, count)
    results, errors = [None] * clients, []
    gate = threading.Barrier(clients + 1)

    def client(index):
        try:
            results[index] = _burst_client(jobs[index::clients], window, timeout, port, gate)
        except BaseException as exc:        # handed to the caller
            errors.append(exc)
            gate.abort()

    threads = [threading.Thread(target=client, args=(i,), name=f"dns-burst-{i}", daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        gate.wait(timeout=30.0)             # every client has its sockets: go
    except threading.BrokenBarrierError:
        gate.abort()
    start = time.monotonic()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    tally = {"sent": 0, "answered": 0, "wrong": 0, "lost": 0}
    for result in results:
        for key in tally:
            tally[key] += result.get(key, 0)
    tally["lost"] = count - tally["answered"] - tally["wrong"]
    tally["seconds"] = time.monotonic() - start
    return tally


def _burst_client(jobs, window, timeout, port, gate):
    """One client of :func:`dns_burst`: its queries, at most ``window`` in flight."""
    socks = {}
    out = {"sent": 0, "answered": 0, "wrong": 0}
    pending = {}                        # (family, query ID) -> the address the answer must give
    sel = selectors.DefaultSelector()
    try:
        for server, *_ in jobs:
            family = socket.AF_INET6 if ":" in server else socket.AF_INET
            if family not in socks:
                socks[family] = socket.socket(family, socket.SOCK_DGRAM)
                sel.register(socks[family], selectors.EVENT_READ, family)
        gate.wait()
        todo = collections.deque(enumerate(jobs))
        deadline = time.monotonic() + timeout
        while todo or pending:
            while todo and (window is None or len(pending) < window):
                index, (server, qname, rdtype, want) = todo.popleft()
                family = socket.AF_INET6 if ":" in server else socket.AF_INET
                qid = index & 0xFFFF
                query = dns.message.make_query(qname, rdtype, id=qid)
                # Blocking send: waits (briefly) should the socket's send buffer be full.
                socks[family].sendto(query.to_wire(), (server, port))
                pending[(family, qid)] = want
                out["sent"] += 1
                deadline = time.monotonic() + timeout
            left = deadline - time.monotonic()
            if left <= 0:
                break                   # the rest is lost
            for key, _ in sel.select(left):
                _collect(key.fileobj, key.data, pending, out)
    finally:
        sel.close()
        for sock in socks.values():
            sock.close()
    return out


def _collect(sock, family, pending, out):
    """Read every response waiting on ``sock``, scoring the ones ``pending`` waits for."""
    while True:
        try:
            wire = sock.recv(65535, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        try:
            resp = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            continue
        want = pending.pop((family, resp.id), None)
        if want is not None:
            out["answered" if dns_addresses(resp) == [want] else "wrong"] += 1


def udp_counters():
    """The UDP counters of the calling thread's network namespace, as a dict.

    Keys are those of the ``Udp:`` lines of ``/proc/net/snmp`` (``RcvbufErrors``,
    ``InErrors``, ``InDatagrams``...) and of the ``Udp6`` lines of ``/proc/net/snmp6``
    (``Udp6RcvbufErrors``...). Call it inside a lab namespace (``Lab.call_in_server``): it
    reads ``/proc/thread-self/net``, the namespace of the calling thread (``/proc/net`` would
    be the main thread's).
    """
    with open("/proc/thread-self/net/snmp") as f:
        udp = [line.split()[1:] for line in f if line.startswith("Udp:")]
    out = {key: int(value) for key, value in zip(udp[0], udp[1])}
    with open("/proc/thread-self/net/snmp6") as f:
        out.update((key, int(value)) for key, value in
                   (line.split() for line in f if line.startswith("Udp6")))
    return out


#: ``sock_extended_err.ee_origin`` of an error that came as ICMP / ICMPv6.
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
#: ``struct sock_extended_err``: errno, origin, type, code, pad, info, data.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
#: Linux's socket options for the error queue (``socket`` has them only from Python 3.12).
IP_RECVERR, IPV6_RECVERR, MSG_ERRQUEUE = 11, 25, 0x2000
#: The UDP port TTL probes go to (traceroute's first port: nothing listens there).
TTL_PROBE_PORT = 33434

#: What a TTL probe provoked: the ICMP error's sender, type and code.
IcmpError = collections.namedtuple("IcmpError", "offender type code")


def ttl_probe(address, ttl, port=TTL_PROBE_PORT, timeout=1.0, tclass=0):
    """Send one UDP datagram to ``address`` with TTL / hop limit ``ttl`` (and TOS / traffic
    class ``tclass``) and return the ICMP error it provoked as an :data:`IcmpError` (the
    router that sent it, ICMP type and code: (11, 0) / (3, 0) time exceeded, (3, 3) / (1, 4)
    port unreachable from the target itself), or None if nothing came within ``timeout``.

    Reads the socket's error queue (``IP_RECVERR`` / ``IPV6_RECVERR``, ``MSG_ERRQUEUE``):
    no raw socket, and only this datagram's errors. Call it inside the client namespace."""
    v6 = ":" in str(address)
    with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
        sock.setsockopt(level, IPV6_RECVERR if v6 else IP_RECVERR, 1)
        sock.setsockopt(level, socket.IPV6_UNICAST_HOPS if v6 else socket.IP_TTL, int(ttl))
        sock.setsockopt(level, socket.IPV6_TCLASS if v6 else socket.IP_TOS, int(tclass))
        sock.sendto(b"pathspider lab ttl probe", (str(address), port))
        poller = select.poll()
        poller.register(sock, select.POLLERR)
        if not poller.poll(timeout * 1000):
            return None
        _, ancillary, _, _ = sock.recvmsg(512, 512, MSG_ERRQUEUE)
    for _, _, data in ancillary:
        if len(data) >= _EXTENDED_ERR.size:
            _, origin, type_, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
            if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                return IcmpError(_offender(data[_EXTENDED_ERR.size:], v6), type_, code)
    return None


def _offender(sockaddr, v6):
    """The address in the ``sockaddr_in`` / ``sockaddr_in6`` after a sock_extended_err."""
    if v6:
        return str(ipaddress.IPv6Address(sockaddr[8:24]))
    return str(ipaddress.IPv4Address(sockaddr[4:8]))
