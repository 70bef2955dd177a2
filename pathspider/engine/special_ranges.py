"""The default blocklist: special-use address ranges that a measurement never targets.

Written from IANA's registries (the definitions, not a download):

* IPv4 Special-Purpose Address Registry (RFC 6890, updated by RFC 8190 and later RFCs);
* IPv6 Special-Purpose Address Registry (same RFCs);
* IPv4 Multicast Address Space Registry (RFC 5771) and IPv6 multicast (RFC 4291);
* IPv6 Address Space Registry: only 2000::/3 is assigned as global unicast; the rest of the
  space is "Reserved by IETF" (RFC 4291) or has a special use listed here.

The rule: a range is blocked when the registry says it is not globally reachable
("Globally Reachable: False"), when it is deprecated and carries no traffic (192.88.99.0/24,
2001:10::/28, fec0::/10), when it is multicast, or when it is IPv6 space outside 2000::/3
that nobody holds. Registry entries marked globally reachable that lie *inside* a blocked
range are listed with ``blocked=False`` and stay measurable (the more specific entry wins, as
in the registries): PCP and TURN anycast inside 192.0.0.0/24, AMT, AS112, ORCHIDv2 and DETs
inside 2001::/23, the NAT64 well-known prefix 64:ff9b::/96 inside ::/8, and the address
blocks of two transition mechanisms whose addresses name real hosts (Teredo 2001::/32 inside
2001::/23; 6to4 2002::/16 is in 2000::/3 and needs no entry).

Globally reachable special ranges outside any blocked range (AS112 192.31.196.0/24 and
192.175.48.0/24, AMT 192.52.193.0/24, 2620:4f:8000::/48) are not listed: they are ordinary,
reachable services.

Each entry's ``name`` is the kind a run reports when it skips a target (one warning per kind,
a count per kind in the summary). See docs/scope.md for the table with its sources.
"""

from collections import namedtuple

#: One registry entry: the network (text), the registry's name for it, the defining RFC(s),
#: and whether targets inside it are skipped.
SpecialRange = namedtuple("SpecialRange", "network name rfc blocked")

#: ``blocked`` values: a blocked range; a globally reachable one (measured).
_B, _GLOBAL = True, False

IPV4 = (
    SpecialRange("0.0.0.0/8", '"This network"', "RFC 791 sec. 3.2", _B),
    SpecialRange("10.0.0.0/8", "Private-Use", "RFC 1918", _B),
    SpecialRange("100.64.0.0/10", "Shared Address Space", "RFC 6598", _B),
    SpecialRange("127.0.0.0/8", "Loopback", "RFC 1122 sec. 3.2.1.3", _B),
    SpecialRange("169.254.0.0/16", "Link Local", "RFC 3927", _B),
    SpecialRange("172.16.0.0/12", "Private-Use", "RFC 1918", _B),
    SpecialRange("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890 sec. 2.1", _B),
    SpecialRange("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", _GLOBAL),
    SpecialRange("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155",
                 _GLOBAL),
    SpecialRange("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", _B),
    SpecialRange("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", _B),
    SpecialRange("192.168.0.0/16", "Private-Use", "RFC 1918", _B),
    SpecialRange("198.18.0.0/15", "Benchmarking", "RFC 2544", _B),
    SpecialRange("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", _B),
    SpecialRange("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", _B),
    SpecialRange("224.0.0.0/4", "Multicast", "RFC 5771", _B),
    SpecialRange("240.0.0.0/4", "Reserved", "RFC 1112 sec. 4", _B),
    SpecialRange("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 sec. 7", _B),
)

IPV6 = (
    # ::/8 holds the unspecified and loopback addresses, IPv4-mapped (and the deprecated
    # IPv4-compatible) addresses and the NAT64 prefixes.
    SpecialRange("::/8", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("::/128", "Unspecified Address", "RFC 4291", _B),
    SpecialRange("::1/128", "Loopback Address", "RFC 4291", _B),
    SpecialRange("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", _B),
    SpecialRange("64:ff9b::/96", "IPv4-IPv6 Translation (well-known prefix)", "RFC 6052",
                 _GLOBAL),
    SpecialRange("64:ff9b:1::/48", "IPv4-IPv6 Translation (local-use)", "RFC 8215", _B),
    SpecialRange("100::/8", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("100::/64", "Discard-Only Address Block", "RFC 6666", _B),
    SpecialRange("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", _B),
    SpecialRange("200::/7", "Reserved by IETF", "RFC 4048", _B),
    SpecialRange("400::/6", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("800::/5", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("1000::/4", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("2001::/23", "IETF Protocol Assignments", "RFC 2928", _B),
    SpecialRange("2001::/32", "TEREDO", "RFC 4380, RFC 8190", _GLOBAL),
    SpecialRange("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", _GLOBAL),
    SpecialRange("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155",
                 _GLOBAL),
    SpecialRange("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665",
                 _GLOBAL),
    SpecialRange("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", _B),
    SpecialRange("2001:3::/32", "AMT", "RFC 7450", _GLOBAL),
    SpecialRange("2001:4:112::/48", "AS112-v6", "RFC 7535", _GLOBAL),
    SpecialRange("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", _B),
    SpecialRange("2001:20::/28", "ORCHIDv2", "RFC 7343", _GLOBAL),
    SpecialRange("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs)", "RFC 9374",
                 _GLOBAL),
    SpecialRange("2001:db8::/32", "Documentation", "RFC 3849", _B),
    SpecialRange("3fff::/20", "Documentation", "RFC 9637", _B),
    SpecialRange("4000::/3", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", _B),
    SpecialRange("6000::/3", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("8000::/3", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("a000::/3", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("c000::/3", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("e000::/4", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("f000::/5", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("f800::/6", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", _B),
    SpecialRange("fe00::/9", "Reserved by IETF", "RFC 4291", _B),
    SpecialRange("fe80::/10", "Link-Local Unicast", "RFC 4291", _B),
    SpecialRange("fec0::/10", "Deprecated (site-local)", "RFC 3879", _B),
    SpecialRange("ff00::/8", "Multicast", "RFC 4291", _B),
)

#: Every entry, IPv4 first.
ALL = IPV4 + IPV6

#: The ranges the lab uses (pathspider.lab.plan.LAB_V4 / LAB_V6; the engine may not import
#: the lab, a test checks that both agree). Inside the lab's own client namespace the
#: default blocklist does not cover them (see :mod:`pathspider.engine.scope`).
LAB_RANGES = ("198.18.0.0/15", "2001:db8::/32")
