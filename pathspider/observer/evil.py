"""IPv4 "evil bit" chain functions (the fields of PATHspider 2.0's ``EvilChain``).

The evil bit (RFC 3514) is the reserved flag of the IPv4 header.

``evil_setup(rec, ip)`` (new_flow chain)
    ``evilbit_syn_fwd``, ``evilbit_syn_rev``, ``evilbit_data_fwd``, ``evilbit_data_rev`` = None.
``evil_extract(rec, ip, rev)`` (ip4 chain)
    a TCP SYN segment overwrites its direction's ``syn`` field with whether the bit is set;
    other TCP segments without payload are ignored; for a TCP segment with payload, or any
    non-TCP packet, the first one per direction sets the ``data`` field. Always True.

IPv6 has no reserved bit: on IPv6 flows the fields stay None (no ip6 hook).

Fixes against the reference implementation:

* 2.0's hook fell through and returned None for the second and later data packets of a
  direction, which the Observer takes as "flow complete": flows ended early, losing their
  later packets (FIN, RST, counters). :func:`evil_extract` always returns True.
* Payload detection uses header lengths, so padded control segments are not taken for data.
* ICMP error messages are skipped, attached to a flow or not (their header is the
  router's, not the flow's); 2.0 recorded their bit as a data packet's.
"""
from pathspider.observer.tcp import DATA_PACKET, SYN_PACKET, syn_or_data


def evil_setup(rec, ip):
    """new_flow: initialise the evil-bit fields to None; never vetoes the flow."""
    rec['evilbit_syn_fwd'] = None
    rec['evilbit_syn_rev'] = None
    rec['evilbit_data_fwd'] = None
    rec['evilbit_data_rev'] = None
    return True


def evil_extract(rec, ip, rev):
    """ip4: record the IPv4 reserved bit of SYNs and of the first data packet per direction."""
    kind = syn_or_data(ip)
    if kind is SYN_PACKET:
        rec['evilbit_syn_rev' if rev else 'evilbit_syn_fwd'] = bool(ip.has_rf)
    elif kind is DATA_PACKET:
        key = 'evilbit_data_rev' if rev else 'evilbit_data_fwd'
        if rec[key] is None:
            rec[key] = bool(ip.has_rf)
    return True
