"""The merger pairs flows and results on (target address, local port), in any arrival order,
and never loses a result."""
import collections
import itertools
import logging

import pytest

from pathspider.base import NO_FLOW
from pathspider.engine.merger import Merger, canonical_address

Res = collections.namedtuple("Res", ["ip", "port", "config"])


def flow(dip, sp, **extra):
    return {"dip": dip, "sp": sp, **extra}


@pytest.fixture
def merged():
    out = []
    return out, Merger(lambda f, r: out.append((f, r)), reap_size=100)


@pytest.mark.parametrize("order", list(itertools.permutations(["f1", "r1", "f2", "r2"])))
def test_every_arrival_order_merges_each_pair(order):
    out = []
    merger = Merger(lambda f, r: out.append((f, r)))
    items = {"f1": flow("198.18.64.1", 1000, n=1), "f2": flow("198.18.64.1", 1001, n=2),
             "r1": Res("198.18.64.1", 1000, 0), "r2": Res("198.18.64.1", 1001, 1)}
    for name in order:
        item = items[name]
        (merger.add_flow if name.startswith("f") else merger.add_result)(item)
    merger.finish()
    assert sorted((f["n"], r.config) for f, r in out) == [(1, 0), (2, 1)]


def test_unmatched_results_merge_with_no_flow_at_finish(merged):
    out, merger = merged
    merger.add_result(Res("198.18.64.1", 1000, 0))
    merger.add_result(Res("198.18.64.2", 1001, 1))
    assert out == []
    merger.finish()
    assert [f for f, _ in out] == [NO_FLOW, NO_FLOW]
    assert merger.unobserved == 2


def test_duplicate_result_keys_are_all_kept(merged):
    """1.0 dropped a second result with the same key (two failures on port 0)."""
    out, merger = merged
    merger.add_result(Res("198.18.64.1", 0, 0))
    merger.add_result(Res("198.18.64.1", 0, 1))
    merger.add_flow(flow("198.18.64.1", 0, n=1))
    merger.finish()
    assert sorted((f is NO_FLOW, r.config) for f, r in out) == [(False, 0), (True, 1)]


def test_duplicate_flows_match_in_arrival_order(merged):
    out, merger = merged
    merger.add_flow(flow("198.18.64.1", 5, n=1))
    merger.add_flow(flow("198.18.64.1", 5, n=2))
    merger.add_result(Res("198.18.64.1", 5, 0))
    merger.add_result(Res("198.18.64.1", 5, 1))
    assert [(f["n"], r.config) for f, r in out] == [(1, 0), (2, 1)]


def test_unmatched_flows_are_reaped_oldest_first(merged):
    out, merger = merged
    for port in range(150):
        merger.add_flow(flow("198.18.64.1", port))
    assert merger.waiting_flows == 100
    assert merger.reaped_flows == 50
    merger.add_result(Res("198.18.64.1", 10, 0))      # reaped: waits, then NO_FLOW
    merger.add_result(Res("198.18.64.1", 149, 0))     # still there
    merger.finish()
    assert [(f is NO_FLOW, r.port) for f, r in out] == [(False, 149), (True, 10)]


def test_reaping_skips_flows_already_merged(merged):
    out, merger = merged
    merger.add_flow(flow("198.18.64.1", 1))
    merger.add_result(Res("198.18.64.1", 1, 0))
    for port in range(2, 103):
        merger.add_flow(flow("198.18.64.1", port))
    assert merger.waiting_flows == 100
    assert merger.reaped_flows == 1          # only the flow of port 2, not the merged one
    merger.add_result(Res("198.18.64.1", 3, 0))
    assert out[-1][0]["sp"] == 3


def test_order_bookkeeping_stays_bounded_on_long_runs():
    merger = Merger(lambda f, r: None, reap_size=10)
    for port in range(10000):
        merger.add_flow(flow("198.18.64.1", port))
        merger.add_result(Res("198.18.64.1", port, 0))
    assert len(merger._flow_order) <= 4 * 10 + 64
    assert merger.merged == 10000


def test_ipv6_addresses_match_in_any_spelling(merged):
    out, merger = merged
    merger.add_flow(flow("2001:db8::1", 7))
    merger.add_result(Res("2001:DB8:0:0::0001", 7, 0))
    assert len(out) == 1 and out[0][0] is not NO_FLOW
    assert canonical_address("2001:DB8::0:1") == "2001:db8::1"


def test_results_without_key_fields_are_merged_unobserved(merged):
    out, merger = merged
    merger.add_result({"not": "a namedtuple"})
    assert out == [(NO_FLOW, {"not": "a namedtuple"})]


def test_flows_without_key_fields_are_ignored(merged):
    out, merger = merged
    merger.add_flow({"proto": 6})
    merger.finish()
    assert out == [] and merger.unkeyed_flows == 1


def test_without_flow_matching_results_merge_at_once():
    out = []
    merger = Merger(lambda f, r: out.append((f, r)), match_flows=False)
    merger.add_result(Res("198.18.64.1", 1, 0))
    assert out == [(NO_FLOW, Res("198.18.64.1", 1, 0))]


def test_a_result_given_as_a_dict_matches_its_flow(merged):
    out, merger = merged
    merger.add_flow(flow("2001:db8::1", 1000, n=1))
    merger.add_result({"ip": "2001:DB8::1", "port": 1000, "config": 0})
    merger.finish()
    assert [(f["n"], r["config"]) for f, r in out] == [(1, 0)]


def test_a_result_without_ip_and_port_is_written_and_named(merged, caplog):
    caplog.set_level(logging.INFO, logger="pathspider.engine.merger")
    out, merger = merged
    merger.add_flow(flow("198.18.64.1", 1000))
    merger.add_result({"target": "198.18.64.1", "config": 0})
    merger.finish()
    merger.log_summary()
    assert out == [(NO_FLOW, {"target": "198.18.64.1", "config": 0})]
    assert "without 'ip' and 'port'" in caplog.text
    assert "1 observed flows without a result" in caplog.text


def test_nothing_matched_hints_at_the_local_port(merged, caplog):
    out, merger = merged
    merger.add_flow(flow("198.18.64.1", 40000))
    merger.add_result(Res("198.18.64.1", 80, 0))            # the target's port, not the local
    merger.finish()
    merger.log_summary()
    assert out[0][0] is NO_FLOW and "LOCAL port" in caplog.text


def test_one_waiting_item_per_key_is_stored_as_it_is_and_none_is_lost():
    """Memory (issue 13): a key's one waiting result or flow is stored without a queue; a
    second one makes a queue, taken in arrival order; every result is merged once."""
    from pathspider.engine import merger as merger_module
    out = []
    merger = Merger(lambda f, r: out.append((f, r)), reap_size=100000)
    for port in range(1000):
        merger.add_result(Res("2001:db8::1", port, 0))
    assert merger.waiting_results == 1000
    assert not any(isinstance(v, merger_module._Waiting) for v in merger._results.values())
    merger.add_result(Res("2001:db8::1", 7, 1))               # a second result on one key
    assert isinstance(merger._results[("2001:db8::1", 7)], merger_module._Waiting)
    merger.add_flow(flow("2001:DB8::1", 7, n=1))
    merger.add_flow(flow("2001:db8::1", 7, n=2))
    assert [(f["n"], r.config) for f, r in out] == [(1, 0), (2, 1)]
    assert ("2001:db8::1", 7) not in merger._results
    for port in range(2000, 2500):                              # flows first, then results
        merger.add_flow(flow("198.18.64.1", port, n=port))
    assert merger.waiting_flows == 500
    for port in range(2000, 2500):
        merger.add_result(Res("198.18.64.1", port, 0))
    merger.finish()
    assert len(out) == 1001 + 500
    assert sum(f is NO_FLOW for f, _ in out) == 999
    assert merger._results == {} and merger._flows == {}
