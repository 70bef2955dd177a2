"""Flow table semantics (1.0): keys, directions, veto, short-circuit, packet-clock timers,
ICMP linking, fragments, robustness, and a fresh SYN on a reused port starting a new flow.
Packets are crafted and fed one by one (raw IP link unless a test says otherwise)."""
import collections

import pytest
from hypothesis import given, settings, strategies as st

from core_craft import mk
from pathspider.observer.flowtable import FlowTable, reverse_key
from pathspider.observer import basic_count, basic_flow
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup

C4, S4, C6, S6 = mk.C4, mk.S4, mk.C6, mk.S6
ROUTER4, ROUTER6 = "198.18.0.254", "2001:db8::fe"
RAW = 12


def make_table(idle=30, expiry=5, **chains):
    chains.setdefault("new_flow", [basic_flow])
    chains.setdefault("ip4", [basic_count])
    chains.setdefault("ip6", [basic_count])
    return FlowTable(RAW, chains, idle_timeout=idle, expiry_timeout=expiry)


def feed(table, packets):
    for ts, pkt in packets:
        table.process_packet(pkt, ts)


def drain(table):
    out, table.emitted = table.emitted, []
    return out


def flushed(table):
    table.flush()
    return drain(table)


def by_ports(recs):
    return {(r["sp"], r["dp"]): r for r in recs}


def test_bidirectional_flow_and_first_packet_direction():
    t = make_table()
    feed(t, [(1.0, mk.tcp4(S4, C4, 80, 5000, mk.SYN | mk.ACK)),     # server speaks first
             (1.1, mk.tcp4(C4, S4, 5000, 80, mk.ACK)),
             (1.2, mk.tcp4(S4, C4, 80, 5000, mk.ACK, payload=b"x"))])
    (rec,) = flushed(t)
    assert (rec["sip"], rec["dip"], rec["sp"], rec["dp"], rec["proto"]) == (S4, C4, 80, 5000, 6)
    assert (rec["pkt_fwd"], rec["pkt_rev"]) == (2, 1)
    assert (rec["oct_fwd"], rec["oct_rev"]) == (40 + 41, 40)
    assert (rec["first"], rec["last"]) == (1.0, 1.2)


def test_five_tuple_and_three_tuple_keys():
    t = make_table()
    feed(t, [
        (1.0, mk.tcp4(C4, S4, 5000, 80, mk.SYN)),
        (1.0, mk.tcp4(C4, S4, 5001, 80, mk.SYN)),                      # other port
        (1.0, mk.udp4(C4, S4, 5000, 80)),                              # other protocol
        (1.0, mk.ip4(C4, S4, 132, b"\x13\x88\x00\x50" + bytes(8))),    # SCTP 5000->80
        (1.0, mk.ip4(S4, C4, 132, b"\x00\x50\x13\x88" + bytes(8))),    # SCTP reply
        (1.0, mk.ip4(C4, S4, 132, b"\x13\x89\x00\x50" + bytes(8))),    # SCTP other port
        (1.0, mk.ip4(C4, S4, 136, b"\x13\x88\x00\x50" + bytes(4))),    # UDP-Lite
        (1.0, mk.ip6(C6, S6, 136, b"\x13\x88\x00\x50" + bytes(4))),    # UDP-Lite over IPv6
        (1.0, mk.ip4(C4, S4, 47, b"\x00\x00\x08\x00" + bytes(8))),     # GRE: 3-tuple
        (1.0, mk.ip4(S4, C4, 47, b"\x11\x11\x08\x00" + bytes(8))),     # GRE reply, same flow
    ])
    recs = flushed(t)
    assert len(recs) == 8
    counts = collections.Counter(r["proto"] for r in recs)
    assert counts == {6: 2, 17: 1, 132: 2, 136: 2, 47: 1}
    gre = [r for r in recs if r["proto"] == 47][0]
    assert (gre["pkt_fwd"], gre["pkt_rev"]) == (1, 1)
    sctp = [r for r in recs if r["proto"] == 132]
    assert sorted((r["pkt_fwd"], r["pkt_rev"]) for r in sctp) == [(1, 0), (1, 1)]


def test_reverse_key():
    k4 = bytes(range(12))
    assert reverse_key(reverse_key(k4)) == k4
    assert reverse_key(k4) == k4[4:8] + k4[0:4] + k4[10:12] + k4[8:10]
    k6 = bytes(range(32))
    assert reverse_key(k6) == k6[16:] + k6[:16]


def test_veto_ignores_the_flow_until_idle():
    calls = []

    def no_ssh(rec, ip):
        calls.append(ip.tcp.dst_port if ip.tcp else ip.tcp)
        return ip.tcp is None or ip.tcp.dst_port != 22

    def count(rec, ip, rev):
        rec["n"] = rec.get("n", 0) + 1
        return True

    t = make_table(new_flow=[no_ssh, basic_flow], ip4=[count])
    feed(t, [(1.0, mk.tcp4(C4, S4, 5000, 22, mk.SYN)),
             (1.5, mk.tcp4(S4, C4, 22, 5000, mk.SYN | mk.ACK)),
             (2.0, mk.tcp4(C4, S4, 5001, 80, mk.SYN)),
             (2.5, mk.tcp4(C4, S4, 5000, 22, mk.ACK))])
    assert calls == [22, 80]
    assert t.ct.ignored == 1 and t.ct.flows == 1
    # after idle_timeout without packets the veto is forgotten and the flow is judged again
    feed(t, [(40.0, mk.tcp4(C4, S4, 5000, 22, mk.ACK))])
    assert calls == [22, 80, 22]
    recs = drain(t) + flushed(t)
    assert [r["dp"] for r in recs] == [80]
    assert recs[0]["n"] == 1 and "sip" in recs[0]


def test_short_circuit_stops_later_functions_and_chains():
    calls = []

    def first(rec, ip, rev):
        calls.append("ip-first")
        return not (ip.tcp and ip.tcp.rst_flag)

    def second(rec, ip, rev):
        calls.append("ip-second")
        return True

    def on_tcp(rec, tcp, rev):
        calls.append("tcp")
        return True

    t = make_table(new_flow=[], ip4=[first, second], tcp=[on_tcp])
    feed(t, [(10.2, mk.tcp4(C4, S4, 5000, 80, mk.SYN))])
    assert calls == ["ip-first", "ip-second", "tcp"]
    calls.clear()
    feed(t, [(10.3, mk.tcp4(S4, C4, 80, 5000, mk.RST))])
    assert calls == ["ip-first"]               # nothing after the first falsy return
    calls.clear()
    # the completed flow keeps receiving packets (and chain calls) for expiry_timeout...
    feed(t, [(14.0, mk.tcp4(C4, S4, 5000, 80, mk.ACK))])
    assert calls == ["ip-first", "ip-second", "tcp"]
    assert drain(t) == []
    # ...and is emitted when the packet clock reaches bin ceil(10.3) + 5 = 16
    feed(t, [(15.0, mk.udp4(C4, S4, 1, 2))])
    assert drain(t) == []
    feed(t, [(15.01, mk.udp4(C4, S4, 1, 2))])
    (rec,) = drain(t)
    assert (rec["first"], rec["last"]) == (10.2, 14.0)
    assert set(rec) == {"first", "last"}       # no internal key leaks


def test_none_return_counts_as_falsy_like_1_0():
    def forgetful(rec, ip, rev):
        rec["seen"] = True                     # returns None

    t = make_table(new_flow=[], ip4=[forgetful], expiry=1)
    feed(t, [(1.5, mk.udp4(C4, S4, 1, 2)), (3.01, mk.udp4(C4, S4, 3, 4))])
    assert [r["first"] for r in drain(t)] == [1.5]


def test_idle_timeout_on_the_packet_clock_is_deterministic():
    t = make_table(idle=30, expiry=5)
    feed(t, [(100.2, mk.udp4(C4, S4, 1, 2)),          # A: idle bin ceil(130.2) = 131
             (101.0, mk.udp4(C4, S4, 3, 4)),          # B
             (120.0, mk.udp4(C4, S4, 3, 4))])         # B again: idle moves to 150
    feed(t, [(130.9, mk.udp4(C4, S4, 9, 9))])
    assert drain(t) == []
    feed(t, [(130.95, mk.udp4(C4, S4, 9, 9))])        # clock 131: A completes (expiry 136)
    feed(t, [(133.0, mk.udp4(S4, C4, 2, 1))])         # still joins A, in reverse
    feed(t, [(135.0, mk.udp4(C4, S4, 9, 9))])
    assert drain(t) == []
    feed(t, [(135.5, mk.udp4(C4, S4, 9, 9))])         # clock 136: A emitted
    (a,) = drain(t)
    assert (a["sp"], a["pkt_fwd"], a["pkt_rev"], a["last"]) == (1, 1, 1, 133.0)
    feed(t, [(149.5, mk.udp4(C4, S4, 9, 9))])         # clock 150: B idle, expires at 155
    feed(t, [(154.0, mk.udp4(C4, S4, 9, 9))])
    assert drain(t) == []
    feed(t, [(154.01, mk.udp4(C4, S4, 9, 9))])        # ceil(154.01) = 155: emitted
    (b,) = drain(t)
    assert (b["sp"], b["pkt_fwd"], b["last"]) == (3, 2, 120.0)


def test_a_clock_jump_runs_every_due_bin_in_order():
    t = make_table(idle=30, expiry=5)
    feed(t, [(100.0, mk.udp4(C4, S4, 1, 2)), (110.0, mk.udp4(C4, S4, 3, 4)),
             (5000.0, mk.udp4(C4, S4, 5, 6))])
    assert [r["sp"] for r in drain(t)] == [1, 3]
    assert [r["sp"] for r in flushed(t)] == [5]


def test_flush_emits_completed_flows_first_then_active_ones():
    def rst_completes(rec, tcp, rev):
        return not tcp.rst_flag

    t = make_table(tcp=[rst_completes])
    feed(t, [(1.0, mk.tcp4(C4, S4, 1, 80, mk.SYN)),
             (1.1, mk.tcp4(C4, S4, 2, 80, mk.SYN)),
             (1.2, mk.tcp4(S4, C4, 80, 2, mk.RST)),
             (1.3, mk.tcp4(C4, S4, 3, 80, mk.SYN))])
    assert [r["sp"] for r in flushed(t)] == [2, 1, 3]
    assert t.tabs[6] == {} and t.heap == [] and t.bins == {}


def test_records_have_no_internal_keys():
    t = make_table()
    feed(t, [(1.0 + i, mk.tcp4(C4, S4, 1000 + i, 80, mk.SYN)) for i in range(40)])
    recs = drain(t) + flushed(t)
    assert len(recs) == 40
    for rec in recs:
        assert set(rec) == {"first", "last", "sip", "dip", "proto", "sp", "dp", "pkt_fwd",
                            "pkt_rev", "oct_fwd", "oct_rev"}


def test_icmp4_error_is_a_reverse_packet_of_the_quoted_flow():
    seen = []

    def on_icmp(rec, ip, q, rev):
        seen.append((ip.icmp.type, str(q.src_prefix), q.proto, rev))
        return True

    def on_l4(rec, ip, rev):
        seen.append(("l4", ip.proto, rev))
        return True

    def on_tcp(rec, tcp, rev):
        seen.append(("tcp", rev))
        return True

    t = make_table(icmp4=[on_icmp], l4=[on_l4], tcp=[on_tcp])
    syn = mk.tcp4(C4, S4, 5000, 80, mk.SYN)
    feed(t, [(1.0, syn), (1.1, mk.ip4(ROUTER4, C4, 1, mk.icmp(3, 1, payload=syn[:28])))])
    (rec,) = flushed(t)
    assert (rec["proto"], rec["pkt_fwd"], rec["pkt_rev"]) == (6, 1, 1)
    assert seen == [("tcp", False), (3, C4, 6, True), ("l4", 1, True)]
    assert t.ct.icmp_linked == 1


def test_icmp6_error_is_a_reverse_packet_of_the_quoted_flow():
    got = []
    t = make_table(icmp6=[lambda rec, ip, q, rev: got.append((q.udp.dst_port, rev)) or True])
    u = mk.udp6(C6, S6, 4000, 53, b"query")
    err = mk.ip6(ROUTER6, C6, 58, mk.icmp(1, 4, payload=u))
    feed(t, [(1.0, u), (1.2, err)])
    (rec,) = flushed(t)
    assert (rec["proto"], rec["sp"], rec["pkt_fwd"], rec["pkt_rev"]) == (17, 4000, 1, 1)
    assert got == [(53, True)]


def test_icmp_error_before_its_flow_and_short_quotations():
    syn = mk.tcp4(C4, S4, 6000, 80, mk.SYN)
    t = make_table()
    feed(t, [
        # an error about a flow not seen yet: the flow starts in the ICMP's direction
        (1.0, mk.ip4(ROUTER4, C4, 1, mk.icmp(11, 0, payload=syn[:28]))),
        (1.1, syn),
        # a quotation of 20 bytes (no ports): keyed by the ICMP packet's own 3-tuple
        (1.2, mk.ip4(ROUTER4, C4, 1, mk.icmp(11, 0, payload=syn[:20]))),
        (1.3, mk.ip4(ROUTER4, C4, 1, mk.icmp(3, 0, payload=syn[:27]))),
        # an echo request/reply pair: 3-tuple, both directions
        (1.4, mk.ip4(C4, S4, 1, mk.icmp(8, 0, b"\0\1\0\1"))),
        (1.5, mk.ip4(S4, C4, 1, mk.icmp(0, 0, b"\0\1\0\1"))),
    ])
    recs = flushed(t)
    # as in 1.0, basic_flow describes the first packet: the ICMP error (protocol 1, no ports)
    assert sorted((r["sip"], r["dip"], r["proto"], r["pkt_fwd"], r["pkt_rev"]) for r in recs) == [
        (C4, S4, 1, 1, 1),                  # echo request and reply
        (ROUTER4, C4, 1, 1, 1),             # the TCP flow: ICMP first, then the SYN (reverse)
        (ROUTER4, C4, 1, 2, 0),             # the two short quotations, by 3-tuple
    ]
    assert t.ct.icmp_linked == 1


def test_fragments_follow_their_first_fragment():
    seg = mk.udp(7000, 53, b"f" * 64)
    first = mk.ip4(C4, S4, 17, seg[:32], flags=1, ident=77)
    later = mk.ip4(C4, S4, 17, seg[32:], frag=4, ident=77)
    orphan = mk.ip4(C4, S4, 17, seg[32:], frag=4, ident=78)       # first fragment never seen
    seg6 = mk.tcp(7001, 80, mk.PSH | mk.ACK, payload=b"g" * 64)
    first6 = mk.ip6(C6, S6, 44, seg6[:40], exts=mk.frag6(6, 0, more=True, ident=5))
    later6 = mk.ip6(C6, S6, 44, seg6[40:], exts=mk.frag6(6, 5, ident=5))
    t = make_table()
    feed(t, [(1.0, first), (1.1, later), (1.2, orphan), (1.3, first6), (1.4, later6)])
    recs = flushed(t)
    by = {(r["proto"], r["sp"]): r for r in recs}
    assert by[(17, 7000)]["pkt_fwd"] == 2 and by[(6, 7001)]["pkt_fwd"] == 2
    assert by[(17, None)]["pkt_fwd"] == 1                          # 3-tuple flow
    assert len(recs) == 3 and t.ct.fragments == 3


def test_ipv6_extension_headers_do_not_change_the_key():
    seg = mk.tcp(8000, 80, mk.SYN, src=C6, dst=S6)
    t = make_table()
    feed(t, [(1.0, mk.ip6(C6, S6, 0, seg, exts=mk.ext(60) + mk.ext(6))),
             (1.1, mk.tcp6(S6, C6, 80, 8000, mk.SYN | mk.ACK)),
             (1.2, mk.ip6(C6, S6, 60, mk.tcp(8000, 80, mk.ACK), exts=mk.ext(6)))])
    (rec,) = flushed(t)
    assert (rec["proto"], rec["sp"], rec["dp"], rec["pkt_fwd"], rec["pkt_rev"]) == (
        6, 8000, 80, 2, 1)


def test_bad_packets_are_counted_and_skipped():
    good = mk.tcp4(C4, S4, 1, 2, mk.SYN)
    t = make_table()
    feed(t, [(1.0, good[:10]),                              # short IP header
             (1.0, good[:30]),                              # short TCP header
             (1.0, b"\x4f" + good[1:2] + b"\0\x64" + good[4:]),  # options not captured
             (1.0, good[:2] + b"\0\x1a" + good[4:]),        # total length 26 < TCP header
             (1.0, b"\x44" + good[1:]),                     # IHL 4: malformed
             (1.0, b"\x30" + good[1:]),                     # version 3: not IP
             (1.0, good)])
    assert (t.ct.packets, t.ct.short, t.ct.malformed, t.ct.nonip) == (7, 3, 2, 1)
    assert len(flushed(t)) == 1


def test_a_raising_chain_is_counted_and_the_table_goes_on(caplog):
    def buggy(rec, tcp, rev):
        if tcp.syn_flag:
            raise KeyError("boom")
        return True

    t = make_table(tcp=[buggy])
    feed(t, [(1.0, mk.tcp4(C4, S4, 1, 2, mk.SYN)), (1.1, mk.tcp4(C4, S4, 1, 2, mk.ACK))])
    assert t.ct.chain_errors == 1
    assert "packet 1" in caplog.text and "boom" in caplog.text
    assert "in a chain function buggy (test_flowtable.py:" in caplog.text
    (rec,) = flushed(t)
    assert rec["pkt_fwd"] == 2                  # ip chain ran before the raising tcp chain


def test_udp_and_l4_chains_get_the_right_views():
    got = []
    t = make_table(udp=[lambda rec, udp, rev: got.append(("udp", udp.dst_port, rev)) or True],
                   l4=[lambda rec, ip, rev: got.append(("l4", ip.proto, rev)) or True],
                   tcp=[lambda rec, tcp, rev: got.append(("tcp", tcp.dst_port, rev)) or True])
    feed(t, [(1.0, mk.udp4(C4, S4, 1, 53)), (1.1, mk.udp4(S4, C4, 53, 1)),
             (1.2, mk.ip4(C4, S4, 47, bytes(8))), (1.3, mk.tcp6(C6, S6, 2, 80, mk.SYN))])
    assert got == [("udp", 53, False), ("udp", 1, True), ("l4", 47, False), ("tcp", 80, False)]


# ------------------------------------------------------------------ property tests

ENDPOINTS = [
    (C4, S4, 40000, 80, 6), (C4, S4, 40001, 80, 6), (C4, "198.18.64.11", 40000, 53, 17),
    (C6, S6, 40002, 80, 6), (C6, S6, 40003, 53, 17), (C4, S4, None, None, 47),
]


def _packet(ep, reverse, payload):
    c, s, cp, sp, proto = ep
    if reverse:
        c, s, cp, sp = s, c, sp, cp
    v6 = ":" in c
    if proto == 6:
        return (mk.tcp6 if v6 else mk.tcp4)(c, s, cp, sp, mk.ACK, payload=payload)
    if proto == 17:
        return (mk.udp6 if v6 else mk.udp4)(c, s, cp, sp, payload)
    return mk.ip4(c, s, 47, b"\0\0\x08\0" + payload)


packet_events = st.lists(st.tuples(st.integers(0, len(ENDPOINTS) - 1), st.booleans(),
                                   st.binary(max_size=20), st.integers(-1, 80)),
                         max_size=60)


@settings(max_examples=150, deadline=None)
@given(packet_events)
def test_counts_add_up_to_what_was_read(events):
    t = make_table()
    expected = collections.defaultdict(lambda: [0, 0])
    first_dir = {}
    bad = 0
    for i, (epi, reverse, payload, cut) in enumerate(events):
        pkt = _packet(ENDPOINTS[epi], reverse, payload)
        hdr = 20 if pkt[0] >> 4 == 4 else 40
        l4min = {6: 20, 17: 8, 47: 0}[ENDPOINTS[epi][4]]
        if 0 <= cut < len(pkt):
            pkt = pkt[:cut]
            if cut < hdr + l4min:
                bad += 1
                t.process_packet(pkt, 1.0 + i * 0.1)
                continue
        t.process_packet(pkt, 1.0 + i * 0.1)
        first_dir.setdefault(epi, reverse)
        expected[epi][reverse != first_dir[epi]] += 1
    recs = flushed(t)
    ct = t.ct
    assert ct.packets == len(events)
    assert ct.short + ct.malformed + ct.nonip == bad
    assert sum(r["pkt_fwd"] + r["pkt_rev"] for r in recs) == len(events) - bad
    assert len(recs) == ct.flows == len(expected)
    got = sorted([r["pkt_fwd"], r["pkt_rev"]] for r in recs)
    assert got == sorted(expected.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=30))
def test_random_packets_never_raise(blobs):
    t = make_table(tcp=[lambda rec, tcp, rev: bool(tcp.flags | 1)],
                   udp=[lambda rec, udp, rev: udp.payload is None or True])
    for i, blob in enumerate(blobs):
        t.process_packet(blob, float(i))
        t.process_packet(b"\x45" + blob, float(i))
        t.process_packet(b"\x60" + blob, float(i))
    recs = flushed(t)
    ct = t.ct
    assert ct.packets == 3 * len(blobs)
    accepted = ct.packets - ct.short - ct.malformed - ct.nonip
    assert sum(r["pkt_fwd"] + r["pkt_rev"] for r in recs) == accepted
    assert ct.chain_errors == 0


def test_a_raising_new_flow_function_drops_the_packet_not_the_observer():
    def picky(rec, ip):
        if ip.tcp.syn_flag:
            raise RuntimeError("no SYNs today")
        return True

    t = make_table(new_flow=[picky, basic_flow])
    feed(t, [(1.0, mk.tcp4(C4, S4, 1, 2, mk.SYN)), (1.1, mk.tcp4(C4, S4, 1, 2, mk.ACK)),
             (1.2, mk.tcp4(S4, C4, 2, 1, mk.ACK))])
    assert t.ct.chain_errors == 1 and t.ct.flows == 1
    (rec,) = flushed(t)
    assert (rec["first"], rec["pkt_fwd"], rec["pkt_rev"]) == (1.1, 1, 1)


# ------------------------------------------------------------------ fast path == general path

def _run_linktype(packets, linktype, wrap, chains):
    t = FlowTable(linktype, chains)
    for ts, pkt in packets:
        t.process_packet(wrap(pkt), ts)
    t.flush()
    return t


def _chains_with_everything():
    from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup

    def payload_seen(rec, l4, rev):
        rec.setdefault("payloads", []).append((rev, bytes(l4.payload or b"")))
        return True

    def ip_seen(rec, ip, rev):
        rec.setdefault("ips", []).append((rev, ip.size, ip.traffic_class, ip.proto, ip.ttl,
                                          len(ip.data), ip.seconds))
        return True

    return {"new_flow": [basic_flow, tcp_setup], "ip4": [basic_count, ip_seen],
            "ip6": [basic_count, ip_seen], "tcp": [tcp_handshake, tcp_complete, payload_seen],
            "udp": [payload_seen]}


@settings(max_examples=100, deadline=None)
@given(packet_events)
def test_fast_path_and_general_path_agree(events):
    packets = []
    for i, (epi, reverse, payload, cut) in enumerate(events):
        pkt = _packet(ENDPOINTS[epi], reverse, payload)
        if 0 <= cut < len(pkt) and cut % 3 == 0:
            pkt = pkt[:cut]
        packets.append((1.0 + i * 0.7, pkt))
    chains = _chains_with_everything()
    fast = _run_linktype(packets, 1, lambda p: mk.eth(p, pad=False), chains)
    general = _run_linktype(packets, 1, lambda p: mk.eth(p, vlans=((0x8100, 7),), pad=False),
                            chains)
    raw = _run_linktype(packets, RAW, lambda p: p, chains)
    assert general.ct.slowpath == general.ct.packets
    for table in (fast, raw):
        assert table.emitted == general.emitted
        a, b = table.ct.as_dict(), general.ct.as_dict()
        a.pop("slowpath"), b.pop("slowpath")
        assert a == b


def test_plain_tcp_and_udp_take_the_fast_path():
    packets = [(1.0, mk.tcp4(C4, S4, 1, 2, mk.SYN)), (1.1, mk.tcp6(C6, S6, 1, 2, mk.SYN)),
               (1.2, mk.udp4(C4, S4, 3, 4, b"x" * 10)), (1.3, mk.udp6(C6, S6, 3, 4, b"y" * 20))]
    for linktype in (1, 113, 276, 12, 0, 108):
        t = _run_linktype(packets, linktype, mk.LINK[linktype], {})
        assert t.ct.slowpath == 0 and t.ct.flows == 4, linktype
    odd = [(1.0, mk.ip4(C4, S4, 1, mk.icmp(8, 0))),
           (1.1, mk.ip6(C6, S6, 0, mk.udp(1, 2), exts=mk.ext(17)))]
    t = _run_linktype(odd, 12, lambda p: p, {})
    assert t.ct.slowpath == 2 and t.ct.flows == 2


@pytest.mark.parametrize("mode", ["plain", "general"])
def test_a_chain_stops_at_the_first_falsy_result_across_chains(mode):
    """Library and plugin functions mixed in the ip4 and tcp chains: each is called with the
    1.0 arguments, in order, until the first falsy result; that result completes the flow."""
    from pathspider.observer.tcp import tcp_handshake, tcp_setup
    log = []

    def f(value, tag):
        def fn(rec, hdr, rev):
            log.append((tag, type(hdr).__name__, rev))
            return value
        return fn

    chains = {"new_flow": [basic_flow, tcp_setup],
              "ip4": [basic_count, f(1, "a"), f("yes", "b")],
              "tcp": [tcp_handshake, f(None, "c"), f(True, "d")]}
    t = FlowTable(RAW, chains, idle_timeout=30, expiry_timeout=5, **MODES[mode])
    t.process_packet(mk.tcp4(C4, S4, 1, 2, mk.SYN), 1.0)
    assert log == [("a", "IP4", False), ("b", "IP4", False), ("c", "TCP", False)]
    (rec,) = flushed(t)
    assert rec["pkt_fwd"] == 1 and rec["fwd_syn_flags"] == mk.SYN
    assert t.ct.emitted == 1 and t.ct.chain_errors == 0


# ------------------------------------------------------------------ a fresh SYN starts a new flow
# A local port reused for the same target within the expiry (or idle) time: the new
# connection's pure SYN, with another initial sequence number, ends the old flow (emitted at
# once, before the new one, exactly once) and starts a new one.

SYN, ACK, FIN, RST, PSH = mk.SYN, mk.ACK, mk.FIN, mk.RST, mk.PSH

#: plain packets read in place (the default) or every packet through the dissector
MODES = {"plain": {}, "general": {"plain_path": False}}
#: link types and wrappers: the first three take the fast path, a VLAN tag the general one
PATHS = {"raw": (RAW, lambda p: p), "eth": (1, mk.eth), "sll": (113, mk.sll),
         "vlan": (1, lambda p: mk.eth(p, vlans=((0x8100, 7),)))}


def tcp_table(mode="plain", linktype=RAW, new_flow=(), **kw):
    chains = {"new_flow": [*new_flow, basic_flow, tcp_setup], "ip4": [basic_count],
              "ip6": [basic_count], "tcp": [tcp_handshake, tcp_complete]}
    return FlowTable(linktype, chains, **MODES[mode], **kw)


def replay(table, packets, wrap=lambda p: p, until=None):
    """Feed ``(ts, packet)`` pairs; ``[(i, rec), ...]``: each record emitted and the index of
    the packet during which it was (``len(packets)``: by the clock at ``until``, then flush)."""
    out = []
    for i, (ts, pkt) in enumerate(packets):
        table.process_packet(wrap(pkt), ts)
        out += [(i, rec) for rec in drain(table)]
    if until is not None:
        table.tick(until)
    out += [(len(packets), rec) for rec in drain(table) + flushed(table)]
    return out


class Conn:
    """Segments of one TCP connection from the client's port ``sp`` to port 80."""

    def __init__(self, v6=False, sp=40000, isn=1000, server_isn=700000, c=None, s=None):
        self.make = mk.tcp6 if v6 else mk.tcp4
        self.c = c or (C6 if v6 else C4)
        self.s = s or (S6 if v6 else S4)
        self.sp, self.isn, self.sisn = sp, isn, server_isn

    def out(self, flags, seq=None, payload=b""):
        """Client to server (``seq`` defaults to the ISN + 1, or the ISN for a pure SYN)."""
        if seq is None:
            seq = self.isn + (0 if flags & SYN and not flags & ACK else 1)
        return self.make(self.c, self.s, self.sp, 80, flags, seq=seq, ack=self.sisn + 1,
                         payload=payload)

    def back(self, flags, seq=None, payload=b""):
        """Server to client."""
        seq = self.sisn if seq is None else seq
        return self.make(self.s, self.c, 80, self.sp, flags, seq=seq, ack=self.isn + 1,
                         payload=payload)

    def session(self, t0, requests=1, close="fin"):
        """Handshake, ``requests`` request/response pairs, FIN exchange, RST or nothing."""
        pkts = [self.out(SYN), self.back(SYN | ACK), self.out(ACK)]
        for _ in range(requests):
            pkts += [self.out(PSH | ACK, payload=b"GET /"), self.back(PSH | ACK, payload=b"OK")]
        if close == "fin":
            pkts += [self.out(FIN | ACK), self.back(FIN | ACK), self.out(ACK)]
        elif close == "rst":
            pkts += [self.out(RST | ACK)]
        return [(t0 + 0.01 * i, p) for i, p in enumerate(pkts)]


def tcp_view(rec):
    return {k: rec[k] for k in ("sip", "sp", "pkt_fwd", "pkt_rev", "fwd_syn_flags",
                                "rev_syn_flags", "tcp_connected", "fwd_fin", "rev_fin",
                                "fwd_rst", "rev_rst")}


def handshake(sip, pkts, fin=True, rst=False, connected=True, rev_syn=SYN | ACK, sp=40000):
    return {"sip": sip, "sp": sp, "pkt_fwd": pkts[0], "pkt_rev": pkts[1], "fwd_syn_flags": SYN,
            "rev_syn_flags": rev_syn, "tcp_connected": connected, "fwd_fin": fin,
            "rev_fin": fin, "fwd_rst": rst, "rev_rst": False}


def check_path(table, path, mode="plain"):
    if path == "vlan" or mode == "general":
        assert table.ct.slowpath == table.ct.packets
    else:
        assert table.ct.slowpath == 0


scenarios = pytest.mark.parametrize("mode", sorted(MODES))
paths = pytest.mark.parametrize("path", sorted(PATHS))
versions = pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])


@scenarios
@paths
@versions
def test_port_reuse_after_fin_within_the_expiry_gives_two_flows(mode, path, v6):
    linktype, wrap = PATHS[path]
    first, second = Conn(v6, isn=1000), Conn(v6, isn=0xFFFF0000, server_isn=9)
    a = first.session(10.0)                              # FIN+FIN at 10.06: expiry bin 16
    b = second.session(11.0, requests=2)                 # the port again, 1 s later
    t = tcp_table(mode, linktype)
    out = replay(t, a + b, wrap, until=40.0)
    client = C6 if v6 else C4
    # the old flow is emitted during the new SYN, with everything it had, and only then
    # the new one (by its own expiry timer); the old flow's timer emits nothing again
    assert [(i, tcp_view(r)) for i, r in out] == [
        (len(a), handshake(client, (5, 3))),
        (len(a + b), handshake(client, (6, 4)))]
    (_, old), (_, new) = out
    assert (old["first"], old["last"]) == (a[0][0], a[-1][0])
    assert (new["first"], new["last"]) == (b[0][0], b[-1][0])
    assert (t.ct.flows, t.ct.emitted, t.ct.syn_restarts) == (2, 2, 1)
    assert t.tabs[6] == {}
    check_path(t, path, mode)


@scenarios
@paths
@versions
def test_port_reuse_after_rst_gives_two_flows(mode, path, v6):
    linktype, wrap = PATHS[path]
    refused = Conn(v6, isn=5)
    a = [(10.0, refused.out(SYN)), (10.01, refused.back(RST | ACK, seq=0))]
    b = Conn(v6, isn=6).session(10.5, close="rst")       # the RST completes it as well
    t = tcp_table(mode, linktype)
    out = replay(t, a + b, wrap, until=40.0)
    client = C6 if v6 else C4
    refused_rec = dict(handshake(client, (1, 1), fin=False, connected=False, rev_syn=None),
                       rev_rst=True)
    assert [(i, tcp_view(r)) for i, r in out] == [
        (len(a), refused_rec),
        (len(a + b), handshake(client, (4, 2), fin=False, rst=True))]
    assert (t.ct.flows, t.ct.emitted, t.ct.syn_restarts) == (2, 2, 1)
    check_path(t, path, mode)


@scenarios
@paths
@versions
def test_port_reuse_after_a_timed_out_syn_gives_two_flows(mode, path, v6):
    # no FIN, no RST: the first flow is still active (idle timeout 30 s) when the port is
    # reused; its SYN retransmissions (same sequence number) stayed in it
    linktype, wrap = PATHS[path]
    lost = Conn(v6, isn=1000)
    a = [(10.0, lost.out(SYN)), (11.0, lost.out(SYN)), (13.0, lost.out(SYN))]
    b = Conn(v6, isn=1001).session(20.0)
    t = tcp_table(mode, linktype)
    out = replay(t, a + b, wrap, until=100.0)
    client = C6 if v6 else C4
    assert [(i, tcp_view(r)) for i, r in out] == [
        (len(a), handshake(client, (3, 0), fin=False, connected=False, rev_syn=None)),
        (len(a + b), handshake(client, (5, 3)))]
    assert out[0][1]["last"] == 13.0
    assert (t.ct.flows, t.ct.emitted, t.ct.syn_restarts) == (2, 2, 1)
    check_path(t, path, mode)


@scenarios
@paths
@versions
def test_a_syn_retransmission_stays_in_its_flow(mode, path, v6):
    linktype, wrap = PATHS[path]
    c = Conn(v6, isn=77)
    session = c.session(10.5)
    pkts = [(10.0, c.out(SYN))] + session                # the SYN again, same number
    # ... even after the flow completed (a retransmission still in flight)
    pkts += [(12.0, c.out(SYN))]
    t = tcp_table(mode, linktype)
    out = replay(t, pkts, wrap, until=40.0)
    client = C6 if v6 else C4
    assert [(i, tcp_view(r)) for i, r in out] == [
        (len(pkts), handshake(client, (7, 3)))]
    assert (t.ct.flows, t.ct.syn_restarts) == (1, 0)
    check_path(t, path, mode)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_the_isn_is_shared_by_the_fast_and_the_general_path(v6):
    # the same table, one connection's packets on both paths: a SYN with IPv4 options or an
    # IPv6 extension header takes the general path
    c = Conn(v6, isn=1000)

    def general(flags, seq):
        seg = mk.tcp(c.sp, 80, flags, seq=seq, src=c.c, dst=c.s)
        if v6:
            return mk.ip6(c.c, c.s, 0, seg, exts=mk.ext(6))
        return mk.ip4(c.c, c.s, 6, seg, options=b"\x01\x01\x01\x01")

    pkts = [(1.0, c.out(SYN)), (1.5, general(SYN, 1000)),       # fast, then retransmitted
            (2.0, general(SYN, 2000)),                           # general: a new flow
            (2.5, c.out(SYN, seq=2000)),                         # fast: its retransmission
            (3.0, c.out(SYN, seq=3000))]                         # fast: another new flow
    t = tcp_table()
    out = replay(t, pkts)
    assert [(i, r["first"], r["pkt_fwd"]) for i, r in out] == [
        (2, 1.0, 2), (4, 2.0, 2), (5, 3.0, 1)]
    assert t.ct.slowpath == 2 and t.ct.syn_restarts == 2


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_flow_without_isn_is_restarted_only_once_completed(mode):
    # the capture started mid-connection: the flow's first packet is no pure SYN
    c = Conn(isn=1000)
    # an active flow keeps a pure SYN (it cannot tell it from a late SYN of the connection)
    # and takes its sequence number as ISN: another number then starts a new flow
    t = tcp_table(mode)
    out = replay(t, [(1.0, c.out(ACK)), (1.1, c.back(ACK)), (1.2, c.out(SYN, seq=1000)),
                     (1.3, c.out(SYN, seq=1000)), (1.4, c.out(SYN, seq=5000))])
    assert [(i, r["first"], r["pkt_fwd"], r["pkt_rev"]) for i, r in out] == [
        (4, 1.0, 3, 1), (5, 1.4, 1, 0)]
    # a completed flow (here by an RST) without ISN: a pure SYN starts a new flow
    t = tcp_table(mode)
    out = replay(t, [(1.0, c.out(ACK)), (1.1, c.back(RST)), (1.2, c.out(SYN, seq=1000)),
                     (1.3, c.out(SYN, seq=1000))])
    assert [(i, r["first"], r["pkt_fwd"], r["pkt_rev"]) for i, r in out] == [
        (2, 1.0, 1, 1), (4, 1.2, 2, 0)]
    assert t.ct.syn_restarts == 1


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_reverse_pure_syn_starts_a_new_flow_only_once_completed(mode):
    c = Conn(isn=1000, server_isn=5000)
    # a simultaneous open: each end sends a pure SYN with its own number, one connection
    opening = [(1.0, c.out(SYN)), (1.1, c.back(SYN, seq=5000)), (1.2, c.back(SYN, seq=5000)),
               (1.3, c.back(SYN, seq=6000)),           # not the ISN's direction: stays
               (1.4, c.out(SYN | ACK)), (1.5, c.back(SYN | ACK))]
    t = tcp_table(mode)
    out = replay(t, opening)
    assert [(i, r["pkt_fwd"], r["pkt_rev"]) for i, r in out] == [(len(opening), 2, 4)]
    # once the flow completed, a pure SYN from the other end opens a new connection there
    t = tcp_table(mode)
    pkts = opening + [(1.6, c.out(RST | ACK)), (2.0, c.back(SYN, seq=7000))]
    out = replay(t, pkts)
    assert [(i, r["sip"], r["pkt_fwd"], r["pkt_rev"]) for i, r in out] == [
        (len(pkts) - 1, C4, 3, 4), (len(pkts), S4, 1, 0)]
    assert out[1][1]["fwd_syn_flags"] == SYN and out[1][1]["rev_syn_flags"] is None


def test_an_icmp_error_quoting_a_syn_gives_no_isn_the_syn_does():
    c = Conn(isn=100)
    syn = c.out(SYN)
    error = mk.ip4(ROUTER4, C4, 1, mk.icmp(3, 1, payload=syn[:28]))
    t = tcp_table()
    out = replay(t, [(1.0, error), (1.1, syn), (1.2, syn),     # the flow starts with the ICMP
                     (1.3, error),                                 # (a quoted SYN is no SYN)
                     (1.4, c.out(SYN, seq=200))])                  # the SYN's ISN is 100
    assert [(i, r["proto"], r["pkt_fwd"], r["pkt_rev"]) for i, r in out] == [
        (4, 1, 2, 2), (5, 6, 1, 0)]
    assert t.ct.syn_restarts == 1


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_vetoed_flow_is_forgotten_on_a_fresh_syn_and_the_new_one_judged(mode):
    judged = []

    def not_isn_1000(rec, ip):
        judged.append(ip.tcp.seq_nbr)
        return ip.tcp.seq_nbr != 1000

    c = Conn(isn=1000)
    t = tcp_table(mode, new_flow=[not_isn_1000])
    out = replay(t, [(1.0, c.out(SYN)), (1.1, c.back(SYN | ACK)), (1.2, c.out(SYN)),
                     (2.0, c.out(SYN, seq=2000)), (2.1, c.back(SYN | ACK))], until=100.0)
    assert judged == [1000, 2000]
    assert [(i, r["first"], r["pkt_fwd"], r["pkt_rev"]) for i, r in out] == [(5, 2.0, 1, 1)]
    assert (t.ct.ignored, t.ct.flows, t.ct.emitted, t.ct.syn_restarts) == (1, 1, 1, 1)


def test_the_isn_stays_out_of_the_records():
    c = Conn(isn=1000)
    t = tcp_table()
    out = replay(t, [(1.0, c.out(SYN)), (1.1, c.out(SYN, seq=2000))])
    for _, rec in out:
        assert set(rec) == {"first", "last", "sip", "dip", "proto", "sp", "dp", "pkt_fwd",
                            "pkt_rev", "oct_fwd", "oct_rev", "fwd_syn_flags",
                            "rev_syn_flags", "fwd_fin", "rev_fin", "fwd_rst", "rev_rst",
                            "tcp_connected"}


def test_udp_bytes_that_look_like_a_syn_start_no_new_flow():
    # on the fast path ``flags`` is read at the TCP flag offset for UDP packets too
    payload = bytes([0, 0, 0, 0, 0x50, SYN]) + bytes(8)        # UDP bytes 12, 13: 0x50, SYN
    t = make_table()
    recs = replay(t, [(1.0, mk.udp4(C4, S4, 1, 2, payload)),
                      (1.1, mk.udp4(C4, S4, 1, 2, payload[:4] + b"\x50\x02\xff\xff" + bytes(6)))])
    assert [(r["pkt_fwd"]) for _, r in recs] == [2]
    assert t.ct.syn_restarts == 0 and t.ct.slowpath == 0
