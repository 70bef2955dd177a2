"""The mss plugin: interpretation logic, options, and a per-connection run on the lab."""
import argparse

import pytest

from pathspider.plugins import mss
from psd_lab_run import by_target, families, of_class, run_plugin, targets


def rec(**kw):
    out = {"config": 0, "observed": True, "connstate": True, "tcp_connected": True,
           "mss_value_fwd": 1460, "mss_value_rev": 1460}
    out.update(kw)
    return out


@pytest.mark.parametrize("record,expected", [
    (rec(), ["mss.connectivity.online", "mss.option.local.value:1460",
             "mss.option.remote.value:1460", "mss.option.received.unchanged"]),
    (rec(mss_value_rev=536), ["mss.connectivity.online", "mss.option.local.value:1460",
                              "mss.option.remote.value:536", "mss.option.received.deflated"]),
    (rec(mss_value_rev=9000), ["mss.connectivity.online", "mss.option.local.value:1460",
                               "mss.option.remote.value:9000",
                               "mss.option.received.inflated"]),
    (rec(mss_value_rev=None), ["mss.connectivity.online", "mss.option.local.value:1460",
                               "mss.option.received.absent"]),
    (rec(mss_value_fwd=None), ["mss.connectivity.online", "mss.option.remote.value:1460"]),
    (rec(connstate=False, tcp_connected=False, mss_value_rev=None),
     ["mss.connectivity.offline"]),
    ({"config": 0, "observed": False, "connstate": True},
     ["mss.connectivity.online", "pathspider.not_observed"]),
    ({"config": 0, "observed": False, "connstate": False},
     ["mss.connectivity.offline", "pathspider.not_observed"]),
    (None, []),
])
def test_conditions(record, expected):
    assert mss.conditions(record) == expected
    assert mss.conditions(record, None) == expected
    assert mss.MSS.combine_flows([record]) == expected


def test_register_args_defaults():
    parser = argparse.ArgumentParser()
    mss.MSS.register_args(parser.add_subparsers())
    args = parser.parse_args(["mss"])
    assert (args.spider, args.timeout, args.connect) == (mss.MSS, 5.0, "tcp")
    assert parser.parse_args(["mss", "--connect", "http"]).connect == "http"


def test_single_connection_model():
    from pathspider.base import SingleSpider
    assert issubclass(mss.MSS, SingleSpider) and mss.MSS.connections == ["connect"]


# ---- end to end on the lab -------------------------------------------------------------------

CLASSES = ["clean", "mss-rewrite", "unreachable", "blackhole"]


@pytest.mark.root
def test_mss_per_connection_records(lab_client_state, tmp_path):
    lab = lab_client_state
    rows = targets(lab, CLASSES, 2)
    records, _ = run_plugin(lab, tmp_path, rows, "mss", "--timeout", "2")
    table = by_target(records)
    assert set(table) == {row[0] for row in rows} and families(table) == {4, 6}
    for recs in table.values():
        assert set(recs) == {0}                            # one record per target
    for ip, recs in of_class(table, "mss-rewrite").items():
        local = 1440 if ":" in ip else 1460
        assert recs[0]["mss_value_fwd"] == local and recs[0]["mss_value_rev"] == 536, ip
        assert "mss.option.received.deflated" in mss.conditions(recs[0])
    for ip, recs in of_class(table, "clean").items():
        assert recs[0]["mss_value_fwd"] == recs[0]["mss_value_rev"], ip
    for cls in ("unreachable", "blackhole"):
        for ip, recs in of_class(table, cls).items():
            assert mss.conditions(recs[0]) == ["mss.connectivity.offline"], ip
