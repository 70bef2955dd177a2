"""Builds the lab's links, addresses, routes and per-namespace sysctls (pyroute2).

The veth pairs are created from inside the middlebox namespace with their peers placed
directly in the client and server namespaces, so no interface ever appears in the root
namespace. Routes cover the lab prefixes only: a packet to any other address finds no route.
"""
import logging

from pyroute2 import NetNS

from . import netns, plan

log = logging.getLogger("pathspider.lab")

_IFA_F_NODAD = 0x02
_RT_TABLE_LOCAL = 255

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

_MBOX_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    # ICMP errors from the "unreachable" class must not be rate limited away in big runs.
    "net.ipv4.icmp_ratelimit": 0,
    "net.ipv6.icmp.ratelimit": 0,
    "net.ipv4.icmp_msgs_per_sec": 100000,
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


def _ifindex(ipr, ifname):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise RuntimeError(f"interface {ifname} not found")
    return found[0]


def _configure_iface(ipr, ifname, addr4, addr6, prefix4, prefix6):
    idx = _ifindex(ipr, ifname)
    ipr.addr("add", index=idx, address=str(addr4), prefixlen=prefix4)
    ipr.addr("add", index=idx, address=str(addr6), prefixlen=prefix6, flags=_IFA_F_NODAD)
    ipr.link("set", index=idx, state="up")


def _lo_up(ipr):
    ipr.link("set", index=_ifindex(ipr, "lo"), state="up")


def _route(ipr, dst, gateway):
    ipr.route("add", dst=str(dst), gateway=str(gateway))


def _anyip(ipr, net):
    """Answer a whole prefix locally (AnyIP): a local route on lo in the local table."""
    ipr.route("add", dst=str(net), type="local", table=_RT_TABLE_LOCAL,
              oif=_ifindex(ipr, "lo"), scope=254)


def build(names):
    """Configure the three (existing, empty) namespaces named in ``names``.

    ``names`` maps the roles ``client``, ``mbox`` and ``server`` to namespace names.
    """
    client, mbox, server = names["client"], names["mbox"], names["server"]
    for ns in (client, mbox, server):
        _apply_sysctls(ns, _COMMON_SYSCTLS)
    _apply_sysctls(mbox, _MBOX_SYSCTLS, missing_ok=True)
    _apply_sysctls(server, _SERVER_SYSCTLS)

    with NetNS(mbox) as ipr:
        ipr.link("add", ifname=plan.MBOX_CLIENT_IFACE, kind="veth",
                 peer={"ifname": plan.CLIENT_IFACE, "net_ns_fd": client})
        ipr.link("add", ifname=plan.MBOX_SERVER_IFACE, kind="veth",
                 peer={"ifname": plan.SERVER_IFACE, "net_ns_fd": server})
        _lo_up(ipr)
        _configure_iface(ipr, plan.MBOX_CLIENT_IFACE, plan.MBOX_CLIENT_V4, plan.MBOX_CLIENT_V6,
                         plan.CLIENT_LINK_V4.prefixlen, plan.CLIENT_LINK_V6.prefixlen)
        _configure_iface(ipr, plan.MBOX_SERVER_IFACE, plan.MBOX_SERVER_V4, plan.MBOX_SERVER_V6,
                         plan.SERVER_LINK_V4.prefixlen, plan.SERVER_LINK_V6.prefixlen)
        for net in (plan.TARGETS_V4, plan.SERVICES_V4):
            _route(ipr, net, plan.SERVER_V4)
        for net in (plan.TARGETS_V6, plan.SERVICES_V6):
            _route(ipr, net, plan.SERVER_V6)

    with NetNS(client) as ipr:
        _lo_up(ipr)
        _configure_iface(ipr, plan.CLIENT_IFACE, plan.CLIENT_V4, plan.CLIENT_V6,
                         plan.CLIENT_LINK_V4.prefixlen, plan.CLIENT_LINK_V6.prefixlen)
        _route(ipr, plan.LAB_V4, plan.MBOX_CLIENT_V4)
        _route(ipr, plan.LAB_V6, plan.MBOX_CLIENT_V6)

    with NetNS(server) as ipr:
        _lo_up(ipr)
        _configure_iface(ipr, plan.SERVER_IFACE, plan.SERVER_V4, plan.SERVER_V6,
                         plan.SERVER_LINK_V4.prefixlen, plan.SERVER_LINK_V6.prefixlen)
        _route(ipr, plan.LAB_V4, plan.MBOX_SERVER_V4)
        _route(ipr, plan.LAB_V6, plan.MBOX_SERVER_V6)
        for net in (plan.TARGETS_V4, plan.SERVICES_V4, plan.TARGETS_V6, plan.SERVICES_V6):
            _anyip(ipr, net)

    for ns, iface in ((client, plan.CLIENT_IFACE), (mbox, plan.MBOX_CLIENT_IFACE),
                      (mbox, plan.MBOX_SERVER_IFACE), (server, plan.SERVER_IFACE)):
        offloads_off(ns, iface)


def offloads_off(ns, iface):
    """Turn segmentation and checksum offloads off on ``iface`` in namespace ``ns``."""
    args = []
    for feature in _OFFLOADS_OFF:
        args += [feature, "off"]
    netns.run(ns, ["ethtool", "-K", iface, *args])
