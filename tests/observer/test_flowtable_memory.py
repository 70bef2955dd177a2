"""The flow table holds nothing of a flow once it is gone (issue 13: flat memory).

A flow has one timer entry at a time; an emitted or forgotten flow has none, so over a long
stream of short connections the table's timers stay proportional to the flows alive, and
every flow is still emitted exactly once. Pure logic on crafted packets (both meters run it).
"""
from core_craft import mk
from pathspider.observer.flowtable import FlowTable
from pathspider.observer import basic_count, basic_flow
from pathspider.observer.tcp import tcp_complete, tcp_setup

C4, S4 = mk.C4, mk.S4
RAW = 12


def table():
    chains = {"new_flow": [basic_flow, tcp_setup], "ip4": [basic_count],
              "tcp": [tcp_complete]}
    return FlowTable(RAW, chains, idle_timeout=30, expiry_timeout=5)


def connection(port, t):
    """A short connection from local ``port`` starting at ``t``: SYN, SYN-ACK, FIN both ways."""
    return [(t, mk.tcp4(C4, S4, port, 80, mk.SYN)),
            (t + 0.001, mk.tcp4(S4, C4, 80, port, mk.SYN | mk.ACK)),
            (t + 0.002, mk.tcp4(C4, S4, port, 80, mk.FIN | mk.ACK)),
            (t + 0.003, mk.tcp4(S4, C4, 80, port, mk.FIN | mk.ACK))]


def timer_entries(t):
    return sum(len(b) for b in t.bins.values())


def live_flows(t):
    return len({id(flow) for tab in t.tabs for flow in tab.values()})


def test_gone_flows_leave_no_timer_entry_and_none_is_lost():
    t = table()
    emitted = []
    most_entries = 0
    # 6,000 connections over 60 s of packet clock: 100 a second, each complete at once
    for i in range(6000):
        for ts, pkt in connection(1024 + i, 1.0 + i * 0.01):
            t.process_packet(pkt, ts)
        emitted += t.emitted
        t.emitted = []
        most_entries = max(most_entries, timer_entries(t))
        assert timer_entries(t) <= live_flows(t)
    # alive: the completed flows of the last ~6 s (expiry 5 s, 1 s bins), never the idle 30 s
    assert most_entries <= 100 * 7
    t.flush()
    emitted += t.emitted
    assert sorted(r["sp"] for r in emitted) == list(range(1024, 7024))
    assert all(r["fwd_fin"] and r["rev_fin"] for r in emitted)
    assert t.bins == {} and live_flows(t) == 0


def test_an_active_flow_keeps_one_entry_as_its_idle_timer_moves():
    t = table()
    t.process_packet(mk.tcp4(C4, S4, 5000, 80, mk.SYN), 1.0)
    for second in range(2, 100):                  # a packet a second: idle never comes
        t.process_packet(mk.tcp4(S4, C4, 80, 5000, mk.ACK), float(second))
        assert timer_entries(t) == 1
    assert t.emitted == []
    t.process_packet(mk.tcp4(C4, S4, 5000, 80, mk.RST), 100.0)     # completed: expiry entry
    assert timer_entries(t) == 1
    t.process_packet(mk.tcp4(C4, S4, 6000, 80, mk.SYN), 106.5)      # the clock passes expiry
    assert [r["sp"] for r in t.emitted] == [5000]
    assert timer_entries(t) == 1                  # the new flow's only
