"""TCP Maximum Segment Size chain functions (the fields of PATHspider 2.0's ``MSSChain``).

``mss_setup(rec, ip)`` (new_flow chain)
    ``mss_len_fwd``, ``mss_len_rev``, ``mss_value_fwd``, ``mss_value_rev`` = None.
``mss_extract(rec, tcp, rev)`` (tcp chain)
    on a SYN segment carrying an MSS option (kind 2): ``mss_len_<dir>`` is the option's length
    byte (4 when well formed) and ``mss_value_<dir>`` the advertised MSS. A later SYN with an
    MSS option overwrites. Always True.

Fixes against the reference implementation:

* 2.0 turned an option value of any size into an integer (a malformed 3-byte value became a
  24-bit "MSS"). The length is still reported as seen, but the value is None unless the
  option carries exactly two bytes: on upstream's ``mss_3bytes.pcap`` (option bytes
  ``02 05 00 05 b4``) both give ``mss_len_fwd`` 5, 2.0 gives ``mss_value_fwd`` 1460 and
  this chain None.
* With duplicated MSS options the first one is reported (2.0 kept the last, issue #189), and
  malformed option lists never loop or raise.
"""
from pathspider.observer.tcp import TCP_SYN, TO_MSS, find_option


def mss_setup(rec, ip):
    """new_flow: initialise the MSS fields to None; never vetoes the flow."""
    rec['mss_len_fwd'] = None
    rec['mss_len_rev'] = None
    rec['mss_value_fwd'] = None
    rec['mss_value_rev'] = None
    return True


def mss_extract(rec, tcp, rev):
    """tcp: record the MSS option of SYN segments per direction."""
    if not tcp.flags & TCP_SYN:
        return True
    value = find_option(tcp, TO_MSS)
    if value is not None:
        d = 'rev' if rev else 'fwd'
        rec['mss_len_' + d] = len(value) + 2
        rec['mss_value_' + d] = int.from_bytes(value, 'big') if len(value) == 2 else None
    return True
