"""A small packet summariser for the lab's own checks (captures in its tests and tools).

Deliberately independent of pathspider's observer and dissector: the lab proves its
impairments without the code it is used to test. Handles Ethernet (with VLAN tags), Linux
cooked (SLL) and raw IP frames carrying IPv4 or IPv6 (no extension headers) with TCP, UDP,
ICMP or ICMPv6. Returns plain dicts; anything it cannot read gives None.
"""
import ipaddress
import struct

DLT_EN10MB, DLT_RAW, DLT_LINUX_SLL, DLT_RAW_101 = 1, 12, 113, 101
ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6 = 1, 6, 17, 58

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS = 0, 1, 2, 3, 4, 8
OPT_TFO, OPT_EXP = 34, 254


def _ip_payload(frame, linktype):
    """The IP packet inside a link-layer frame, or None."""
    if linktype in (DLT_RAW, DLT_RAW_101):
        return frame
    if linktype == DLT_EN10MB:
        offset, ethertype = 14, struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0
        while ethertype in (ETH_VLAN, ETH_QINQ) and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
    elif linktype == DLT_LINUX_SLL:
        offset, ethertype = 16, struct.unpack_from("!H", frame, 14)[0] if len(frame) >= 16 else 0
    else:
        return None
    return frame[offset:] if ethertype in (ETH_IPV4, ETH_IPV6) else None


def tcp_options(raw):
    """TCP option bytes as a list of (kind, data) pairs; stops at EOL or a bad length."""
    out, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            break
        out.append((kind, bytes(raw[i + 2:i + raw[i + 1]])))
        i += raw[i + 1]
    return out


def _transport(pkt, proto, data):
    if proto == PROTO_TCP and len(data) >= 20:
        sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", data)
        hlen = (off_flags >> 12) * 4
        pkt.update(sport=sport, dport=dport, seq=seq, ack=ack, flags=off_flags & 0xFF,
                   options=tcp_options(data[20:hlen]), payload=bytes(data[hlen:]))
    elif proto == PROTO_UDP and len(data) >= 8:
        sport, dport, length, checksum = struct.unpack_from("!HHHH", data)
        pkt.update(sport=sport, dport=dport, checksum=checksum, payload=bytes(data[8:]))
    elif proto in (PROTO_ICMP, PROTO_ICMP6) and len(data) >= 4:
        pkt.update(icmp_type=data[0], icmp_code=data[1], payload=bytes(data[8:]))


def parse(frame, linktype=DLT_EN10MB):
    """Summarise one captured frame as a dict, or None if it is not IPv4/IPv6.

    Keys: version, src, dst, tclass (the whole TOS / traffic-class byte), ecn, dscp, proto,
    ttl, evil (IPv4 reserved flag) and, per protocol, sport, dport, flags, seq, ack, options,
    payload (TCP); sport, dport, checksum, payload (UDP); icmp_type, icmp_code (ICMP).
    """
    ip = _ip_payload(bytes(frame), linktype)
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        tclass, frag, ttl, proto = ip[1], struct.unpack_from("!H", ip, 6)[0], ip[8], ip[9]
        pkt = {"version": 4, "src": str(ipaddress.IPv4Address(ip[12:16])),
               "dst": str(ipaddress.IPv4Address(ip[16:20])), "evil": bool(frag & 0x8000)}
        data = ip[ihl:struct.unpack_from("!H", ip, 2)[0]]
    elif version == 6 and len(ip) >= 40:
        tclass = ((ip[0] & 0x0F) << 4) | (ip[1] >> 4)
        proto, ttl = ip[6], ip[7]
        pkt = {"version": 6, "src": str(ipaddress.IPv6Address(ip[8:24])),
               "dst": str(ipaddress.IPv6Address(ip[24:40])), "evil": False}
        data = ip[40:40 + struct.unpack_from("!H", ip, 4)[0]]
    else:
        return None
    pkt.update(tclass=tclass, ecn=tclass & 0x03, dscp=tclass >> 2, proto=proto, ttl=ttl)
    _transport(pkt, proto, data)
    return pkt


def option(pkt, kind):
    """The data of TCP option ``kind`` in a parsed packet, or None if absent."""
    for k, data in pkt.get("options", ()):
        if k == kind:
            return data
    return None


def mss(pkt):
    """The MSS option value of a parsed TCP packet, or None."""
    data = option(pkt, OPT_MSS)
    return struct.unpack("!H", data)[0] if data and len(data) == 2 else None
