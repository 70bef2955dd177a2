"""TCP Fast Open chain functions (PATHspider 1.0 ``_tfosetup``/``_tfopacket`` semantics).

1.0 defined these as private functions of ``pathspider/plugins/tfo.py``; they are public here
(``tfo_setup``, ``tfo_packet``) and the 1.0 private names remain as aliases.

``tfo_setup(rec, ip)`` (new_flow chain)
    ``tfo_synkind``, ``tfo_ackkind``, ``tfo_synclen``, ``tfo_ackclen``, ``tfo_seq``,
    ``tfo_dlen``, ``tfo_ack`` = 0.
``tfo_packet(rec, tcp, rev)`` (tcp chain)
    ignores segments without SYN. A SYN without ACK that carries a Fast Open option records
    the option kind (34 for the IANA option, or the experimental kind carrying magic ``F9 89``),
    the cookie length (0 = cookie request), the sequence number and the SYN's payload length,
    and resets ``tfo_ack``. A SYN+ACK, once a Fast Open SYN was seen, records its
    acknowledgement number and, if it carries a Fast Open option, that option's kind and
    cookie length. Data on the SYN was acknowledged when
    ``tfo_ack == (tfo_seq + tfo_dlen + 1) % 2**32``. Always True.

Fixes against the reference implementations:

* 1.0 and 2.0 read the cookie of the experimental option B (kind 255) from option A's bytes
  and raised when only option B was present. Each experimental kind (253, 254 = ``TO_EXPA``,
  255 = ``TO_EXPB``) is now checked on its own bytes, and only with the ``F9 89`` magic.
* The option parser never loops on a zero-length option nor raises on a truncated one (see
  :func:`pathspider.observer.tcp.iter_options`).
* ``tfo_dlen`` comes from header lengths, not from the captured bytes, so Ethernet padding or
  a truncated capture does not change it.
* When a SYN carries both the IANA and an experimental option, the IANA option wins (as in
  1.0); the first occurrence of a repeated option is used.
"""
from pathspider.observer.tcp import (TCP_ACK, TCP_SYN, TO_EXP253, TO_EXP_FASTOPEN, TO_EXPA,
                                     TO_EXPB, TO_FASTOPEN, iter_options, option_bytes,
                                     tcp_payload_len)

_MAGIC = bytes(TO_EXP_FASTOPEN)
_EXPERIMENTAL = (TO_EXP253, TO_EXPA, TO_EXPB)

TFO_FIELDS = ('tfo_synkind', 'tfo_ackkind', 'tfo_synclen', 'tfo_ackclen', 'tfo_seq',
              'tfo_dlen', 'tfo_ack')


def tfo_cookie(tcp):
    """``(kind, cookie_bytes)`` of the segment's Fast Open option, or ``(0, None)``.

    The IANA option (kind 34) is preferred; otherwise the first experimental option (kinds
    253, 254, 255) whose value starts with the ``F9 89`` magic.
    """
    if tcp.doff <= 5:
        return 0, None
    experimental = None
    for kind, value in iter_options(option_bytes(tcp)):
        if kind == TO_FASTOPEN:
            return kind, value
        if experimental is None and kind in _EXPERIMENTAL and value[:2] == _MAGIC:
            experimental = (kind, value[2:])
    return experimental if experimental is not None else (0, None)


def tfo_setup(rec, ip):
    """new_flow: initialise the seven TFO fields to 0; never vetoes the flow."""
    for name in TFO_FIELDS:
        rec[name] = 0
    return True


def tfo_packet(rec, tcp, rev):
    """tcp: record Fast Open options, cookie lengths and sequence numbers of SYN and SYN+ACK."""
    flags = tcp.flags
    if not flags & TCP_SYN:
        return True
    if not flags & TCP_ACK:
        kind, cookie = tfo_cookie(tcp)
        if kind:
            rec['tfo_synkind'] = kind
            rec['tfo_synclen'] = len(cookie)
            rec['tfo_seq'] = tcp.seq_nbr
            rec['tfo_dlen'] = tcp_payload_len(tcp)
            rec['tfo_ack'] = 0
    elif rec['tfo_synkind']:
        rec['tfo_ack'] = tcp.ack_nbr
        kind, cookie = tfo_cookie(tcp)
        if kind:
            rec['tfo_ackkind'] = kind
            rec['tfo_ackclen'] = len(cookie)
    return True


# PATHspider 1.0 private names (plugins/tfo.py), kept for code written against 1.0.
_tfosetup = tfo_setup
_tfopacket = tfo_packet
_tfocookie = tfo_cookie
