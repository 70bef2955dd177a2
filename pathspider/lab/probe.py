"""Small, bounded client probes of the lab's services (HTTP and DNS), with plain sockets.

Used by ``Lab.up`` to wait until every service answers through the middlebox, and by tests.
Call them inside the client namespace (``netns.call_in``). Every operation has a timeout;
nothing sleeps.
"""
import socket

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


def _check_dns(server, tcp):
    want = str(plan.target_address("clean", 1, 4))
    resp = dns_query(server, names.hostname("clean", 1), "A", tcp=tcp)
    if dns_addresses(resp) != [want]:
        raise OSError(f"DNS check of {server} ({'TCP' if tcp else 'UDP'}) got {resp.answer}")


def checks():
    """The readiness checks: (description, callable) pairs."""
    out = [(f"HTTP over IPv{f}", lambda f=f: _check_http(f)) for f in (4, 6)]
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
