"""Lazy packet header views with python-libtrace's attribute names.

Chain functions written for PATHspider 1.0 read packets through python-libtrace (``plt``)
objects. This module offers the same attribute names over ONE ``bytes`` buffer (usually the
whole batch returned by the packet source) and a few offsets, so that parsing a packet builds no
object tree: a view stores the buffer, where its header starts and where the packet ends, and
decodes fields only when a chain asks for them.

Entry points
------------
``link_offset(linktype)``
    returns ``f(buf, off, end) -> offset of the IP header`` for a libpcap link type (Ethernet
    with 802.1Q/802.1ad tags, Linux cooked SLL/SLL2, raw IP (DLT 12/14/101/228/229), BSD
    loopback DLT_NULL/DLT_LOOP). Raises :class:`NotIP` or :class:`Short`.
``parse_ip(buf, off, end, seconds)``
    returns an :class:`IP4` or :class:`IP6` view; raises :class:`NotIP`, :class:`Short` or
    :class:`Malformed` (all :class:`DissectError`, a ``ValueError``).
``dissect(buf, linktype=DLT_EN10MB, seconds=0.0)``
    convenience for tests and tools: link layer + IP in one call.

``end`` is exclusive. The IP view clamps it to the IP total length, so Ethernet padding never
counts as payload (python-libtrace counted padding of short frames as TCP payload).

Views returned by :func:`parse_ip`/:func:`dissect` stay valid as long as their buffer. The
views the Observer hands to chain functions are only valid during the call: its flow table
reuses them from packet to packet (python-libtrace also reused one packet object). Store the
values you need in the flow record, never a view.

Attributes
----------
IPv4 (:class:`IP4`) and IPv6 (:class:`IP6`), "both" unless marked:

=====================  ======================================================================
``version``            4 or 6
``proto``              transport protocol; for IPv6 the header after the extension headers
                       (hop-by-hop, routing, fragment, destination options, AH, mobility,
                       HIP, shim6); for a non-first IPv6 fragment the fragment's next header
``traffic_class``      IPv4 TOS byte / IPv6 traffic class (DSCP << 2 | ECN)
``dscp``, ``ecn``      the two parts of ``traffic_class``
``size``               IP length from the header (IPv4 total length, IPv6 payload length + 40);
                       the captured length when the header says 0 (TSO, jumbograms)
``pkt_len``            IPv4 total length; None for IPv6 (as python-libtrace)
``hdr_len``            IPv4 header length in 4-byte units; None for IPv6
``payload_len``        (IPv6) payload length field
``next_hdr``           (IPv6) next header field of the fixed header
``flow_label``         (IPv6) flow label
``ttl``, ``hop_limit``  TTL / hop limit (both names on both versions)
``ident``              IPv4 identification; IPv6 fragment identification or None
``has_rf``             IPv4 reserved ("evil") bit; always False on IPv6
``has_df``             IPv4 don't-fragment bit; always False on IPv6
``has_mf``             more-fragments bit (IPv6: from a fragment header)
``frag_offset``        fragment offset in 8-byte units (IPv6: from a fragment header)
``is_fragment``        True for any fragment (first or later)
``hdr_checksum``       (IPv4) header checksum
``src_prefix``,        :class:`Prefix` objects: ``str()`` gives the address, ``.addr`` the
``dst_prefix``         raw 4/16 bytes (``src_address``/``dst_address`` are aliases)
``src_addr``,          the addresses as text (``str(src_prefix)`` without the object; IPv6
``dst_addr``           written as Python's ``ipaddress`` writes it)
``ports``              ``(src_port, dst_port)`` of a complete TCP or UDP header, else
                       ``(None, None)`` (what 1.0's ``extract_ports`` returns)
``endpoints``          ``(src_addr, dst_addr, src_port, dst_port)`` in one call
``seconds``            packet timestamp, float seconds since the epoch
``data``               bytes from the IP header to the end of the IP packet
``payload``            bytes after the IP header (IPv6: after the fixed 40-byte header)
``l4_offset``          offset of the transport header in ``buf``, or -1 (non-first fragment)
``tcp``, ``udp``       :class:`TCP` / :class:`UDP` views, None if not that protocol or if the
                       fixed header was not completely captured
``icmp``               (IPv4) :class:`ICMP` view or None; on IPv6 always None
``icmp6``              (IPv6) :class:`ICMP6` view or None; on IPv4 always None
``ip``, ``ip6``        the view itself or None, so code written for python-libtrace's packet
                       object (``pkt.ip``, ``pkt.ip6``) works on an IP view
=====================  ======================================================================

TCP (:class:`TCP`): ``src_port``, ``dst_port``, ``seq_nbr``, ``ack_nbr``, ``doff`` (4-byte
units), ``flags`` (12 bits, as python-libtrace: the 8 classic flags plus the NS/AE bit 0x100),
``fin_flag``, ``syn_flag``, ``rst_flag``, ``psh_flag``, ``ack_flag``, ``urg_flag``, ``ece_flag``,
``cwr_flag``, ``window``, ``checksum``, ``urg_ptr`` (alias ``urgent``), ``options_raw`` (option
bytes, ``b''`` if none), ``options_data`` (option bytes or False, as python-libtrace),
``options`` (list of ``(kind, value_bytes)`` in order, duplicates kept, parsing stops at EOL or
at a malformed option), ``option_numbers`` (list of kinds, or False), ``option(kind)`` (value
bytes of the FIRST occurrence, True if present without value, False if absent), ``data`` (bytes
from the TCP header on), ``payload`` (None if there is no payload, else a :class:`Payload`: a
``bytes`` whose ``.data`` is itself, as python-libtrace's payload object), ``payload_len``.

UDP (:class:`UDP`): ``src_port``, ``dst_port``, ``len``, ``checksum``, ``data``, ``payload``
(None or :class:`Payload`), ``payload_len``.

ICMP (:class:`ICMP`, IPv4) and ICMPv6 (:class:`ICMP6`): ``type``, ``code``, ``checksum``,
``data`` (whole ICMP message), ``rest`` (bytes 4..8 of the header), ``is_error`` (IPv4 types
3, 4, 5, 11, 12; IPv6 types 1, 2, 3, 4), ``quoted`` (the quoted packet as an IP view for error
types, None otherwise or when less than a minimal IP header was quoted), ``payload`` (as
python-libtrace: the quoted IP view for error types, else the bytes after the 8-byte header).
A quoted view may be truncated: its ``tcp``/``udp`` are None unless their fixed header was
quoted, and its ``size`` is the length its header claims.
"""

import ipaddress
import socket
import struct

# Link types (libpcap DLT values); LINK_LAYERS below maps each to its name and parser.
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 12
DLT_RAW_OPENBSD = 14
LINKTYPE_RAW = 101
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
PROTO_SCTP = 132
PROTO_UDPLITE = 136

#: IPv6 extension headers skipped to find the transport header (AH has its own length unit).
IPV6_EXT_HEADERS = frozenset((0, 43, 44, 51, 60, 135, 139, 140))
IPV6_FRAGMENT = 44
IPV6_AH = 51

#: ICMPv4 error types, which quote the offending packet: destination unreachable, source
#: quench, redirect, time exceeded, parameter problem.
ICMP4_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))
#: ICMPv6 error types: destination unreachable, packet too big, time exceeded, parameter problem.
ICMP6_ERROR_TYPES = frozenset((1, 2, 3, 4))

# BSD loopback address families: AF_INET and the AF_INET6 values of Linux/NetBSD/FreeBSD/macOS.
_NULL_FAMILIES = frozenset((2, 10, 24, 28, 30))

_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_ntoa = socket.inet_ntoa
_ntop6 = socket.inet_ntop
_AF_INET6 = socket.AF_INET6
_ZERO10 = bytes(10)


class DissectError(ValueError):
    """A packet that cannot be dissected; the subclass says why (the Observer counts each)."""


class NotIP(DissectError):
    """Not an IPv4/IPv6 packet (ARP, LLDP, unknown version...)."""


class Short(DissectError):
    """Truncated: a header the packet claims to have was not (completely) captured."""


class Malformed(DissectError):
    """Header fields contradict each other (IHL < 5, data offset < 5, bad lengths)."""


# ---------------------------------------------------------------------------- link layer

def _ethertype_offset(buf, p, end):
    """Skip VLAN tags starting with the ethertype at ``p``; return the IP header offset."""
    if p + 2 > end:
        raise Short("link header truncated")
    etype = (buf[p] << 8) | buf[p + 1]
    while etype in VLAN_TPIDS:
        p += 4
        if p + 2 > end:
            raise Short("VLAN tag truncated")
        etype = (buf[p] << 8) | buf[p + 1]
    if etype == ETH_P_IP or etype == ETH_P_IPV6:
        return p + 2
    raise NotIP("ethertype 0x%04x" % etype)


def _ethernet(buf, off, end):
    return _ethertype_offset(buf, off + 12, end)


def _sll(buf, off, end):
    return _ethertype_offset(buf, off + 14, end)


def _sll2(buf, off, end):
    if off + 20 > end:
        raise Short("SLL2 header truncated")
    etype = (buf[off] << 8) | buf[off + 1]
    if etype == ETH_P_IP or etype == ETH_P_IPV6:
        return off + 20
    if etype in VLAN_TPIDS:
        return _ethertype_offset(buf, off + 20 + 2, end)
    raise NotIP("ethertype 0x%04x" % etype)


def _raw(buf, off, end):
    return off


def _null(buf, off, end):
    if off + 4 > end:
        raise Short("loopback header truncated")
    fam_le = buf[off] | (buf[off + 1] << 8)
    fam_be = (buf[off + 2] << 8) | buf[off + 3]
    if (fam_le if fam_be == 0 else fam_be) in _NULL_FAMILIES:
        return off + 4
    raise NotIP("loopback address family %d" % (fam_le or fam_be))


def _loop(buf, off, end):
    if off + 4 > end:
        raise Short("loopback header truncated")
    if _u32(buf, off)[0] in _NULL_FAMILIES:
        return off + 4
    raise NotIP("loopback address family %d" % _u32(buf, off)[0])


#: Every link type the dissector parses: its name and ``f(buf, off, end) -> IP offset``. The
#: packet source refuses any other link type when it opens.
LINK_LAYERS = {
    DLT_NULL: ("BSD loopback (null)", _null),
    DLT_EN10MB: ("Ethernet", _ethernet),
    DLT_RAW: ("raw IP", _raw),                  # LINKTYPE_RAW (101) is reported as 12 on Linux
    DLT_RAW_OPENBSD: ("raw IP", _raw),
    LINKTYPE_RAW: ("raw IP", _raw),
    DLT_LOOP: ("OpenBSD loopback", _loop),
    DLT_LINUX_SLL: ("Linux cooked (SLL)", _sll),
    DLT_IPV4: ("raw IPv4", _raw),
    DLT_IPV6: ("raw IPv6", _raw),
    DLT_LINUX_SLL2: ("Linux cooked v2 (SLL2)", _sll2),
}

#: Link type -> name, for messages.
SUPPORTED_LINKTYPES = {linktype: name for linktype, (name, _) in LINK_LAYERS.items()}
_LINK = {linktype: parser for linktype, (_, parser) in LINK_LAYERS.items()}


def link_offset(linktype):
    """Return ``f(buf, off, end) -> IP header offset`` for a libpcap link type.

    Raises KeyError for a link type this module does not know (the packet source refuses those
    when it opens, so this only happens for direct callers).
    """
    return _LINK[linktype]


# ---------------------------------------------------------------------------- helpers

def _addr6(addr):
    """Text of a 16-byte IPv6 address, exactly as Python's ``ipaddress`` writes it."""
    if addr[:10] == _ZERO10:           # IPv4-mapped/compatible: inet_ntop differs from Python
        return str(ipaddress.IPv6Address(addr))
    return _ntop6(_AF_INET6, addr)      # same text as ipaddress (RFC 5952), 15x faster


# Address text by raw address (4 or 16 bytes): the measuring host's address and every target
# measured twice (A/B) recur, and libc's formatting costs more than a dict lookup. Large
# enough for the addresses of the flows alive in a busy run; cleared when full.
_TEXT = {}
_TEXT_MAX = 1 << 16


def _addr_text(addr):
    """Text of a 4- or 16-byte address (cached; see ``_TEXT``)."""
    cache = _TEXT
    text = cache.get(addr)
    if text is None:
        if len(cache) >= _TEXT_MAX:
            cache.clear()
        text = cache[addr] = _ntoa(addr) if len(addr) == 4 else _addr6(addr)
    return text


def view_endpoints(ip):
    """``(src_addr, dst_addr, src_port, dst_port)`` of an IP view (``ip.endpoints``).

    The addresses as ``str(ip.src_prefix)`` writes them, the ports as :func:`_ports` gives
    them, in one call: ``basic_flow`` reads them for every new flow. Also ``endpoints``.
    """
    p = ip.buf                      # (compiled: a pointer to its bytes)
    off = ip.off
    if type(ip) is IP4:
        src, dst = p[off + 12:off + 16], p[off + 16:off + 20]
    else:
        src, dst = p[off + 8:off + 24], p[off + 24:off + 40]
    sp, dp = _ports(ip)
    return _addr_text(src), _addr_text(dst), sp, dp


endpoints = view_endpoints


def _ports(ip):
    """``(src_port, dst_port)`` of a view's complete TCP or UDP header, else (None, None)."""
    proto = ip.proto
    if proto == PROTO_TCP:
        view = ip._tcp              # the cached view, if built (cheaper than the property)
        if view is False:
            view = ip.tcp
    elif proto == PROTO_UDP:
        view = ip._udp
        if view is False:
            view = ip.udp
    else:
        return (None, None)
    if view is None:
        return (None, None)
    p, l4 = ip.buf, ip.l4           # the transport view starts at l4
    return (p[l4] << 8) | p[l4 + 1], (p[l4 + 2] << 8) | p[l4 + 3]


class Prefix:
    """An IP address as python-libtrace's IPprefix: ``str()`` is the address, ``.addr`` bytes.

    IPv6 addresses are written as Python's ``ipaddress`` writes them (RFC 5952), so they match
    target addresses canonicalised the same way.
    """

    __slots__ = ("addr",)
    length = None

    def __init__(self, addr):
        self.addr = addr

    @property
    def version(self):
        return 4 if len(self.addr) == 4 else 6

    def __str__(self):
        addr = self.addr
        return _ntoa(addr) if len(addr) == 4 else _addr6(addr)

    def __repr__(self):
        return "Prefix(%r)" % str(self)

    def __eq__(self, other):
        if isinstance(other, Prefix):
            return self.addr == other.addr
        return NotImplemented

    def __hash__(self):
        return hash(self.addr)


class Payload(bytes):
    """Transport payload bytes; ``.data`` returns them, as python-libtrace's payload object."""

    __slots__ = ()

    @property
    def data(self):
        return bytes(self)


def _payload(buf, start, end):
    return Payload(buf[start:end]) if end > start else None


# ---------------------------------------------------------------------------- IP views

class _IPView:
    """What the IPv4 and IPv6 views share (see the module docstring for the attributes).

    Not instantiated: :class:`IP4` and :class:`IP6` are the views (the Observer tests
    ``type(ip) is IP4``). ``proto``, ``seconds``, ``size`` and ``traffic_class`` are plain
    attributes, not properties: nearly every chain reads them. Compiled, the attributes are C
    fields (``dissector.pxd``).
    """

    __slots__ = ("buf", "off", "end", "l4", "proto", "seconds", "capend", "size",
                 "traffic_class", "_tcp", "_udp", "_icmp")

    # -- header fields (traffic_class: the IPv4 TOS byte / the IPv6 traffic class)
    @property
    def dscp(self):
        return self.traffic_class >> 2

    @property
    def ecn(self):
        return self.traffic_class & 3

    @property
    def ports(self):
        return _ports(self)

    @property
    def endpoints(self):
        return view_endpoints(self)

    @property
    def src_address(self):
        return self.src_prefix

    @property
    def dst_address(self):
        return self.dst_prefix

    # -- byte ranges
    @property
    def data(self):
        return self.buf[self.off:self.end]

    @property
    def l4_offset(self):
        return self.l4

    # -- transport views (cached; the Observer pre-fills the one it built)
    @property
    def tcp(self):
        v = self._tcp
        if v is False:
            v = self._tcp = tcp_view(self) if self.proto == PROTO_TCP else None
        return v

    @property
    def udp(self):
        v = self._udp
        if v is False:
            v = self._udp = udp_view(self) if self.proto == PROTO_UDP else None
        return v

    def __repr__(self):
        return "<IP%d %s -> %s proto %d size %d>" % (self.version, self.src_prefix,
                                                     self.dst_prefix, self.proto, self.size)


class IP4(_IPView):
    """IPv4 header view (see the module docstring for the attributes)."""

    __slots__ = ()
    version = 4
    ip6 = None
    icmp6 = None

    def __init__(self, buf, off, end, l4, proto, seconds, capend):
        self.buf = buf
        self.off = off              # IP header start in buf
        self.end = end              # end of the IP packet (captured bytes, clamped to length)
        self.l4 = l4                # transport header offset, -1 if none
        self.proto = proto
        self.seconds = seconds
        self.capend = capend        # end of the captured bytes
        self.size = ((buf[off + 2] << 8) | buf[off + 3]) or (capend - off)
        self.traffic_class = buf[off + 1]
        self._tcp = self._udp = self._icmp = False

    # -- fixed header fields
    @property
    def hdr_len(self):
        return self.buf[self.off] & 0x0F

    @property
    def pkt_len(self):
        return _u16(self.buf, self.off + 2)[0]

    @property
    def ident(self):
        return _u16(self.buf, self.off + 4)[0]

    @property
    def has_rf(self):
        return bool(self.buf[self.off + 6] & 0x80)

    @property
    def has_df(self):
        return bool(self.buf[self.off + 6] & 0x40)

    @property
    def has_mf(self):
        return bool(self.buf[self.off + 6] & 0x20)

    @property
    def frag_offset(self):
        return _u16(self.buf, self.off + 6)[0] & 0x1FFF

    @property
    def is_fragment(self):
        return bool(_u16(self.buf, self.off + 6)[0] & 0x3FFF)

    @property
    def hdr_checksum(self):
        return _u16(self.buf, self.off + 10)[0]

    @property
    def ttl(self):
        return self.buf[self.off + 8]

    @property
    def hop_limit(self):
        return self.buf[self.off + 8]

    @property
    def src_prefix(self):
        return Prefix(self.buf[self.off + 12:self.off + 16])

    @property
    def dst_prefix(self):
        return Prefix(self.buf[self.off + 16:self.off + 20])

    @property
    def src_addr(self):
        return _ntoa(self.buf[self.off + 12:self.off + 16])

    @property
    def dst_addr(self):
        return _ntoa(self.buf[self.off + 16:self.off + 20])

    # -- byte ranges and views
    @property
    def payload(self):
        return self.buf[self.off + ((self.buf[self.off] & 0x0F) << 2):self.end]

    @property
    def ip(self):
        return self

    @property
    def icmp(self):
        v = self._icmp
        if v is False:
            v = self._icmp = icmp_view(self) if self.proto == PROTO_ICMP else None
        return v


class IP6(_IPView):
    """IPv6 header view (see the module docstring for the attributes)."""

    __slots__ = ("frag",)
    version = 6
    ip = None
    icmp = None
    has_rf = False
    has_df = False
    pkt_len = None
    hdr_len = None

    def __init__(self, buf, off, end, l4, proto, seconds, capend, frag=-1):
        self.buf = buf
        self.off = off
        self.end = end
        self.l4 = l4
        self.proto = proto
        self.seconds = seconds
        self.capend = capend
        plen = (buf[off + 4] << 8) | buf[off + 5]
        self.size = plen + 40 if plen else capend - off
        self.traffic_class = ((buf[off] & 0x0F) << 4) | (buf[off + 1] >> 4)
        self.frag = frag            # offset of the fragment header, or -1
        self._tcp = self._udp = self._icmp = False

    # -- fixed header fields
    @property
    def flow_label(self):
        return _u32(self.buf, self.off)[0] & 0xFFFFF

    @property
    def payload_len(self):
        return _u16(self.buf, self.off + 4)[0]

    @property
    def next_hdr(self):
        return self.buf[self.off + 6]

    @property
    def hop_limit(self):
        return self.buf[self.off + 7]

    @property
    def ttl(self):
        return self.buf[self.off + 7]

    @property
    def src_prefix(self):
        return Prefix(self.buf[self.off + 8:self.off + 24])

    @property
    def dst_prefix(self):
        return Prefix(self.buf[self.off + 24:self.off + 40])

    @property
    def src_addr(self):
        return _addr6(self.buf[self.off + 8:self.off + 24])

    @property
    def dst_addr(self):
        return _addr6(self.buf[self.off + 24:self.off + 40])

    # -- fragment header fields
    @property
    def is_fragment(self):
        return self.frag >= 0

    @property
    def frag_offset(self):
        return _u16(self.buf, self.frag + 2)[0] >> 3 if self.frag >= 0 else 0

    @property
    def has_mf(self):
        return bool(self.buf[self.frag + 3] & 1) if self.frag >= 0 else False

    @property
    def ident(self):
        return _u32(self.buf, self.frag + 4)[0] if self.frag >= 0 else None

    # -- byte ranges and views
    @property
    def payload(self):
        return self.buf[self.off + 40:self.end]

    @property
    def ip6(self):
        return self

    @property
    def icmp6(self):
        v = self._icmp
        if v is False:
            v = self._icmp = icmp_view(self) if self.proto == PROTO_ICMP6 else None
        return v


def parse_ip(buf, off, end, seconds=0.0):
    """Return an :class:`IP4`/:class:`IP6` view of the IP packet at ``buf[off:end]``.

    Raises :class:`NotIP` (no IPv4/IPv6 version), :class:`Short` (header not captured) or
    :class:`Malformed`. The transport header itself is not checked here; ``l4`` is -1 for
    packets without one (non-first fragments, an IPv6 chain ending in "no next header").
    """
    if off >= end:
        raise Short("no IP header captured")
    vbyte = buf[off]
    version = vbyte >> 4
    if version == 4:
        hlen = (vbyte & 0x0F) << 2
        if off + 20 > end:
            raise Short("IPv4 header truncated")
        if hlen < 20:
            raise Malformed("IPv4 header length %d" % hlen)
        if off + hlen > end:
            raise Short("IPv4 options truncated")
        total = (buf[off + 2] << 8) | buf[off + 3]
        if total:
            if total < hlen:
                raise Malformed("IPv4 total length %d < header length %d" % (total, hlen))
            ipend = off + total
            if ipend > end:
                ipend = end
        else:
            ipend = end             # total length 0: TSO on the capturing host
        if (buf[off + 6] & 0x1F) or buf[off + 7]:
            l4 = -1                 # non-first fragment: no transport header
        else:
            l4 = off + hlen
        return IP4(buf, off, ipend, l4, buf[off + 9], seconds, end)
    if version == 6:
        if off + 40 > end:
            raise Short("IPv6 header truncated")
        plen = (buf[off + 4] << 8) | buf[off + 5]
        ipend = off + 40 + plen if plen else end
        if ipend > end:
            ipend = end
        nh = buf[off + 6]
        p = off + 40
        frag = -1
        while nh in IPV6_EXT_HEADERS:
            if p + 8 > ipend:
                raise Short("IPv6 extension header %d truncated" % nh)
            if nh == IPV6_FRAGMENT:
                frag = p
                if ((buf[p + 2] << 8) | buf[p + 3]) & 0xFFF8:
                    return IP6(buf, off, ipend, -1, buf[p], seconds, end, frag)
                nh = buf[p]
                p += 8
            elif nh == IPV6_AH:
                nh, p = buf[p], p + ((buf[p + 1] + 2) << 2)
            else:
                nh, p = buf[p], p + ((buf[p + 1] + 1) << 3)
        if p > ipend:
            raise Short("IPv6 extension header truncated")
        return IP6(buf, off, ipend, p if nh != 59 else -1, nh, seconds, end, frag)
    raise NotIP("IP version %d" % version)


def dissect(buf, linktype=DLT_EN10MB, seconds=0.0):
    """Return the IP view of one packet ``buf`` captured with ``linktype`` (tests, tools).

    ``buf``: bytes, or anything ``bytes()`` takes (a bytearray, a memoryview...), copied then:
    the views read a bytes object.
    """
    if type(buf) is not bytes:
        buf = bytes(buf)
    return parse_ip(buf, _LINK[linktype](buf, 0, len(buf)), len(buf), seconds)


# ---------------------------------------------------------------------------- transport views

class _TransportView:
    """What the TCP and UDP views share (see the module docstring for the attributes)."""

    __slots__ = ("buf", "off", "end")

    def __init__(self, buf, off, end):
        self.buf = buf
        self.off = off
        self.end = end

    @property
    def src_port(self):
        return _u16(self.buf, self.off)[0]

    @property
    def dst_port(self):
        return _u16(self.buf, self.off + 2)[0]

    @property
    def data(self):
        return self.buf[self.off:self.end]


class TCP(_TransportView):
    """TCP header view (see the module docstring for the attributes)."""

    __slots__ = ("flags",)          # a plain attribute: every TCP chain reads it

    def __init__(self, buf, off, end):
        self.buf = buf
        self.off = off
        self.end = end
        self.flags = ((buf[off + 12] & 0x0F) << 8) | buf[off + 13]

    @property
    def seq_nbr(self):
        return _u32(self.buf, self.off + 4)[0]

    @property
    def ack_nbr(self):
        return _u32(self.buf, self.off + 8)[0]

    @property
    def doff(self):
        return self.buf[self.off + 12] >> 4

    @property
    def fin_flag(self):
        return bool(self.buf[self.off + 13] & 0x01)

    @property
    def syn_flag(self):
        return bool(self.buf[self.off + 13] & 0x02)

    @property
    def rst_flag(self):
        return bool(self.buf[self.off + 13] & 0x04)

    @property
    def psh_flag(self):
        return bool(self.buf[self.off + 13] & 0x08)

    @property
    def ack_flag(self):
        return bool(self.buf[self.off + 13] & 0x10)

    @property
    def urg_flag(self):
        return bool(self.buf[self.off + 13] & 0x20)

    @property
    def ece_flag(self):
        return bool(self.buf[self.off + 13] & 0x40)

    @property
    def cwr_flag(self):
        return bool(self.buf[self.off + 13] & 0x80)

    @property
    def window(self):
        return _u16(self.buf, self.off + 14)[0]

    @property
    def checksum(self):
        return _u16(self.buf, self.off + 16)[0]

    @property
    def urg_ptr(self):
        return _u16(self.buf, self.off + 18)[0]

    @property
    def urgent(self):
        return _u16(self.buf, self.off + 18)[0]

    @property
    def options_raw(self):
        off = self.off
        return self.buf[off + 20:off + ((self.buf[off + 12] >> 4) << 2)]

    @property
    def options_data(self):
        return self.options_raw or False

    @property
    def options(self):
        return parse_tcp_options(self.options_raw)

    @property
    def option_numbers(self):
        return [kind for kind, _ in parse_tcp_options(self.options_raw)] or False

    def option(self, kind):
        """Value bytes of the first option ``kind``; True if it has no value; False if absent."""
        for k, value in parse_tcp_options(self.options_raw):
            if k == kind:
                return value or True
        return False

    @property
    def payload(self):
        return _payload(self.buf, self.off + ((self.buf[self.off + 12] >> 4) << 2), self.end)

    @property
    def payload_len(self):
        return max(0, self.end - self.off - ((self.buf[self.off + 12] >> 4) << 2))

    def __repr__(self):
        return "<TCP %d -> %d flags 0x%03x>" % (self.src_port, self.dst_port, self.flags)


def parse_tcp_options(raw):
    """Return the TCP options in ``raw`` as a list of ``(kind, value_bytes)``.

    Every occurrence is kept, in order (the 1.0 parser kept only the last one, issue #189).
    EOL ends the list; NOP is skipped; a length below 2 or past the end stops parsing (the 1.0
    parser looped forever on a zero length).
    """
    out = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = raw[i + 1]
        if length < 2 or i + length > n:
            break
        out.append((kind, raw[i + 2:i + length]))
        i += length
    return out


class UDP(_TransportView):
    """UDP header view (see the module docstring for the attributes)."""

    __slots__ = ()

    @property
    def len(self):
        return _u16(self.buf, self.off + 4)[0]

    @property
    def checksum(self):
        return _u16(self.buf, self.off + 6)[0]

    @property
    def payload(self):
        return _payload(self.buf, self.off + 8, self.end)

    @property
    def payload_len(self):
        return max(0, self.end - self.off - 8)

    def __repr__(self):
        return "<UDP %d -> %d len %d>" % (self.src_port, self.dst_port, self.len)


class ICMP:
    """ICMPv4 view (see the module docstring for the attributes)."""

    __slots__ = ("buf", "off", "end", "seconds")
    ERROR_TYPES = ICMP4_ERROR_TYPES
    QUOTE_MIN = 20

    def __init__(self, buf, off, end, seconds=0.0):
        self.buf = buf
        self.off = off
        self.end = end
        self.seconds = seconds

    @property
    def type(self):
        return self.buf[self.off]

    @property
    def code(self):
        return self.buf[self.off + 1]

    @property
    def checksum(self):
        return _u16(self.buf, self.off + 2)[0]

    @property
    def rest(self):
        return self.buf[self.off + 4:self.off + 8]

    @property
    def is_error(self):
        return self.buf[self.off] in self.ERROR_TYPES

    @property
    def data(self):
        return self.buf[self.off:self.end]

    @property
    def quoted(self):
        if self.buf[self.off] not in self.ERROR_TYPES or self.off + 8 + self.QUOTE_MIN > self.end:
            return None
        try:
            return parse_ip(self.buf, self.off + 8, self.end, self.seconds)
        except DissectError:
            return None

    @property
    def payload(self):
        if self.buf[self.off] in self.ERROR_TYPES:
            return self.quoted
        return self.buf[self.off + 8:self.end]

    def __repr__(self):
        return "<%s type %d code %d>" % (type(self).__name__, self.type, self.code)


class ICMP6(ICMP):
    """ICMPv6 view: as :class:`ICMP`, with the IPv6 error types 1-4."""

    __slots__ = ()
    ERROR_TYPES = ICMP6_ERROR_TYPES
    QUOTE_MIN = 40

    @property
    def mtu(self):
        """Packet Too Big (type 2): the MTU of the next hop; None for other types."""
        return _u32(self.buf, self.off + 4)[0] if self.buf[self.off] == 2 else None


def tcp_view(ip):
    """TCP view of ``ip``'s transport header, or None if it is absent or not fully captured."""
    l4, end = ip.l4, ip.end
    if l4 < 0 or l4 + 20 > end:
        return None
    hlen = (ip.buf[l4 + 12] >> 4) << 2
    if hlen < 20 or l4 + hlen > end:
        return None
    return TCP(ip.buf, l4, end)


def udp_view(ip):
    """UDP view of ``ip``'s transport header, or None if it is absent or not fully captured."""
    l4 = ip.l4
    if l4 < 0 or l4 + 8 > ip.end:
        return None
    return UDP(ip.buf, l4, ip.end)


def icmp_view(ip):
    """ICMP/ICMPv6 view of ``ip``'s transport header, or None if less than 4 bytes."""
    l4 = ip.l4
    if l4 < 0 or l4 + 4 > ip.end:
        return None
    cls = ICMP if ip.version == 4 else ICMP6
    return cls(ip.buf, l4, ip.end, ip.seconds)
