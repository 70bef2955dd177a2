"""TCP chain functions (PATHspider 1.0 names and fields) and a robust TCP option parser.

Chain functions (see :mod:`pathspider.observer.chains` for the registry that documents every
field once):

``tcp_setup(rec, ip)`` (new_flow chain)
    initialises ``fwd_syn_flags``/``rev_syn_flags`` (None) and ``fwd_fin``, ``rev_fin``,
    ``fwd_rst``, ``rev_rst``, ``tcp_connected`` (False).
``tcp_handshake(rec, tcp, rev)`` (tcp chain)
    stores the full flag byte of every SYN segment in its direction's field (a later SYN
    overwrites an earlier one) until the handshake completes; ``tcp_connected`` becomes True on
    a forward-direction ACK after a forward SYN and a reverse SYN+ACK. Always returns True.
``tcp_complete(rec, tcp, rev)`` (tcp chain)
    sets the FIN/RST booleans of the segment's direction and returns False (flow complete) once
    FINs were seen in both directions or any RST was seen.

Fixes against the reference implementations (documented in ``docs/chains.md`` too):

* The fields keep their 1.0 names; 2.0's ``TCPChain`` called them ``tcp_synflags_fwd``,
  ``tcp_synflags_rev``, ``tcp_fin_fwd``, ``tcp_fin_rev``, ``tcp_rst_fwd``, ``tcp_rst_rev``
  (``tcp_connected`` is unchanged). On upstream's ``tcp_*.pcap`` the values are equal.
* 2.0's ``TCPChain`` stored a reverse-direction FIN in the *forward* field and vice versa; here
  (as in 1.0) each FIN/RST is recorded in the direction it travelled. It shows on half-closed
  flows only: in upstream's ``tfo_cookie_request.pcap`` only the client sends FIN (then RST),
  giving ``fwd_fin`` True and ``rev_fin`` False here, where 2.0's code gives
  ``tcp_fin_fwd`` False and ``tcp_fin_rev`` True.
* 2.0 kept overwriting the SYN flags with every SYN, also after the handshake completed; here
  (as in 1.0) they are frozen once ``tcp_connected`` is True, so a late retransmitted SYN or
  SYN+ACK does not replace the flags of the handshake.
* 1.0 declared the flow connected on a forward ACK after *any* reverse SYN (its own TODO called
  the test approximate); the reverse SYN must now carry ACK (a SYN+ACK), and the completing
  forward segment must be a plain ACK, not another SYN.
* The option parser of 1.0 (``_tcpoptions``) and 2.0 (``tcp_options``) kept only the last
  occurrence of a kind (issue #189), looped forever on a zero-length option and raised on a
  truncated one. :func:`iter_options` never loops or raises: a length below 2 or past the end
  of the option space ends parsing. :func:`tcp_options` keeps every occurrence, in order.

Payload lengths are computed from header lengths (IP length minus IP header minus TCP data
offset), never from the captured bytes, so Ethernet padding on short frames is not taken for
data (2.0's DSCP chain misclassified padded control segments this way).
"""

from pathspider.observer.dissector import parse_tcp_options
from pathspider.observer.icmp import is_icmp_error

TCP_CWR = 0x80
TCP_ECE = 0x40
TCP_URG = 0x20
TCP_ACK = 0x10
TCP_PSH = 0x08
TCP_RST = 0x04
TCP_SYN = 0x02
TCP_FIN = 0x01

TCP_SA = TCP_SYN | TCP_ACK
TCP_SEC = TCP_SYN | TCP_ECE | TCP_CWR
TCP_SAEC = TCP_SYN | TCP_ACK | TCP_ECE | TCP_CWR
TCP_SAE = TCP_SYN | TCP_ACK | TCP_ECE

# TCP option kinds (names as in PATHspider 1.0's TFO plugin and 2.0's TCP chain)
TO_EOL = 0
TO_NOP = 1
TO_MSS = 2
TO_WS = 3
TO_SACKOK = 4
TO_SACK = 5
TO_TS = 8
TO_MPTCP = 30
TO_FASTOPEN = 34
TO_EXP253 = 253
TO_EXPA = 254
TO_EXPB = 255
TO_EXP_FASTOPEN = (0xF9, 0x89)
TO_EXID_FASTOPEN = TO_EXP_FASTOPEN   # the 2.0 name of the same magic

# The flags the per-packet functions test, under private names: C constants when compiled
# (tcp.pxd), where the public names above stay Python objects for plugins.
_SYN, _ACK, _FIN, _RST = TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST
_FIN_RST = TCP_FIN | TCP_RST


_TCP_FIELDS = {'fwd_syn_flags': None, 'rev_syn_flags': None, 'fwd_fin': False,
               'rev_fin': False, 'fwd_rst': False, 'rev_rst': False, 'tcp_connected': False}


def tcp_setup(rec, ip):
    """new_flow: initialise the handshake and teardown fields; never vetoes the flow."""
    rec.update(_TCP_FIELDS)
    return True


def tcp_handshake(rec, tcp, rev):
    """tcp: record SYN flags per direction and notice the completed three-way handshake."""
    if rec['tcp_connected']:
        return True
    flags = tcp.flags
    if flags & _SYN:
        rec['rev_syn_flags' if rev else 'fwd_syn_flags'] = flags
    elif flags & _ACK and not rev and rec['fwd_syn_flags'] is not None:
        rev_syn = rec['rev_syn_flags']
        if rev_syn is not None and rev_syn & _ACK:
            rec['tcp_connected'] = True
    return True


def tcp_complete(rec, tcp, rev):
    """tcp: record FIN and RST per direction; False (complete) after FIN+FIN or any RST."""
    flags = tcp.flags
    if flags & _FIN_RST:
        if flags & _FIN:
            rec['rev_fin' if rev else 'fwd_fin'] = True
        if flags & _RST:
            rec['rev_rst' if rev else 'fwd_rst'] = True
    return not (rec['fwd_rst'] or rec['rev_rst'] or (rec['fwd_fin'] and rec['rev_fin']))


# ---------------------------------------------------------------------------------------------
# Options

def option_bytes(tcp):
    """The raw option space of a TCP header view (bytes after the fixed 20-byte header).

    Reads the dissector's ``options_raw`` (bounded by the data offset and the captured bytes).
    """
    return tcp.options_raw


def iter_options(buf):
    """Yield ``(kind, value)`` for every option in ``buf`` (raw option bytes), in order.

    The parsing is the dissector's (:func:`pathspider.observer.dissector.parse_tcp_options`): NOP is
    skipped, EOL ends the list, and a length byte below 2 (which would loop forever in the
    reference parsers), a missing length byte, or a length running past the end of ``buf``
    (truncated option) ends parsing silently: what was parsed before is kept.
    """
    for kind, value in parse_tcp_options(buf):
        yield kind, bytes(value)


def tcp_options(tcp):
    """Parse a TCP header view's options into ``{kind: [value, ...]}``, keeping every
    occurrence of a kind in order (duplicates matter to middlebox studies, issue #189)."""
    opts = {}
    for kind, value in iter_options(option_bytes(tcp)):
        opts.setdefault(kind, []).append(value)
    return opts


def _tcpoptions(tcp):
    """1.0-compatible view: ``{kind: value}`` with the *last* occurrence of each kind.

    Unlike 1.0's function of the same name it never loops or raises on malformed options.
    """
    return {kind: value for kind, value in iter_options(option_bytes(tcp))}


def find_option(tcp, kind):
    """Value bytes of the first option of ``kind``, or None; cheap when there are no options."""
    if tcp.doff <= 5:
        return None
    for k, value in iter_options(option_bytes(tcp)):
        if k == kind:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# Payload length from header lengths

def tcp_payload_len(tcp):
    """Number of TCP payload bytes of a segment, from header lengths.

    The dissector bounds the segment by the IP header's length fields (IPv4 total length,
    IPv6 payload length), so link-layer padding is never counted, and subtracts the TCP data
    offset (``tcp.payload_len``); this never allocates.
    """
    return tcp.payload_len


#: What :func:`syn_or_data` calls a packet.
SYN_PACKET = "syn"
DATA_PACKET = "data"


def syn_or_data(ip):
    """``SYN_PACKET`` for a TCP segment with SYN, ``DATA_PACKET`` for a data packet (a TCP
    segment with payload, or a non-TCP packet that is not an ICMP error), else None.

    The 2.0-style chains (``dscp``, ``evil``, ``ecn_split``) record a mark separately for these
    two kinds of packet. Pure TCP control segments are neither; ICMP errors attached to a flow
    are neither because their IP header is the router's, not the flow's.
    """
    tcp = ip.tcp
    if tcp is not None:
        if tcp.flags & TCP_SYN:
            return SYN_PACKET
        return DATA_PACKET if tcp.payload_len else None
    return None if is_icmp_error(ip) else DATA_PACKET
