"""UDP zero-checksum chain functions (the fields of PATHspider 2.0's ``UDPChain``).

``udp_setup(rec, ip)`` (new_flow chain)
    ``udp_zero_checksum_fwd``, ``udp_zero_checksum_rev`` = None.
``udp_zero_checksum(rec, udp, rev)`` (udp chain)
    sets its direction's field to whether the datagram's checksum field is zero, so the field
    describes the last datagram seen in that direction (as in 2.0). Always True.

Used by the UDP zero-checksum measurement: a path that drops zero-checksum datagrams shows
``udp_zero_checksum_fwd`` True with no reverse datagram, or only non-zero forward datagrams.
"""


def udp_setup(rec, ip):
    """new_flow: initialise the zero-checksum fields to None; never vetoes the flow."""
    rec['udp_zero_checksum_fwd'] = None
    rec['udp_zero_checksum_rev'] = None
    return True


def udp_zero_checksum(rec, udp, rev):
    """udp: record whether this direction's latest datagram had a zero checksum."""
    rec['udp_zero_checksum_rev' if rev else 'udp_zero_checksum_fwd'] = udp.checksum == 0
    return True
