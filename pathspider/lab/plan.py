"""The lab's address plan and impairment classes, in one place.

Every address the lab uses comes from 198.18.0.0/15 (RFC 2544, benchmarking) or 2001:db8::/32
(RFC 3849, documentation), and exists only inside the lab's network namespaces: nothing here is
routable from, or routed to, the root namespace or the Internet.

Topology: a client, a chain of :data:`ROUTERS` routers and a server, one namespace each
(``<name>-client``, ``<name>-mbox`` = hop 1, ``<name>-r2`` ... ``<name>-r5``, ``<name>-server``).
Hop ``k`` is the k-th router after the client: a packet sent with TTL / hop limit ``k`` expires
there, and hop ``k`` answers from :func:`hop_address`, its address on the link towards the
client. Every router has ``c0`` towards the client and ``s0`` towards the server::

    client eth0 -- c0 mbox s0 -- c0 r2 s0 -- ... -- c0 r5 s0 -- eth0 server
    198.18.0.2  198.18.0.1  198.18.17.1  198.18.17.2  198.18.1.1  198.18.1.2
    2001:db8:0:1::2  ...:1::1  2001:db8:0:11::1  ...:11::2  ...:2::1  2001:db8:0:2::2

Link ``k`` joins hop ``k`` and hop ``k + 1`` (:func:`hop_link`): link 0 is the client link
(198.18.0.0/24), link :data:`ROUTERS` the server link (198.18.1.0/24), and the links between
routers are 198.18.(16+k).0/24 and 2001:db8:0:(0x10+k)::/64, hop ``k`` on ``.1`` / ``::1`` and
hop ``k + 1`` on ``.2`` / ``::2``. Hop :data:`SILENT_HOP` never sends ICMP time-exceeded.
Each impairment class's rules sit in the router of its hop (:data:`IMPAIRMENT_HOPS`).

Vantages (optional, ``v1`` ... ``v8``): more clients ``<name>-v<k>``, each joined to hop 1 by
its own access link 198.18.(32+k).0/24 and 2001:db8:0:(0x20+k)::/64 (:func:`vantage_link`,
:func:`vantage_address`); :data:`VANTAGE_IMPAIRMENTS` gives some of them (v2) an impairment
of their own link, for every target.

Targets: one IPv4 /24 and one IPv6 /64 per impairment class, carved from ``TARGETS_V4`` and
``TARGETS_V6`` and answered by the server namespace through AnyIP local routes. Host number
``n`` (1..254) of class ``c`` is ``t<n>.<c>.lab.test`` in the lab DNS; its IPv4 address ends
in ``.n`` and its IPv6 address in ``::n`` (the same digits, so t17 of the third class is
198.18.66.17 and 2001:db8:100:2000::17).

The i-th class's IPv6 /64 is ``2001:db8:100:<i>000::/64``, not the i-th /64: Linux keeps TCP
Fast Open cookies in a hash table keyed by the XOR of an address's four 32-bit words, and
evicts entries from a bucket that holds more than five. With the class number in the same bits
as the host number, the targets of different classes would pile into the same buckets and
lose their cookies; with the class number in the top four bits of its group they never share
a bucket.
"""
import ipaddress
from collections import namedtuple

#: One impairment class: its name, its IPv4 /24 and IPv6 /64, and what the middlebox does.
ImpairmentClass = namedtuple("ImpairmentClass", "name net4 net6 description")

# Links: client <-> middlebox and middlebox <-> server.
CLIENT_LINK_V4 = ipaddress.ip_network("198.18.0.0/24")
CLIENT_LINK_V6 = ipaddress.ip_network("2001:db8:0:1::/64")
SERVER_LINK_V4 = ipaddress.ip_network("198.18.1.0/24")
SERVER_LINK_V6 = ipaddress.ip_network("2001:db8:0:2::/64")

CLIENT_V4 = ipaddress.ip_address("198.18.0.2")
CLIENT_V6 = ipaddress.ip_address("2001:db8:0:1::2")
SERVER_V4 = ipaddress.ip_address("198.18.1.2")
SERVER_V6 = ipaddress.ip_address("2001:db8:0:2::2")

# Interface names (fixed: each namespace has its own interface name space).
CLIENT_IFACE = "eth0"           # so pathspider's default ``-i eth0`` works in the client
SERVER_IFACE = "eth0"
#: Every router's interface towards the client, and towards the server.
ROUTER_CLIENT_IFACE = "c0"
ROUTER_SERVER_IFACE = "s0"
MBOX_CLIENT_IFACE = ROUTER_CLIENT_IFACE
MBOX_SERVER_IFACE = ROUTER_SERVER_IFACE

#: Routers between the client and the server; hop k (1..ROUTERS) is the k-th after the client.
ROUTERS = 5
HOPS = range(1, ROUTERS + 1)
#: The router that forwards everything but never sends ICMP time-exceeded (a traceroute's
#: "unknown" hop).
SILENT_HOP = 5
#: Inter-router link k (1..ROUTERS-1) is the /24 198.18.(ROUTER_LINK_BASE4 + k).0 and the /64
#: 2001:db8:0:(ROUTER_LINK_BASE6 + k)::.
ROUTER_LINK_BASE4 = 16
ROUTER_LINK_BASE6 = 0x10

# Lab services that are not measurement targets: the DNS server (unimpaired path).
SERVICES_V4 = ipaddress.ip_network("198.18.2.0/24")
SERVICES_V6 = ipaddress.ip_network("2001:db8:0:3::/64")
DNS_V4 = ipaddress.ip_address("198.18.2.53")
DNS_V6 = ipaddress.ip_address("2001:db8:0:3::53")

# Everything the lab may route: the whole lab space, never more.
LAB_V4 = ipaddress.ip_network("198.18.0.0/15")
LAB_V6 = ipaddress.ip_network("2001:db8::/32")

# Target space, one /24 and one /64 per class.
TARGETS_V4 = ipaddress.ip_network("198.18.64.0/18")
TARGETS_V6 = ipaddress.ip_network("2001:db8:100::/48")

HTTP_PORT = 80
#: HTTPS (HTTP/1.1 and HTTP/2 through ALPN) on every target address.
HTTPS_PORT = 443
DNS_PORT = 53
DOMAIN = "lab.test"
#: Host numbers usable in every class (same number in IPv4 and IPv6).
HOSTS = range(1, 255)
#: MSS that the ``mss-rewrite`` class writes into SYNs and SYN-ACKs.
REWRITTEN_MSS = 536

_CLASSES = [
    ("clean", "no impairment"),
    ("clean2", "no impairment (a second clean subnet)"),
    ("ecn-syn-drop", "TCP SYNs with ECE and CWR set (ECN setup) are silently dropped"),
    ("ecn-bleach", "IP ECN field rewritten to not-ECT, both directions"),
    ("dscp-bleach", "DSCP rewritten to 0 (cs0), both directions"),
    ("tfo-strip", "TCP Fast Open options (34 and experimental 254) removed from SYNs and "
                  "SYN-ACKs"),
    ("unreachable", "everything answered with ICMP host / ICMPv6 address unreachable"),
    ("blackhole", "everything silently dropped"),
    ("evilbit-drop", "IPv4 packets with the reserved (evil) flag bit dropped"),
    ("udp-zero-drop", "UDP datagrams with checksum 0 dropped"),
    ("mss-rewrite", f"TCP MSS option in SYNs and SYN-ACKs rewritten to {REWRITTEN_MSS}"),
    ("h2-none", "no impairment; the server answers HTTP/1.1 only: no h2c upgrade on port "
                "80, no h2 in its ALPN on port 443"),
    ("h2c-drop", "TCP segments from port 80 starting with an h2c upgrade's answer "
                 "(\"HTTP/1.1 101\") dropped: asking for h2c breaks the connection; TLS "
                 "(ALPN h2) passes"),
]

#: Classes whose targets do not speak HTTP/2 (the server's choice, not the middlebox's).
H2_REFUSED = frozenset({"h2-none"})


def _class_net6(index):
    """The IPv6 /64 of the class with this index: ``2001:db8:100:<index>000::/64``."""
    base = int(TARGETS_V6.network_address) + ((index << 12) << 64)
    return ipaddress.ip_network((base, 64))


def _build_classes():
    """Give the i-th class the i-th /24 and the /64 ``2001:db8:100:<i>000::`` (see above)."""
    nets4 = TARGETS_V4.subnets(new_prefix=24)
    return {name: ImpairmentClass(name, next(nets4), _class_net6(index), desc)
            for index, (name, desc) in enumerate(_CLASSES)}


#: Impairment classes by name, in plan order.
CLASSES = _build_classes()
CLASS_NAMES = tuple(CLASSES)

#: The hop whose router holds each class's rules by default (None: the class impairs nothing;
#: its counting rule sits in :data:`COUNTING_HOP`). Only hops before :data:`SILENT_HOP`, so
#: that a traceroute can name the hop of every impaired class: the router at hop h answers
#: TTL h with the packet intact, hop h + 1 quotes it changed or never sees it.
IMPAIRMENT_HOPS = {
    "clean": None,
    "clean2": None,
    "ecn-syn-drop": 2,
    "ecn-bleach": 3,
    "dscp-bleach": 1,
    "tfo-strip": 2,
    "unreachable": 2,
    "blackhole": 3,
    "evilbit-drop": 3,
    "udp-zero-drop": 1,
    "mss-rewrite": 3,
    "h2-none": None,
    "h2c-drop": 1,
}
#: Classes that impair something, i.e. that have a hop to place them at.
IMPAIRED_CLASSES = tuple(c for c in CLASS_NAMES if IMPAIRMENT_HOPS[c] is not None)
#: Where the counting rules of classes that impair nothing go: the first router, which every
#: packet of the path crosses.
COUNTING_HOP = 1


def router_role(hop):
    """The role (namespace suffix) of the router at ``hop``: ``mbox`` for hop 1, else
    ``r<hop>``."""
    check_hop(hop)
    return "mbox" if hop == 1 else f"r{hop}"


def check_hop(hop):
    """Return ``hop`` if it is a router's hop (1..ROUTERS), else raise ValueError."""
    if isinstance(hop, bool) or not isinstance(hop, int) or hop not in HOPS:
        raise ValueError(f"hop must be an integer from 1 to {ROUTERS}, got {hop!r}")
    return hop


#: The routers' roles, hop 1 first.
ROUTER_ROLES = tuple(router_role(k) for k in HOPS)


def hop_link(k, family):
    """The network of link ``k`` (0..ROUTERS), joining hop ``k`` and hop ``k + 1``: link 0 is
    the client link, link ROUTERS the server link, the others 198.18.(16+k).0/24 and
    2001:db8:0:(0x10+k)::/64."""
    if not 0 <= k <= ROUTERS:
        raise ValueError(f"link must be from 0 to {ROUTERS}, got {k!r}")
    v4 = int(family) == 4
    if k == 0:
        return CLIENT_LINK_V4 if v4 else CLIENT_LINK_V6
    if k == ROUTERS:
        return SERVER_LINK_V4 if v4 else SERVER_LINK_V6
    if v4:
        return ipaddress.ip_network(f"198.18.{ROUTER_LINK_BASE4 + k}.0/24")
    return ipaddress.ip_network(f"2001:db8:0:{ROUTER_LINK_BASE6 + k:x}::/64")


def router_addresses(hop, family):
    """(address towards the client, address towards the server) of the router at ``hop``:
    ``.1`` / ``::1`` of the client link for hop 1, else ``.2`` / ``::2`` of link hop-1; and
    ``.1`` / ``::1`` of link ``hop``."""
    check_hop(hop)
    inward = hop_link(0, family)[1] if hop == 1 else hop_link(hop - 1, family)[2]
    return inward, hop_link(hop, family)[1]


def hop_address(hop, family):
    """The address the router at ``hop`` answers ICMP from (time-exceeded, unreachable): its
    address on the link towards the client."""
    return router_addresses(hop, family)[0]


def check_impairment_hops(placement):
    """Return ``placement`` (class -> hop) as a dict if every class is an impaired class and
    every hop a router's, else raise ValueError naming the first bad entry."""
    out = {}
    for cls, hop in dict(placement).items():
        if cls not in CLASSES:
            raise ValueError(f"unknown impairment class {cls!r}; known: "
                             + ", ".join(CLASS_NAMES))
        if IMPAIRMENT_HOPS[cls] is None:
            raise ValueError(f"class {cls} impairs nothing, so it has no hop to place; "
                             f"impaired classes: {', '.join(IMPAIRED_CLASSES)}")
        try:
            out[cls] = check_hop(hop)
        except ValueError as exc:
            raise ValueError(f"class {cls}: {exc}") from None
    return out


def parse_impairment_hop(text):
    """``"CLASS=HOP"`` -> (class, hop), checked; ValueError saying what is wrong."""
    cls, sep, hop = str(text).partition("=")
    cls, hop = cls.strip(), hop.strip()
    if not sep or not cls or not hop:
        raise ValueError(f"expected CLASS=HOP (e.g. ecn-bleach=2), got {text!r}")
    try:
        number = int(hop, 10)
    except ValueError:
        raise ValueError(f"class {cls}: hop must be an integer from 1 to {ROUTERS}, "
                         f"got {hop!r}") from None
    return next(iter(check_impairment_hops({cls: number}).items()))


#: Hop 1's addresses (the client's gateway) and the last router's on the server link (the
#: server's gateway).
MBOX_CLIENT_V4, MBOX_SERVER_V4 = router_addresses(1, 4)
MBOX_CLIENT_V6, MBOX_SERVER_V6 = router_addresses(1, 6)
SERVER_GATEWAY_V4 = router_addresses(ROUTERS, 4)[1]
SERVER_GATEWAY_V6 = router_addresses(ROUTERS, 6)[1]


def target_address(cls, host, family):
    """The address of host number ``host`` in class ``cls`` for IP ``family`` (4 or 6)."""
    if host not in HOSTS:
        raise ValueError(f"host number {host} out of range {HOSTS.start}..{HOSTS.stop - 1}")
    if int(family) == 4:
        return CLASSES[cls].net4[host]
    # IPv6 host IDs read like the IPv4 host number: host 17 is ...::17 (0x17), not ...::11.
    return CLASSES[cls].net6[int(str(host), 16)]


def class_of(address):
    """The impairment class name an address belongs to, or None if it is not a target."""
    addr = ipaddress.ip_address(address)
    for c in CLASSES.values():
        if addr in (c.net4 if addr.version == 4 else c.net6):
            return c.name
    return None


def serves_h2(address):
    """Whether the server speaks HTTP/2 (h2c upgrade, ALPN h2) on target ``address``: on
    every address but those of the classes in :data:`H2_REFUSED`."""
    return class_of(address) not in H2_REFUSED


# -- vantages ----------------------------------------------------------------------------------
# Extra client namespaces ``<name>-v1`` ... ``<name>-v<N>`` (``pathspider lab up --vantages
# N``), each joined to hop 1 by its own access link: vantage k's link is 198.18.(32+k).0/24 and
# 2001:db8:0:(0x20+k)::/64, the mbox on .1 / ::1 (interface ``a<k>``), the vantage on .2 / ::2
# (interface ``eth0``, as the client's). Every router beyond hop 1 routes the whole vantage
# space back towards the client side; hop 1 has each access link connected.

#: Most vantages a lab can have (0: the lab has only its client).
MAX_VANTAGES = 8
#: Vantage names, in order: ``v1`` ... ``v8`` (the namespace is ``<lab>-<name>``).
VANTAGE_NAMES = tuple(f"v{k}" for k in range(1, MAX_VANTAGES + 1))
#: Vantage k's access link is the /24 198.18.(VANTAGE_LINK_BASE4 + k).0 and the /64
#: 2001:db8:0:(VANTAGE_LINK_BASE6 + k)::; all of them inside VANTAGES_V4 / VANTAGES_V6.
VANTAGE_LINK_BASE4 = 32
VANTAGE_LINK_BASE6 = 0x20
VANTAGES_V4 = ipaddress.ip_network("198.18.32.0/20")
VANTAGES_V6 = ipaddress.ip_network("2001:db8:0:20::/60")
#: A vantage's interface (so pathspider's default ``-i eth0`` works there too).
VANTAGE_IFACE = "eth0"

#: One impairment of a vantage's own access link: what it does, and the nft action applied
#: (``{f}`` is the family keyword, ``ip`` or ``ip6``) to every packet of that link, both
#: directions, in hop 1.
VantageImpairment = namedtuple("VantageImpairment", "name description action")

#: The vantages whose access link impairs everything they send and receive, whatever the
#: target: what a campaign must attribute to the vantage, not to the target.
VANTAGE_IMPAIRMENTS = {
    "v2": VantageImpairment(
        "access-ecn-bleach",
        "IP ECN field rewritten to not-ECT on every packet of v2's access link, both "
        "directions, in hop 1 (the mbox)",
        "{f} ecn set not-ect"),
}


def vantage_number(name):
    """``"v3"`` (or 3) -> 3, checked to be a vantage 1..MAX_VANTAGES; ValueError otherwise."""
    number = name
    if isinstance(name, str):
        number = int(name[1:]) if name in VANTAGE_NAMES else None
    if isinstance(number, bool) or not isinstance(number, int) \
            or not 1 <= number <= MAX_VANTAGES:
        raise ValueError(f"a vantage is v1 to v{MAX_VANTAGES}, got {name!r}")
    return number


def vantage_name(k):
    """Vantage ``k``'s name, ``v<k>``."""
    return VANTAGE_NAMES[vantage_number(k) - 1]


def check_vantages(count):
    """Return ``count`` if a lab can have that many vantages (0..MAX_VANTAGES), else raise
    ValueError."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_VANTAGES:
        raise ValueError(f"vantages must be an integer from 0 to {MAX_VANTAGES}, got {count!r}")
    return count


def vantage_link(k, family):
    """The network of vantage ``k``'s access link (``k`` a number or a name ``v<k>``):
    198.18.(32+k).0/24 or 2001:db8:0:(0x20+k)::/64."""
    k = vantage_number(k)
    if int(family) == 4:
        return ipaddress.ip_network(f"198.18.{VANTAGE_LINK_BASE4 + k}.0/24")
    return ipaddress.ip_network(f"2001:db8:0:{VANTAGE_LINK_BASE6 + k:x}::/64")


def vantage_address(k, family):
    """Vantage ``k``'s own address (``.2`` / ``::2`` of its access link)."""
    return vantage_link(k, family)[2]


def vantage_gateway(k, family):
    """Hop 1's address on vantage ``k``'s access link (``.1`` / ``::1``): the vantage's
    gateway, and the address hop 1 answers a vantage's expiring packets from."""
    return vantage_link(k, family)[1]


def mbox_vantage_iface(k):
    """Hop 1's interface towards vantage ``k``: ``a<k>``."""
    return f"a{vantage_number(k)}"
