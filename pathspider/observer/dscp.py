"""DSCP chain functions (PATHspider 1.0 names and fields).

1.0 defined them in ``pathspider/plugins/dscp.py`` (which re-exports them from here).

``dscp_setup(rec, ip)`` (new_flow chain)
    for flows whose first packet is TCP, ``fwd_syn_dscp`` and ``rev_syn_dscp`` = None; for every
    flow ``fwd_data_dscp`` and ``rev_data_dscp`` = None.
``dscp_extract(rec, ip, rev)`` (ip4 and ip6 chains)
    the codepoint is the traffic class shifted right by two. A TCP segment with SYN overwrites
    its direction's SYN field (the last SYN wins); other TCP segments without payload are
    ignored; every other packet (TCP with payload, or non-TCP) sets the data field if it is
    still None or 0, so the first non-zero codepoint seen is kept. Always True.

Fixes against the reference implementations:

* Payload detection uses header lengths (IP length fields and the TCP data offset). 2.0
  relied on libtrace's payload object, which took the Ethernet padding of short frames for
  data, so padded pure ACKs could set the data codepoint.
* ICMP error messages (attached to a flow or not) are skipped: their codepoint is chosen by
  the router that sent them (Linux uses CS6), and 1.0 and 2.0 recorded it as the remote
  host's reply mark.
* A SYN in a flow whose first packet was not TCP cannot happen (flows are keyed by protocol),
  but if the SYN fields are absent they are created rather than raising ``KeyError``.
* The fields keep their 1.0 names; 2.0's ``DSCPChain`` called them ``dscp_mark_syn_fwd``,
  ``dscp_mark_syn_rev``, ``dscp_mark_data_fwd`` and ``dscp_mark_data_rev`` (same values). 2.0
  created its two SYN fields on every flow, None on UDP flows; here, as in 1.0, the SYN fields
  exist only on flows whose first packet is TCP (upstream's ``dscp_udp_*.pcap`` expect
  ``dscp_mark_syn_*`` None: the records here have no ``*_syn_dscp`` field).
"""
from pathspider.observer.tcp import DATA_PACKET, SYN_PACKET, syn_or_data


def dscp_setup(rec, ip):
    """new_flow: initialise the DSCP fields; never vetoes the flow."""
    if ip.tcp is not None:
        rec['fwd_syn_dscp'] = None
        rec['rev_syn_dscp'] = None
    rec['fwd_data_dscp'] = None
    rec['rev_data_dscp'] = None
    return True


def dscp_extract(rec, ip, rev):
    """ip4/ip6: record the DSCP of SYNs and of the first data packets per direction."""
    kind = syn_or_data(ip)
    if kind is SYN_PACKET:
        rec['rev_syn_dscp' if rev else 'fwd_syn_dscp'] = ip.traffic_class >> 2
    elif kind is DATA_PACKET:
        key = 'rev_data_dscp' if rev else 'fwd_data_dscp'
        if not rec[key]:
            rec[key] = ip.traffic_class >> 2
    return True
