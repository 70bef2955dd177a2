"""Small stand-ins for the dissector's header views, for unit tests of chain logic.

They carry the python-libtrace attribute names the chains use and are built from real header
bytes where the chains read bytes (TCP options, payloads), so option parsing is exercised on
the same layout as on the wire.
"""
import struct


class TCP:
    """A TCP header view: flags, doff, seq_nbr, ack_nbr, data (header+payload), payload."""

    def __init__(self, flags=0, seq=0, ack=0, options=b'', payload=b'', sport=40000,
                 dport=80, doff=None):
        options = bytes(options)
        if len(options) % 4:
            options += b'\x00' * (4 - len(options) % 4)
        self.doff = doff if doff is not None else 5 + len(options) // 4
        self.flags = flags
        self.seq_nbr = seq
        self.ack_nbr = ack
        self.src_port = sport
        self.dst_port = dport
        header = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, self.doff << 4, flags,
                             65535, 0, 0) + options
        self.data = header + bytes(payload)
        self.payload = bytes(payload) if payload else None
        self.syn_flag = bool(flags & 0x02)
        self.ack_flag = bool(flags & 0x10)
        self.fin_flag = bool(flags & 0x01)
        self.rst_flag = bool(flags & 0x04)

    @property
    def options_raw(self):
        return self.data[20:self.doff * 4]

    @property
    def payload_len(self):
        return max(0, len(self.data) - self.doff * 4)


class UDP:
    def __init__(self, checksum=0x1234, payload=b'', sport=40000, dport=53):
        self.checksum = checksum
        self.payload = bytes(payload) if payload else None
        self.src_port = sport
        self.dst_port = dport


class ICMP:
    def __init__(self, type_, code=0):
        self.type = type_
        self.code = code


class IP:
    """An IPv4/IPv6 view: proto, traffic_class, has_rf, and the transport views."""

    def __init__(self, proto=6, traffic_class=0, has_rf=False, tcp=None, udp=None, icmp=None,
                 icmp6=None, version=4):
        self.proto = proto
        self.traffic_class = traffic_class
        self.has_rf = has_rf
        self.tcp = tcp
        self.udp = udp
        self.icmp = icmp
        self.icmp6 = icmp6
        self.version = version


def ip_tcp(flags=0, traffic_class=0, has_rf=False, **kw):
    return IP(proto=6, traffic_class=traffic_class, has_rf=has_rf, tcp=TCP(flags, **kw))


def ip_udp(traffic_class=0, has_rf=False, **kw):
    return IP(proto=17, traffic_class=traffic_class, has_rf=has_rf, udp=UDP(**kw))


def ip_icmp(type_, traffic_class=0, has_rf=False, version=4):
    if version == 4:
        return IP(proto=1, traffic_class=traffic_class, has_rf=has_rf, icmp=ICMP(type_))
    return IP(proto=58, traffic_class=traffic_class, icmp6=ICMP(type_), version=6)
