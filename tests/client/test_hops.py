"""The analysis of a trace (pathspider.client.hops): synthetic TraceResults, no I/O.

The paths below are written as the lab builds them: routers at hops 1..5, the server at
TTL 6. A reply is ``te(...)`` (a time-exceeded with the fields its quote shows) or
``DEST`` (the destination's answer)."""
import json
import socket

from pathspider.client import hops, packets
from pathspider.client.trace import Reply, TraceResult
from pathspider.observer.dissector import parse_ip

SENT_A = {"ecn": 0, "dscp": 0, "evil": False, "tcp_flags": 0x02, "tcp_options": [2, 4, 3],
          "mss": 1460, "tfo": False, "quote_len": 52, "full": True}
SENT_B = dict(SENT_A, ecn=2)
SHORT = {"ecn": 2, "dscp": 0, "evil": False, "quote_len": 28, "full": False}
DEST = "dest"
ADDR = "198.18.{}.2"


def te(**changes):
    return ("te", changes)


def result(b, a=None, family=socket.AF_INET, sent_b=SENT_B, sent_a=SENT_A):
    """A TraceResult from ``{ttl: te(...) | DEST}`` for B (and A when given)."""
    names = ["A", "B"] if a is not None else ["B"]
    res = TraceResult(family, "198.18.64.1", names)
    res.probes["B"] = dict(sent_b)
    if a is not None:
        res.probes["A"] = dict(sent_a)
    res.packets_sent = 16 * len(names)
    res.rounds = 1
    res.max_ttl_sent = 8
    for name, spec, sent in (("A", a, sent_a), ("B", b, sent_b)):
        for ttl, what in (spec or {}).items():
            if what == DEST:
                res.replies[name][ttl] = Reply(ttl, "198.18.64.1", "destination", 0.001)
                dest = res.destination[name]
                dest["reached"] = True
                dest["ttl"] = min(ttl, dest["ttl"] or ttl)
                continue
            changes = what[1]
            fields = dict(changes.pop("_quote", sent))
            fields.update(changes)
            res.replies[name][ttl] = Reply(ttl, ADDR.format(ttl), "time-exceeded", 0.001,
                                           fields.get("quote_len", 52), fields)
    return res


def path(n_routers=5, silent=(5,), dest=6, upto=8, **per_hop):
    """Replies for TTLs 1..upto: routers answer unless silent, the destination from
    ``dest`` on (None: never). ``per_hop``: ``h3=te(ecn=0)`` overrides hop 3."""
    out = {}
    for ttl in range(1, upto + 1):
        key = f"h{ttl}"
        if key in per_hop:
            if per_hop[key] is not None:
                out[ttl] = per_hop[key]
        elif dest is not None and ttl >= dest:
            out[ttl] = DEST
        elif ttl <= n_routers and ttl not in silent:
            out[ttl] = te()
    return out



def test_clean_path_reports_nothing():
    loc = hops.analyse(result(path(), path()), ("ecn",))
    assert loc["dropped_at"] is None
    assert loc["changed_at"] == {"ecn": None}
    assert loc["unknown"] == []
    assert loc["destination"] == {"a": 6, "b": 6, "a_reached": True, "b_reached": True}
    assert loc["last_forwarded"] == 5
    assert loc["first_silent"] is None
    assert [h["hop"] for h in loc["hops"]] == [1, 2, 3, 4, 5]
    assert loc["hops"][4]["a"] == loc["hops"][4]["b"] == "silent"
    assert all(h["changed"] == [] and h["unjudged"] == [] for h in loc["hops"])
    assert loc["packets"] == 32 and loc["max_ttl"] == 8
    json.dumps(loc)


def test_drop_located_by_adjacent_evidence():
    b = path(dest=None, h3=None, h4=None)          # B answered at 1 and 2, then nothing
    loc = hops.analyse(result(b, path()), ("tcp_flags",))
    assert loc["dropped_at"] == 2
    assert loc["last_forwarded"] == 1
    assert loc["first_silent"] == 3
    assert loc["unknown"] == []
    assert loc["destination"]["b"] is None and loc["destination"]["a"] == 6
    assert [h["b"] for h in loc["hops"]] == ["answered", "answered", "silent", "silent",
                                             "silent"]


def test_drop_at_the_last_answering_hop_is_judged_against_the_destination():
    # hop 4 drops B; hop 5 is silent for everyone: the evidence after hop 4 is the
    # destination answering A at TTL 6, not adjacent -> unknown
    b = path(dest=None)
    b = {ttl: r for ttl, r in b.items() if ttl <= 4}
    loc = hops.analyse(result(b, path()), ())
    assert loc["dropped_at"] is None
    assert loc["unknown"] == ["drop: between hop 4 and hop 6 (hop 5 silent)"]
    # with a router that answers at hop 5 the drop is named
    loc = hops.analyse(result(b, path(silent=())), ())
    assert loc["dropped_at"] == 4 and loc["unknown"] == []


def test_drop_with_a_silent_hop_between_is_unknown():
    a = path(silent=(3,))
    b = {1: te(), 2: te()}
    loc = hops.analyse(result(b, a), ("tcp_flags",))
    assert loc["dropped_at"] is None
    assert loc["unknown"] == ["drop: between hop 2 and hop 4 (hop 3 silent)"]
    assert loc["first_silent"] == 4
    assert loc["last_forwarded"] == 1


def test_drop_before_the_first_router_and_without_control():
    loc = hops.analyse(result({}, path()), ())
    assert loc["dropped_at"] == 0
    assert loc["first_silent"] == 1
    loc = hops.analyse(result({1: te(), 2: te()}), ())
    assert loc["dropped_at"] is None
    assert loc["unknown"] and "no control" in loc["unknown"][0]
    assert all(h["a"] is None for h in loc["hops"])


def test_change_located():
    b = path(h4=te(ecn=0), h6=DEST)
    loc = hops.analyse(result(b, path()), ("ecn",))
    assert loc["changed_at"] == {"ecn": 3}
    assert loc["dropped_at"] is None and loc["unknown"] == []
    assert [h["changed"] for h in loc["hops"]] == [[], [], [], ["ecn"], []]


def test_change_in_the_clients_own_host_is_hop_0():
    b = {ttl: (te(ecn=0) if r != DEST else r) for ttl, r in path().items()}
    loc = hops.analyse(result(b, path()), ("ecn",))
    assert loc["changed_at"] == {"ecn": 0}


def test_change_behind_a_28_byte_quote_is_unknown():
    b = path(h2=te(_quote=SHORT), h3=te(tcp_options=[2, 4]))
    loc = hops.analyse(result(b, path()), ("tcp_options", "ecn"))
    assert loc["changed_at"] == {"tcp_options": None, "ecn": None}
    assert loc["unknown"] == ["tcp_options: changed between hop 1 and hop 3 "
                              "(hop 2's 28-byte quote does not show it)"]
    hop2 = loc["hops"][1]
    assert hop2["quote_len"] == 28 and hop2["full_quote"] is False
    assert hop2["unjudged"] == ["tcp_options"] and hop2["changed"] == []
    assert loc["hops"][2]["changed"] == ["tcp_options"]


def test_change_right_before_a_silent_hop_is_unknown():
    # the rewrite is at hop 3's forwarding, hop 4 is silent, hop 5 shows the change
    b = path(silent=(4,), h5=te(ecn=0))
    loc = hops.analyse(result(b, path(silent=(4,))), ("ecn",))
    assert loc["changed_at"] == {"ecn": None}
    assert loc["unknown"] == ["ecn: changed between hop 3 and hop 5 (hop 4 silent)"]


def test_change_after_the_last_quote_is_reported_only_when_expected():
    loc = hops.analyse(result(path(), path()), ("ecn",), expect=("ecn",))
    assert loc["changed_at"] == {"ecn": None}
    assert loc["unknown"] == ["ecn: no quote shows it changed (intact up to hop 4; "
                              "hop 5 silent)"]


def test_destination_answers_b():
    loc = hops.analyse(result(path(dest=6), path(dest=6)), ("ecn",))
    assert loc["destination"]["b"] == 6
    assert loc["dropped_at"] is None and loc["first_silent"] is None
    # a UDP destination answer without a TTL: reached, routers counted from the quotes
    res = result({1: te(), 2: te()}, {1: te(), 2: te()})
    for name in ("A", "B"):
        res.destination[name].update(reached=True, answers=3)
    loc = hops.analyse(res, ("ecn",))
    assert loc["destination"]["b_reached"] is True and loc["destination"]["b"] is None
    assert loc["dropped_at"] is None and loc["last_forwarded"] == 2


def test_ipv6_has_no_evil_bit_and_locates_alike():
    sent_b = {k: v for k, v in SENT_B.items() if k != "evil"}
    sent_a = {k: v for k, v in SENT_A.items() if k != "evil"}
    b = {1: te(), 2: te(), 3: te(ecn=0), 4: te(ecn=0)}
    res = result(b, path(), family=socket.AF_INET6, sent_b=sent_b, sent_a=sent_a)
    loc = hops.analyse(res, ("ecn", "evil"))
    assert loc["changed_at"] == {"ecn": 2, "evil": None}
    # B stops after hop 4 while A goes on: hop 5 silent, so the drop stays unknown
    assert loc["unknown"] == ["evil: not a field of the sent packet",
                              "drop: between hop 4 and hop 6 (hop 5 silent)"]
    assert loc["dropped_at"] is None


def test_a_field_sent_differently_per_ttl_is_compared_with_its_own_value():
    sent_b = {"ecn": 0, "dscp": 0, "udp_checksum": 100, "quote_len": 60, "full": True}
    res = result({1: te(udp_checksum=100), 2: te(udp_checksum=99)}, sent_b=sent_b,
                 sent_a=sent_b, a={1: te(), 2: te()})
    res.replies["B"][2].sent = {"udp_checksum": 99}
    assert hops.analyse(res, ("udp_checksum",))["changed_at"] == {"udp_checksum": None}
    res.replies["B"][2].fields["udp_checksum"] = 0
    assert hops.analyse(res, ("udp_checksum",))["changed_at"] == {"udp_checksum": 1}


# ---- packet_fields on real bytes ---------------------------------------------------------

def _syn(family=socket.AF_INET, **kw):
    src, dst = (b"\xc6\x12\x00\x02", b"\xc6\x12\x40\x01") if family == socket.AF_INET \
        else (socket.inet_pton(family, "2001:db8:0:1::2"),
              socket.inet_pton(family, "2001:db8:100::1"))
    return packets.build(packets.TCPSyn(80, **kw), src, dst, 40000)


def test_packet_fields_of_a_whole_packet():
    pkt = _syn(tos=0x02 | (10 << 2), evil=True,
               options=packets.LINUX_SYN_OPTIONS + b"\x22\x02\x01\x01")
    fields = hops.packet_fields(parse_ip(pkt, 0, len(pkt)))
    assert fields == {"ecn": 2, "dscp": 10, "evil": True, "quote_len": len(pkt),
                      "tcp_flags": 0x02, "tcp_options": [2, 4, 3, 34], "mss": 1460,
                      "tfo": True, "full": True}
    pkt6 = _syn(socket.AF_INET6, flags=0xC2)
    fields = hops.packet_fields(parse_ip(pkt6, 0, len(pkt6)))
    assert "evil" not in fields and fields["tcp_flags"] == 0xC2 and fields["full"]


def test_packet_fields_of_short_quotes():
    pkt = _syn()
    minimal = hops.packet_fields(parse_ip(pkt, 0, 28))      # RFC 792: IP header + 8 bytes
    assert minimal == {"ecn": 0, "dscp": 0, "evil": False, "quote_len": 28, "full": False}
    header_only = hops.packet_fields(parse_ip(pkt, 0, 40))  # TCP header without options
    assert header_only["tcp_flags"] == 0x02 and "tcp_options" not in header_only
    assert header_only["full"] is False
    pkt6 = _syn(socket.AF_INET6)
    assert hops.packet_fields(parse_ip(pkt6, 0, 48))["full"] is False
    udp = packets.build(packets.UDPDatagram(53, b"x" * 20, zero_checksum=True),
                        b"\xc6\x12\x00\x02", b"\xc6\x12\x40\x01", 40000)
    fields = hops.packet_fields(parse_ip(udp, 0, 28))
    assert fields["udp_checksum"] == 0 and fields["full"] is False
    assert hops.packet_fields(parse_ip(udp, 0, len(udp)))["full"] is True
