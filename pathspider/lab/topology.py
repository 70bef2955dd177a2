"""Builds the lab's links, addresses, routes and per-namespace sysctls (pyroute2).

The path is client -- hop 1 (``mbox``) -- r2 -- ... -- r5 -- server (:mod:`plan`). Each veth
pair is created from inside the router on its client side with the peer placed directly in
the next namespace (the client link from ``mbox``, link k from hop k, the server link from
the last router), so no interface ever appears in the root namespace. Routes cover the lab
prefixes only: a packet to any other address finds no route. :data:`INTERFACES` and
:data:`ROUTES` say what is built; :func:`check` finds what is missing.
"""
import errno
import logging
import socket

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from . import netns, plan

log = logging.getLogger("pathspider.lab")

_IFA_F_NODAD = 0x02
_IFF_UP = 0x1
_RT_TABLE_MAIN = 254
_RT_TABLE_LOCAL = 255
_FAMILIES = (4, 6)

# Sysctls set before interfaces exist, in every namespace: no IPv6 duplicate address detection
# (addresses are usable at once), no router advertisements, and no reverse-path filter (a new
# namespace inherits the root namespace's IPv4 interface defaults, which may filter).
_COMMON_SYSCTLS = {
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    "net.ipv6.conf.all.accept_ra": 0,
    "net.ipv6.conf.default.accept_ra": 0,
}

# Every router: forwards both families, sends no redirects, and answers every packet it
# cannot deliver: ICMP errors (time exceeded for traceroutes, the "unreachable" class's
# rejects) are never rate limited away, and come from the address of the interface the
# packet arrived on (towards the client: plan.hop_address).
_ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    "net.ipv4.icmp_ratelimit": 0,
    "net.ipv6.icmp.ratelimit": 0,
    "net.ipv4.icmp_msgs_per_sec": 1000000,
    "net.ipv4.icmp_msgs_burst": 1000000,
    "net.ipv4.icmp_errors_use_inbound_ifaddr": 1,
}

# Servers: TFO for clients and servers (3), ECN accepted and requested, the DSCP of a SYN
# reflected into the answers (so a client sees which codepoint arrived), room for bursts.
_SERVER_SYSCTLS = {
    "net.ipv4.tcp_fastopen": 3,
    "net.ipv4.tcp_ecn": 1,
    "net.ipv4.tcp_reflect_tos": 1,
    "net.core.somaxconn": 8192,
    "net.ipv4.tcp_max_syn_backlog": 8192,
}

# Offloads off on every lab veth end, so captures see packets as on a wire: one segment per
# packet (no TSO/GSO/GRO super-packets) and real checksums (no partial tx checksums).
_OFFLOADS_OFF = ("tx", "tso", "gso", "gro", "sg")


def _apply_sysctls(ns, table, missing_ok=False):
    for key, value in table.items():
        netns.sysctl_set(ns, key, value, missing_ok=missing_ok)


def _addresses(link, *hosts):
    """((address, prefixlen), ...) of host numbers ``hosts`` on ``link``, both families."""
    out = []
    for family in _FAMILIES:
        net = plan.hop_link(link, family)
        out += [(net[host], net.prefixlen) for host in hosts]
    return tuple(out)


def _interfaces():
    """(role, interface, addresses) of every lab interface; see :data:`INTERFACES`."""
    out = []
    for hop in plan.HOPS:
        role = plan.router_role(hop)
        out.append((role, plan.ROUTER_CLIENT_IFACE, tuple(
            (plan.router_addresses(hop, f)[0], plan.hop_link(hop - 1, f).prefixlen)
            for f in _FAMILIES)))
        out.append((role, plan.ROUTER_SERVER_IFACE, _addresses(hop, 1)))
    out.append(("client", plan.CLIENT_IFACE, ((plan.CLIENT_V4, plan.CLIENT_LINK_V4.prefixlen),
                                              (plan.CLIENT_V6, plan.CLIENT_LINK_V6.prefixlen))))
    out.append(("server", plan.SERVER_IFACE, ((plan.SERVER_V4, plan.SERVER_LINK_V4.prefixlen),
                                              (plan.SERVER_V6, plan.SERVER_LINK_V6.prefixlen))))
    return tuple(out)


def _router_routes(hop):
    """Hop ``hop``'s routes: targets, services and the links beyond its next hop towards the
    server; the links behind its previous hop back towards the client."""
    role, out = plan.router_role(hop), []
    for family in _FAMILIES:
        if hop == plan.ROUTERS:
            ahead = plan.SERVER_V4 if family == 4 else plan.SERVER_V6
        else:
            ahead = plan.router_addresses(hop + 1, family)[0]
        far = ([plan.TARGETS_V4, plan.SERVICES_V4] if family == 4
               else [plan.TARGETS_V6, plan.SERVICES_V6])
        far += [plan.hop_link(k, family) for k in range(hop + 1, plan.ROUTERS + 1)]
        out += [(role, dst, ahead) for dst in far]
        if hop > 1:
            behind = plan.router_addresses(hop - 1, family)[1]
            out += [(role, plan.hop_link(k, family), behind) for k in range(0, hop - 1)]
    return out


def _routes():
    """(role, destination, gateway) of every lab route; see :data:`ROUTES`."""
    out = []
    for hop in plan.HOPS:
        out += _router_routes(hop)
    out += [("client", plan.LAB_V4, plan.MBOX_CLIENT_V4),
            ("client", plan.LAB_V6, plan.MBOX_CLIENT_V6),
            ("server", plan.LAB_V4, plan.SERVER_GATEWAY_V4),
            ("server", plan.LAB_V6, plan.SERVER_GATEWAY_V6)]
    out += [("server", dst, None) for dst in (plan.TARGETS_V4, plan.SERVICES_V4,
                                               plan.TARGETS_V6, plan.SERVICES_V6)]
    return tuple(out)


#: The lab's interfaces and their addresses: (role, interface, ((address, prefixlen), ...)).
INTERFACES = _interfaces()

#: The lab's routes: (role, destination, gateway); gateway None is an AnyIP local route.
ROUTES = _routes()

#: Every role that has interfaces, in path order.
ROLES = ("client", *plan.ROUTER_ROLES, "server")


def _ifindex(ipr, ifname):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise RuntimeError(f"interface {ifname} not found")
    return found[0]


def _configure(ipr, role, interfaces=INTERFACES, routes=ROUTES):
    """Bring lo and ``role``'s interfaces up with their addresses, then add its routes."""
    ipr.link("set", index=_ifindex(ipr, "lo"), state="up")
    for _, ifname, addresses in (i for i in interfaces if i[0] == role):
        idx = _ifindex(ipr, ifname)
        for address, prefixlen in addresses:
            extra = {"flags": _IFA_F_NODAD} if address.version == 6 else {}
            ipr.addr("add", index=idx, address=str(address), prefixlen=prefixlen, **extra)
        ipr.link("set", index=idx, state="up")
    for _, dst, gateway in (r for r in routes if r[0] == role):
        if gateway is None:
            # AnyIP: answer the whole prefix locally (a local route on lo, local table).
            ipr.route("add", dst=str(dst), type="local", table=_RT_TABLE_LOCAL,
                      oif=_ifindex(ipr, "lo"), scope=254)
        else:
            ipr.route("add", dst=str(dst), gateway=str(gateway))


def build(names):
    """Configure the lab's (existing, empty) namespaces named in ``names``.

    ``names`` maps the roles ``client``, ``mbox``, ``r2`` ... ``r5`` and ``server`` to
    namespace names.
    """
    for role in ROLES:
        _apply_sysctls(names[role], _COMMON_SYSCTLS)
    for role in plan.ROUTER_ROLES:
        _apply_sysctls(names[role], _ROUTER_SYSCTLS, missing_ok=True)
    _apply_sysctls(names["server"], _SERVER_SYSCTLS)

    for hop in plan.HOPS:
        with NetNS(names[plan.router_role(hop)]) as ipr:
            if hop == 1:
                ipr.link("add", ifname=plan.ROUTER_CLIENT_IFACE, kind="veth",
                         peer={"ifname": plan.CLIENT_IFACE, "net_ns_fd": names["client"]})
            peer_role = "server" if hop == plan.ROUTERS else plan.router_role(hop + 1)
            peer_iface = plan.SERVER_IFACE if hop == plan.ROUTERS else plan.ROUTER_CLIENT_IFACE
            ipr.link("add", ifname=plan.ROUTER_SERVER_IFACE, kind="veth",
                     peer={"ifname": peer_iface, "net_ns_fd": names[peer_role]})
    for role in ROLES:
        with NetNS(names[role]) as ipr:
            _configure(ipr, role)

    for role, iface, _ in INTERFACES:
        offloads_off(names[role], iface)


def _inspect(role, interfaces=INTERFACES, wanted_routes=ROUTES):
    """What ``role``'s namespace (the calling thread's) lacks of ``interfaces`` and
    ``wanted_routes`` (default :data:`INTERFACES` and :data:`ROUTES`), as problem strings."""
    problems = []
    with IPRoute() as ipr:
        links = {link.get("ifname"): link for link in ipr.link("dump")}
        addrs = {(a.get("index"), a.get("address"), a.get("prefixlen"))
                 for a in ipr.addr("dump")}
        routes = set()
        for table in (_RT_TABLE_MAIN, _RT_TABLE_LOCAL):
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ipr.route("dump", table=table, family=family):
                    routes.add((r.get("dst"), r.get("dst_len"), r.get("gateway"),
                                r.get("table") == _RT_TABLE_LOCAL))
    for _, ifname, addresses in (i for i in interfaces if i[0] == role):
        link = links.get(ifname)
        if link is None:
            problems.append(f"interface {ifname} missing")
            continue
        if not link.get("flags", 0) & _IFF_UP:
            problems.append(f"interface {ifname} is down")
        for address, prefixlen in addresses:
            if (link.get("index"), str(address), prefixlen) not in addrs:
                problems.append(f"address {address}/{prefixlen} missing on {ifname}")
    for _, dst, gateway in (r for r in wanted_routes if r[0] == role):
        key = (str(dst.network_address), dst.prefixlen,
               None if gateway is None else str(gateway), gateway is None)
        if key not in routes:
            problems.append(f"route {dst} " + (f"via {gateway}" if gateway else "(local, AnyIP)")
                            + " missing")
    return problems


def check(names, vantages=0):
    """What is missing from the lab's links, addresses and routes (an empty list: nothing),
    with ``vantages`` vantages (their namespaces named in ``names`` under ``v1`` ...).

    ``names`` maps roles to namespace names, as for :func:`build`; every namespace must exist.
    Each problem names the namespace, e.g. ``"psl-client: route 198.18.0.0/15 via ... missing"``.
    """
    interfaces, routes = all_interfaces(vantages), all_routes(vantages)
    return [f"{names[role]}: {problem}" for role in roles(vantages)
            for problem in netns.call_in(names[role], _inspect, role, interfaces, routes)]


def offloads_off(ns, iface):
    """Turn segmentation and checksum offloads off on ``iface`` in namespace ``ns``."""
    args = []
    for feature in _OFFLOADS_OFF:
        args += [feature, "off"]
    netns.run(ns, ["ethtool", "-K", iface, *args])


# -- vantages ----------------------------------------------------------------------------------
# Vantage k (role ``v<k>``) hangs off hop 1 by its own veth: ``a<k>`` in the mbox, ``eth0`` in
# the vantage (created from the mbox, the peer placed straight into the vantage namespace).
# Routers 2..ROUTERS route the whole vantage space (plan.VANTAGES_V4 / _V6) back towards the
# client side while the lab has any vantage; the vantage routes the lab space via the mbox.

def vantage_interfaces(k):
    """(role, interface, addresses) of vantage ``k``'s access link, both ends."""
    gw = tuple((plan.vantage_gateway(k, f), plan.vantage_link(k, f).prefixlen)
               for f in _FAMILIES)
    own = tuple((plan.vantage_address(k, f), plan.vantage_link(k, f).prefixlen)
                for f in _FAMILIES)
    return (("mbox", plan.mbox_vantage_iface(k), gw),
            (plan.vantage_name(k), plan.VANTAGE_IFACE, own))


def vantage_routes(k):
    """(role, destination, gateway) of vantage ``k``'s own routes: the lab space via hop 1."""
    role = plan.vantage_name(k)
    return ((role, plan.LAB_V4, plan.vantage_gateway(k, 4)),
            (role, plan.LAB_V6, plan.vantage_gateway(k, 6)))


def vantage_space_routes():
    """The routes of routers 2..ROUTERS to the vantage space, back towards the client side."""
    out = []
    for hop in plan.HOPS[1:]:
        for family, space in ((4, plan.VANTAGES_V4), (6, plan.VANTAGES_V6)):
            out.append((plan.router_role(hop), space, plan.router_addresses(hop - 1, family)[1]))
    return tuple(out)


def roles(vantages=0):
    """Every role with interfaces in a lab with ``vantages`` vantages, in path order, the
    vantages last."""
    return ROLES + plan.VANTAGE_NAMES[:vantages]


def all_interfaces(vantages=0):
    """:data:`INTERFACES` plus those of ``vantages`` vantages."""
    return INTERFACES + tuple(i for k in range(1, vantages + 1) for i in vantage_interfaces(k))


def all_routes(vantages=0):
    """:data:`ROUTES` plus those of ``vantages`` vantages (and the routers' vantage space)."""
    if not vantages:
        return ROUTES
    return (ROUTES + vantage_space_routes()
            + tuple(r for k in range(1, vantages + 1) for r in vantage_routes(k)))


def add_vantage(names, k):
    """Join vantage ``k``'s (existing, empty) namespace ``names["v<k>"]`` to hop 1 with its
    access link, addresses, routes, the client's sysctls and offloads off. The routers'
    routes to the vantage space are :func:`route_vantage_space`'s."""
    role = plan.vantage_name(k)
    _apply_sysctls(names[role], _COMMON_SYSCTLS)
    interfaces, routes = vantage_interfaces(k), vantage_routes(k)
    with NetNS(names["mbox"]) as ipr:
        ipr.link("add", ifname=plan.mbox_vantage_iface(k), kind="veth",
                 peer={"ifname": plan.VANTAGE_IFACE, "net_ns_fd": names[role]})
        _configure_only(ipr, "mbox", interfaces)
    with NetNS(names[role]) as ipr:
        _configure(ipr, role, interfaces, routes)
    for owner, iface, _ in interfaces:
        offloads_off(names[owner], iface)


def _configure_only(ipr, role, interfaces):
    """Addresses and link state of ``role``'s interfaces among ``interfaces``, no routes
    (for an interface added to a namespace that is already configured)."""
    _configure(ipr, role, tuple(i for i in interfaces if i[0] == role), ())


def route_vantage_space(names, present):
    """Add (``present``) or remove the routes of routers 2..ROUTERS to the vantage space;
    idempotent either way."""
    for role, dst, gateway in vantage_space_routes():
        with NetNS(names[role]) as ipr:
            if present:
                ipr.route("replace", dst=str(dst), gateway=str(gateway))
            else:
                try:
                    ipr.route("del", dst=str(dst), gateway=str(gateway))
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:
                        raise


def remove_vantage_link(names, k):
    """Delete hop 1's end of vantage ``k``'s access link (the vantage's end goes with it), if
    it is there."""
    with NetNS(names["mbox"]) as ipr:
        found = ipr.link_lookup(ifname=plan.mbox_vantage_iface(k))
        if found:
            ipr.link("del", index=found[0])
