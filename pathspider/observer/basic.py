"""The basic chain (1.0 ``basic_flow``/``basic_count``): addresses, ports, protocol and counters.

``basic_flow(rec, ip)`` (new_flow chain)
    ``sip``, ``dip``, ``proto``, ``sp``, ``dp`` of the flow's first packet and zeroed
    ``pkt_fwd``, ``pkt_rev``, ``oct_fwd``, ``oct_rev``. The merger matches flows to results
    on ``dip`` and ``sp``, so every measurement's Observer needs it.
``basic_count(rec, ip, rev)`` (ip4 and ip6 chains)
    counts packets and IP-layer octets per direction.

PATHspider 1.0 defined both in ``pathspider.observer``, which re-exports them from here.
PATHspider 2.0's ``BasicChain`` had the same fields and logic.

Fixes and differences against the reference implementations:

* ``oct_fwd``/``oct_rev`` add the IP length the header states (IPv4 total length, IPv6
  payload length + 40; the captured length only when the header says 0). Both references
  added python-libtrace's ``ip.size``, the captured bytes from the IP header to the end of
  the frame: a short frame's Ethernet padding was counted as IP bytes, and a truncated
  capture counted only what was captured. Upstream's ``basic_ipv4_non_udp_tcp.pcap`` (11
  VRRP packets of 40 IP bytes, each padded to the 46-byte Ethernet minimum) gives
  ``oct_fwd`` 440 here and 506 in 2.0. Packet counts, addresses, protocol and ports are the
  same.
"""

from pathspider.observer.dissector import _IPView, view_endpoints


def extract_ports(ip):
    """``(src_port, dst_port)`` of a TCP or UDP packet, else ``(None, None)``."""
    tcp = ip.tcp
    if tcp is not None:
        return tcp.src_port, tcp.dst_port
    udp = ip.udp
    if udp is not None:
        return udp.src_port, udp.dst_port
    return None, None


_ZERO_COUNTERS = {"pkt_fwd": 0, "pkt_rev": 0, "oct_fwd": 0, "oct_rev": 0}


def _endpoints_without_shortcut(rec, ip):
    """basic_flow's fields for a view without ``endpoints`` (not from our dissector)."""
    rec["sip"] = str(ip.src_prefix)
    rec["dip"] = str(ip.dst_prefix)
    rec["sp"], rec["dp"] = extract_ports(ip)


def basic_flow(rec, ip):
    """new_flow chain: addresses, protocol and ports of the first packet; zero counters."""
    if isinstance(ip, _IPView):  # the dissector's shortcut for str(ip.src_prefix), ...
        view = ip
        rec["sip"], rec["dip"], rec["sp"], rec["dp"] = view_endpoints(view)
        rec["proto"] = view.proto
    else:
        _endpoints_without_shortcut(rec, ip)
        rec["proto"] = ip.proto
    rec.update(_ZERO_COUNTERS)
    return True


def basic_count(rec, ip, rev):
    """ip4/ip6 chain: count packets and IP-layer octets (``ip.size``) per direction."""
    if rev:
        rec["pkt_rev"] += 1
        rec["oct_rev"] += ip.size
    else:
        rec["pkt_fwd"] += 1
        rec["oct_fwd"] += ip.size
    return True
