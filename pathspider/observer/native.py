"""The chain library's per-packet functions, called natively by the compiled meter.

The flow table calls every chain function as ``fn(rec, header, rev)`` (the 1.0 API). When the
meter is compiled (see :mod:`pathspider.observer.build`), a Python call costs more than most
library functions' bodies: the argument tuple, the type checks, the boolean returned as an
object. So the table calls the functions listed here as C functions instead: a chain keeps
the function objects it was given, and the table's copy of it (:func:`steps`) holds, in
their place, the function's number in these tuples. Plugins' functions, and any function not
listed, are called through Python as usual, in the same loop, with the same semantics.

Interpreted, :func:`steps` numbers nothing: there is no cheaper way to call a function.
"""

import importlib.machinery

from pathspider.observer.basic import basic_count
from pathspider.observer.dscp import dscp_extract
from pathspider.observer.ecn import ecn_code, ecn_split_code
from pathspider.observer.evil import evil_extract
from pathspider.observer.mss import mss_extract
from pathspider.observer.tcp import tcp_complete, tcp_handshake
from pathspider.observer.tfo import tfo_packet
from pathspider.observer.udp import udp_zero_checksum

#: Functions of the ip4/ip6 chains with a native call, numbered from 1 in this order.
IP_FUNCTIONS = (basic_count, ecn_code, ecn_split_code, dscp_extract, evil_extract)
#: The same for the tcp chain.
TCP_FUNCTIONS = (tcp_handshake, tcp_complete, mss_extract, tfo_packet)
#: The same for the udp chain.
UDP_FUNCTIONS = (udp_zero_checksum,)

COMPILED = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def steps(functions, native):
    """``functions`` as the flow table runs them: each one listed in ``native`` (one of the
    tuples above) replaced by its number there when this module is compiled."""
    if not COMPILED:
        return tuple(functions)
    return tuple(native.index(fn) + 1 if fn in native else fn for fn in functions)


def call_ip(number, rec, ip, rev):
    """Call ``IP_FUNCTIONS[number - 1](rec, ip, rev)``."""
    if number == 1:
        return basic_count(rec, ip, rev)
    if number == 2:
        return ecn_code(rec, ip, rev)
    if number == 3:
        return ecn_split_code(rec, ip, rev)
    if number == 4:
        return dscp_extract(rec, ip, rev)
    return evil_extract(rec, ip, rev)


def call_tcp(number, rec, tcp, rev):
    """Call ``TCP_FUNCTIONS[number - 1](rec, tcp, rev)``."""
    if number == 1:
        return tcp_handshake(rec, tcp, rev)
    if number == 2:
        return tcp_complete(rec, tcp, rev)
    if number == 3:
        return mss_extract(rec, tcp, rev)
    return tfo_packet(rec, tcp, rev)


def call_udp(number, rec, udp, rev):
    """Call ``UDP_FUNCTIONS[number - 1](rec, udp, rev)``."""
    return udp_zero_checksum(rec, udp, rev)
