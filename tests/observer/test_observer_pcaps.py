"""The Observer over the crafted captures: every link type, pcapng, VLAN, edge cases, API."""
import json
import pickle
import queue

import pytest

from core_craft import data_path, mk
from pathspider.observer import (SHUTDOWN_SENTINEL, Observer, PacketSourceError, basic_count,
                                 basic_flow, extract_ports, simple_observer)
from pathspider.observer.dissector import dissect

LINK_FILES = ["link_eth.pcap", "link_sll.pcap", "link_sll2.pcap", "link_raw.pcap",
              "link_null.pcap", "link_loop.pcap", "link_vlan.pcap", "link_eth.pcapng",
              "link_eth_nano.pcap"]


def records(name, **kw):
    return list(simple_observer_with(name, **kw).flows())


def simple_observer_with(name, **kw):
    kw.setdefault("new_flow_chain", [basic_flow])
    kw.setdefault("ip4_chain", [basic_count])
    kw.setdefault("ip6_chain", [basic_count])
    return Observer(data_path(name), **kw)


def comparable(rec):
    rec = dict(rec)
    rec["first"] = round(rec["first"], 6)
    rec["last"] = round(rec["last"], 6)
    return json.dumps(rec, sort_keys=True)


EXPECTED_LINK = sorted([
    comparable({"first": 1000.0, "last": 1000.07, "sip": mk.C4, "dip": mk.S4, "proto": 6,
                "sp": 40000, "dp": 80, "pkt_fwd": 5, "pkt_rev": 3, "oct_fwd": 218,
                "oct_rev": 139}),
    comparable({"first": 1000.5, "last": 1000.57, "sip": mk.C6, "dip": mk.S6, "proto": 6,
                "sp": 40001, "dp": 80, "pkt_fwd": 5, "pkt_rev": 3, "oct_fwd": 318,
                "oct_rev": 199}),
])


@pytest.mark.parametrize("name", LINK_FILES)
def test_every_link_type_gives_the_same_records(name):
    assert sorted(comparable(r) for r in records(name)) == EXPECTED_LINK


def test_raw_ipv4_and_ipv6_link_types():
    v4 = records("link_ipv4.pcap")
    v6 = records("link_ipv6.pcap")
    assert sorted(comparable(r) for r in v4 + v6) == EXPECTED_LINK


def test_mixed_capture_edge_cases():
    obs = simple_observer_with("mixed.pcap")
    recs = {(r["proto"], r["sp"]): r for r in obs.flows()}
    stats = obs.stats()
    assert (stats["packets"], stats["short"], stats["nonip"], stats["malformed"]) == (10, 2, 1, 0)
    assert stats["flows"] == len(recs) == 5 and stats["icmp_linked"] == 2
    syn = recs[(6, 41000)]                      # SYN + ICMPv4 host unreachable quoting it
    assert (syn["pkt_fwd"], syn["pkt_rev"], syn["dip"]) == (1, 1, "198.18.65.1")
    u6 = recs[(17, 41001)]                      # UDP + ICMPv6 unreachable quoting it
    assert (u6["pkt_fwd"], u6["pkt_rev"], u6["sip"]) == (1, 1, mk.C6)
    ext = recs[(6, 41002)]                      # behind three IPv6 extension headers
    assert (ext["dp"], ext["pkt_fwd"]) == (80, 1)
    qinq = recs[(17, 41003)]                    # 802.1ad + 802.1Q tagged
    assert (qinq["dp"], qinq["oct_fwd"]) == (53, 29)
    short_quote = recs[(1, None)]               # quotation without ports: own 3-tuple
    assert (short_quote["sip"], short_quote["pkt_fwd"]) == ("198.18.0.254", 1)


def test_replay_is_deterministic_with_timers():
    # expiry 0 and idle 0 make every bin fire during the replay, not only in the flush
    def run():
        return [comparable(r) for r in records("mixed.pcap", idle_timeout=0, expiry_timeout=0)]
    first = run()
    # the SYN's flow went idle before its ICMP error arrived 0.1 s later: 6 records, not 5
    assert len(first) == 6 and run() == first


@pytest.mark.parametrize("method", ["run_flow_enqueuer", "run_flow_batches"])
def test_flow_enqueuers_on_a_file_put_the_records_then_the_sentinel(method):
    """1.0's run_flow_enqueuer puts one record per item; run_flow_batches (the engine's
    path) one list per batch."""
    obs = simple_observer(data_path("link_eth.pcap"))
    q = queue.Queue()
    obs.start_capture()
    getattr(obs, method)(q, queue.Queue())
    items = []
    while not q.empty():
        items.append(q.get())
    assert items[-1] == SHUTDOWN_SENTINEL == "SHUTDOWN_SENTINEL"
    if method == "run_flow_enqueuer":
        assert all(isinstance(item, dict) for item in items[:-1])
        flows = items[:-1]
    else:
        assert all(isinstance(batch, list) for batch in items[:-1])
        flows = [rec for batch in items[:-1] for rec in batch]
    assert sorted(comparable(r) for r in flows) == EXPECTED_LINK
    stats = obs.stats()
    for key in ("packets", "dropped", "short", "nonip", "malformed", "flows", "ignored"):
        assert isinstance(stats[key], int)
    assert stats["packets"] == 16 and stats["flows"] == 2
    json.dumps(stats)


def test_run_flow_enqueuer_puts_the_sentinel_even_when_opening_fails(tmp_path):
    obs = simple_observer(str(tmp_path / "missing.pcap"))
    q = queue.Queue()
    with pytest.raises(PacketSourceError):
        obs.run_flow_enqueuer(q)
    assert q.get_nowait() == SHUTDOWN_SENTINEL


def test_observer_is_picklable_with_module_level_chains():
    obs = simple_observer(data_path("link_eth.pcap"))
    clone = pickle.loads(pickle.dumps(obs))
    assert sorted(comparable(r) for r in clone.flows()) == EXPECTED_LINK


def test_bad_uri_fails_at_construction():
    with pytest.raises(PacketSourceError, match="unknown URI scheme"):
        Observer("dag:/dev/dag0")


def test_extract_ports():
    assert extract_ports(dissect(mk.tcp4(mk.C4, mk.S4, 1, 2, mk.SYN), 12)) == (1, 2)
    assert extract_ports(dissect(mk.udp6(mk.C6, mk.S6, 3, 4), 229)) == (3, 4)
    assert extract_ports(dissect(mk.ip4(mk.C4, mk.S4, 132, bytes(12)), 12)) == (None, None)


def test_flows_generator_can_stop_early_and_closes_the_source():
    obs = simple_observer(data_path("link_eth.pcap"))
    gen = obs.flows()
    next(gen)
    gen.close()
    assert not obs.source.is_open
