"""ECN chain functions: the 1.0 per-direction codepoint flags, and 2.0-style SYN/data split.

1.0 functions (PATHspider 1.0 defined them in ``pathspider/plugins/ecn.py``, which re-exports
them from here):

``ecn_setup(rec, ip)`` (new_flow chain)
    ``fwd_ez``, ``fwd_eo``, ``fwd_ce``, ``rev_ez``, ``rev_eo``, ``rev_ce`` = False.
``ecn_code(rec, ip, rev)`` (ip4 and ip6 chains)
    the two ECN bits of the traffic class set, per direction, ``*_ez`` for ECT(0) (``10``),
    ``*_eo`` for ECT(1) (``01``) and ``*_ce`` for CE (``11``). Always True.

Split functions (the fields of 2.0's ``ECNChain``, in separate functions so that 1.0 output
keeps exactly the 1.0 fields):

``ecn_split_setup(rec, ip)`` (new_flow chain)
    the twelve booleans ``ecn_{ect0,ect1,ce}_{syn,data}_{fwd,rev}`` = False.
``ecn_split_code(rec, ip, rev)`` (ip4 and ip6 chains)
    a TCP segment with SYN sets the ``syn`` field of its codepoint; a TCP segment carrying
    payload, or any non-TCP packet, sets the ``data`` field. Always True.

Fixes against the reference implementations:

* 2.0's ``ECNChain`` documented "data" as packets with a payload but counted every non-SYN
  packet (pure ACKs and FINs included). :func:`ecn_split_code` follows the documentation:
  payload-less TCP control segments are not counted as data; the payload length comes from
  the header lengths, so Ethernet padding is never taken for data.
* In both references an ICMP error attached to a flow (as a reverse-direction packet) had its
  own ECN bits recorded as if the remote host had sent them. ICMP error messages are skipped
  here (attached to a flow or not): their IP header belongs to the router that sent them. In
  upstream's ``icmp_ttl.pcap`` eight Time Exceeded messages carry ECN bits, which 2.0 would
  have recorded as ``ecn_*_data_rev`` of the TCP flows they quote.
* The ``ecn_split`` fields are named as 2.0's ``ECNChain`` fields; on upstream's
  ``ecn_*.pcap`` all twelve are equal.
"""
from pathspider.observer.icmp import is_icmp_error
from pathspider.observer.tcp import DATA_PACKET, SYN_PACKET, syn_or_data

ECN_NOT_ECT = 0
ECN_ECT1 = 1
ECN_ECT0 = 2
ECN_CE = 3

# (forward keys, reverse keys) indexed by the ECN codepoint; rev (a bool) indexes the pair.
_KEYS_10 = ((None, 'fwd_eo', 'fwd_ez', 'fwd_ce'),
            (None, 'rev_eo', 'rev_ez', 'rev_ce'))

_NAMES = (None, 'ect1', 'ect0', 'ce')


def _split_keys(kind):
    return tuple(tuple(None if n is None else f'ecn_{n}_{kind}_{d}' for n in _NAMES)
                 for d in ('fwd', 'rev'))


_SPLIT_KEYS = {SYN_PACKET: _split_keys('syn'), DATA_PACKET: _split_keys('data')}

SPLIT_FIELDS = tuple(f'ecn_{n}_{kind}_{d}' for n in ('ect0', 'ect1', 'ce')
                     for kind in ('syn', 'data') for d in ('fwd', 'rev'))


_ECN_FIELDS = {'fwd_ez': False, 'fwd_eo': False, 'fwd_ce': False,
               'rev_ez': False, 'rev_eo': False, 'rev_ce': False}


def ecn_setup(rec, ip):
    """new_flow: initialise the six 1.0 ECN flags; never vetoes the flow."""
    rec.update(_ECN_FIELDS)
    return True


def ecn_code(rec, ip, rev):
    """ip4/ip6: record the packet's ECN codepoint in its direction (1.0 fields)."""
    code = ip.traffic_class & 3
    if code and not is_icmp_error(ip):
        rec[_KEYS_10[rev][code]] = True
    return True


def ecn_split_setup(rec, ip):
    """new_flow: initialise the twelve SYN/data ECN flags; never vetoes the flow."""
    for name in SPLIT_FIELDS:
        rec[name] = False
    return True


def ecn_split_code(rec, ip, rev):
    """ip4/ip6: record the ECN codepoint separately for SYNs and for data-carrying packets."""
    code = ip.traffic_class & 3
    if code:
        kind = syn_or_data(ip)
        if kind is not None:
            rec[_SPLIT_KEYS[kind][rev][code]] = True
    return True
