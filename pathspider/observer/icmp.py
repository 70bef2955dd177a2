"""ICMP chain functions (PATHspider 1.0 names) for ICMPv4 and ICMPv6 errors.

The Observer attaches an ICMP error to the flow of the packet it quotes, as a
reverse-direction packet, and calls ``icmp4_chain`` functions as ``fn(rec, ip, q, rev)`` and
``icmp6_chain`` functions as ``fn(rec, ip6, q, rev)`` (``q`` is the quoted packet).

``icmp_setup(rec, ip)`` (new_flow chain)
    ``icmp_unreachable`` = False.
``icmp_unreachable(rec, ip, q, rev)`` (icmp4 chain)
    a reverse-direction ICMPv4 Destination Unreachable (type 3) sets ``icmp_unreachable``;
    returns False once it is set, which completes the flow.
``icmp6_unreachable(rec, ip6, q, rev)`` (icmp6 chain)
    the same for ICMPv6 Destination Unreachable (type 1).

Fixes against the reference implementations:

* 1.0's Observer read the quotation of an ICMPv6 packet through the IPv4 accessor, so any
  ``icmp6_chain`` function crashed the observer on the first ICMPv6 packet, and 1.0 had no
  ICMPv6 function at all. :func:`icmp6_unreachable` reads the ICMPv6 header (``ip6.icmp6``)
  and never touches an IPv4 accessor; the Observer passes the quoted IPv6 packet as ``q``.
* A missing ICMP header (truncated capture) is treated as "not unreachable" instead of raising.
"""

from pathspider.observer.dissector import ICMP4_ERROR_TYPES as ICMP4_ERRORS
from pathspider.observer.dissector import ICMP6_ERROR_TYPES as ICMP6_ERRORS
from pathspider.observer.dissector import PROTO_ICMP, PROTO_ICMP6

ICMP_UNREACHABLE = 3          # 1.0 name
ICMP4_UNREACHABLE = 3
ICMP4_SOURCEQUENCH = 4
ICMP4_REDIRECT = 5
ICMP4_TTLEXCEEDED = 11
ICMP4_PARAMPROBLEM = 12
ICMP6_UNREACHABLE = 1
ICMP6_PACKETTOOBIG = 2
ICMP6_TTLEXCEEDED = 3
ICMP6_PARAMPROBLEM = 4


def icmp_setup(rec, ip):
    """new_flow: ``icmp_unreachable`` = False; never vetoes the flow."""
    rec['icmp_unreachable'] = False
    return True


def icmp_unreachable(rec, ip, q, rev):
    """icmp4: note a reverse-direction Destination Unreachable; False (complete) once seen."""
    return _note_unreachable(rec, rev, ip.icmp, ICMP4_UNREACHABLE)


def icmp6_unreachable(rec, ip6, q, rev):
    """icmp6: note a reverse-direction ICMPv6 Destination Unreachable; False once seen."""
    return _note_unreachable(rec, rev, ip6.icmp6, ICMP6_UNREACHABLE)


def _note_unreachable(rec, rev, icmp, unreachable_type):
    """Set ``icmp_unreachable`` for a reverse ``icmp`` view (or None) of ``unreachable_type``;
    return False once it is set."""
    if rev and icmp is not None and icmp.type == unreachable_type:
        rec['icmp_unreachable'] = True
    return not rec['icmp_unreachable']


def is_icmp_error(ip):
    """True if ``ip`` (an IPv4 or IPv6 view) carries an ICMP error message.

    Such packets are attached to the flow they quote, but their own IP header (ECN, DSCP,
    reserved bit) belongs to the router that sent them, not to the flow: the ECN, DSCP and
    evil-bit chains skip them.
    """
    proto = ip.proto
    if proto == PROTO_ICMP:
        icmp = ip.icmp
        return icmp is not None and icmp.type in ICMP4_ERRORS
    if proto == PROTO_ICMP6:
        icmp6 = ip.icmp6
        return icmp6 is not None and icmp6.type in ICMP6_ERRORS
    return False
