"""The lab's DNS server: A/AAAA for the ``lab.test`` zone over UDP and TCP port 53.

Run as ``python -m pathspider.lab.dnsd`` inside the server namespace. Listeners are wildcard,
so the lab resolver address (``plan.DNS_V4`` / ``plan.DNS_V6``) and every target address
answer (DNS-based measurements such as udpzero send queries to the targets themselves). UDP
replies leave from the address the query was sent to (IP_PKTINFO / IPV6_PKTINFO), as a real
server on that address would. Names are those of :mod:`pathspider.lab.names`.

Bursts: each UDP socket asks for an 8 MiB receive buffer (``RCVBUF``, beyond the root
namespace's ``net.core.rmem_max`` through SO_RCVBUFFORCE), reads until the socket is empty
each time it is readable, and answers a query it has answered before from a cache without
parsing it again. With the kernel's default buffer a burst of 1,100 queries from 100 clients
lost 5 to 70 % of them (``RcvbufErrors``); with these none (``benchmarks/lab_load.py --mode
dns`` measures it).
"""
import argparse
import asyncio
import logging
import socket
import struct

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from . import names, plan, service

log = logging.getLogger("pathspider.lab.dnsd")

TTL = 60
TCP_IDLE_TIMEOUT = 10.0
#: UDP receive buffer asked for (bytes; the kernel doubles it for its bookkeeping). A burst
#: of queries waits here while the server works: 8 MiB holds far more than a burst of 1,100
#: small queries (each costs a few KiB of buffer), of which the kernel's default (about
#: 208 KiB) dropped 5 to 70 %.
RCVBUF = 8 << 20
#: Responses kept by query (without its ID): a query asked before is answered without
#: parsing it again.
CACHE_MAX = 4096
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_CMSG_SPACE = socket.CMSG_SPACE(64)
_SOA = (f"ns.{plan.DOMAIN}. hostmaster.{plan.DOMAIN}. 1 3600 600 86400 {TTL}")
_FAMILY_OF_TYPE = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}


def _soa_rrset():
    return dns.rrset.from_text(plan.DOMAIN + ".", TTL, "IN", "SOA", _SOA)


def answer(query):
    """The response message for a parsed query (A, AAAA and ANY; others get no data)."""
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA
    resp.flags &= ~dns.flags.RA
    for question in query.question:
        if question.rdclass != dns.rdataclass.IN:
            resp.set_rcode(dns.rcode.REFUSED)
            continue
        qname = question.name.to_text()
        wanted = ((4, 6) if question.rdtype == dns.rdatatype.ANY
                  else (_FAMILY_OF_TYPE.get(question.rdtype),))
        for family in wanted:
            status, addrs = names.lookup(qname, family)
            if status == names.REFUSED:
                resp.set_rcode(dns.rcode.REFUSED)
            elif status == names.NXDOMAIN:
                resp.set_rcode(dns.rcode.NXDOMAIN)
                resp.authority = [_soa_rrset()]
            elif status == names.NODATA:
                resp.authority = [_soa_rrset()]
            else:
                rdtype = "A" if family == 4 else "AAAA"
                resp.answer.append(dns.rrset.from_text(
                    question.name, TTL, "IN", rdtype, *[str(a) for a in addrs]))
    return resp


def respond(wire, peer):
    """Response wire bytes for query bytes ``wire`` from ``peer``; None to stay silent."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        log.warning("malformed query from %s (%d bytes): %s", peer, len(wire), exc)
        return _formerr(wire)
    if query.flags & dns.flags.QR:
        return None  # a response, not a query: never answer those
    return answer(query).to_wire()


def _formerr(wire):
    """A header-only FORMERR reply echoing the query ID, if there is a header at all."""
    if len(wire) < 12:
        return None
    qid, flags = struct.unpack("!HH", wire[:4])
    if flags & 0x8000:
        return None
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | dns.rcode.FORMERR,
                       0, 0, 0, 0)


def _pktinfo_reply(family, ancdata):
    """Ancillary data that makes the reply leave from the query's destination address."""
    for level, kind, data in ancdata:
        if family == socket.AF_INET and level == socket.IPPROTO_IP and kind == _IP_PKTINFO:
            _, _, dst = struct.unpack("=I4s4s", data[:12])
            return [(socket.IPPROTO_IP, _IP_PKTINFO, struct.pack("=I4s4s", 0, dst, dst))]
        if (family == socket.AF_INET6 and level == socket.IPPROTO_IPV6
                and kind == socket.IPV6_PKTINFO):
            dst, _ = struct.unpack("=16sI", data[:20])
            return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, struct.pack("=16sI", dst, 0))]
    return []


def set_rcvbuf(sock, size):
    """Ask for a ``size``-byte receive buffer on ``sock``; returns what the kernel granted.

    SO_RCVBUFFORCE goes beyond ``net.core.rmem_max`` (a root-namespace-wide sysctl the lab
    never changes); it needs CAP_NET_ADMIN, which the lab's servers have. Without it the
    buffer is as large as ``rmem_max`` allows.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def udp_socket(family, port, rcvbuf=RCVBUF):
    """A wildcard UDP socket that reports each datagram's destination address, with a
    ``rcvbuf``-byte receive buffer (0 or None: the kernel's default)."""
    sock = service.listener(family, socket.SOCK_DGRAM, port)
    if rcvbuf:
        granted = set_rcvbuf(sock, rcvbuf)
        log.info("UDP/IPv%d receive buffer: %d bytes", 6 if family == socket.AF_INET6 else 4,
                 granted)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        # IPv6 checks a reply's source against configured addresses, which AnyIP routes
        # are not: freebind lets replies leave from any target address.
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
    return sock


def respond_cached(wire, peer, cache):
    """:func:`respond` through ``cache`` (a dict): a query seen before (everything but its
    ID, the first two bytes) gets the same response with this query's ID, unparsed."""
    hit = cache.get(wire[2:])
    if hit is not None:
        return wire[:2] + hit
    reply = respond(wire, peer)
    if reply is not None and len(wire) >= 12 and reply[:2] == wire[:2]:
        if len(cache) >= CACHE_MAX:
            cache.clear()
        cache[wire[2:]] = reply[2:]
    return reply


def on_udp_readable(sock, cache=None):
    """Answer every datagram waiting on ``sock`` (non-blocking), until none is left."""
    while True:
        try:
            wire, ancdata, _, peer = sock.recvmsg(65535, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        reply = respond(wire, peer) if cache is None else respond_cached(wire, peer, cache)
        if reply is None:
            continue
        try:
            sock.sendmsg([reply], _pktinfo_reply(sock.family, ancdata), 0, peer)
        except OSError as exc:
            log.warning("cannot answer %s: %s", peer, exc)


async def handle_tcp(reader, writer):
    """DNS over TCP: two-byte length prefix per message, several queries per connection."""
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                size = struct.unpack("!H", await asyncio.wait_for(
                    reader.readexactly(2), TCP_IDLE_TIMEOUT))[0]
                wire = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            reply = respond(wire, peer)
            if reply is None:
                return
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    finally:
        writer.close()


async def serve(port, rcvbuf=RCVBUF, cache=True):
    loop = asyncio.get_running_loop()
    keep = []
    for family in (socket.AF_INET, socket.AF_INET6):
        usock = udp_socket(family, port, rcvbuf)
        loop.add_reader(usock.fileno(), on_udp_readable, usock, {} if cache else None)
        tsock = service.listener(family, socket.SOCK_STREAM, port)
        keep += [usock, await asyncio.start_server(handle_tcp, sock=tsock)]
    service.signal_ready(f"dnsd listening on port {port}")
    stop = asyncio.Event()
    service.exit_on_term_event(loop, stop)
    await stop.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=plan.DNS_PORT)
    parser.add_argument("--rcvbuf", type=int, default=RCVBUF,
                        help=f"UDP receive buffer in bytes, 0 for the kernel's default "
                             f"(default {RCVBUF})")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="parse every query (no response cache)")
    args = parser.parse_args(argv)
    service.setup_logging("dnsd").info("starting on port %d (UDP receive buffer %s, "
                                       "response cache %s)", args.port,
                                       args.rcvbuf or "default", "on" if args.cache else "off")
    asyncio.run(serve(args.port, args.rcvbuf, args.cache))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
