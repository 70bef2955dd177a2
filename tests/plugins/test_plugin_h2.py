"""The h2 plugin: interpretation logic, and end-to-end runs on the lab over every class, IPv4
and IPv6, with ``--connect http`` (h2c upgrade) and ``--connect https`` (ALPN)."""
import argparse

import pytest

from pathspider.base import DesynchronizedSpider, PluggableSpider
from pathspider.cli import summary
from pathspider.lab import plan
from pathspider.plugins import h2
from psd_lab_run import by_target, families, run_plugin, targets

WORKS = ["h2.connectivity.works", "h2.upgrade.success"]
NOT_UPGRADED = ["h2.connectivity.works", "h2.upgrade.failed"]
BROKEN = ["h2.connectivity.broken"]
OFFLINE = ["h2.connectivity.offline"]
#: What each class should show, per --connect mode (every class not named here: WORKS).
EXPECTED = {
    "http": {"h2-none": NOT_UPGRADED, "h2c-drop": BROKEN, "unreachable": OFFLINE,
             "blackhole": OFFLINE},
    "https": {"h2-none": NOT_UPGRADED, "unreachable": OFFLINE, "blackhole": OFFLINE},
}


def expected(mode, cls):
    return EXPECTED[mode].get(cls, WORKS)


# ---- pure logic ---------------------------------------------------------------------------------

def rec(config, ok=True, protocol="http/1.1", observed=True):
    return {"config": config, "connstate": ok, "http_protocol": protocol if ok else None,
            "observed": observed}


@pytest.mark.parametrize("baseline, experiment, conds", [
    (rec(0), rec(1, protocol="h2"), WORKS),
    (rec(0), rec(1), NOT_UPGRADED),
    (rec(0), rec(1, ok=False), BROKEN),
    (rec(0, ok=False), rec(1, protocol="h2"), ["h2.connectivity.transient"]),
    (rec(0, ok=False, observed=False), rec(1, ok=False),
     OFFLINE + ["pathspider.not_observed"]),
    (rec(0), None, BROKEN),
])
def test_conditions(baseline, experiment, conds):
    assert h2.conditions(baseline, experiment) == conds


def test_combine_flows_gives_the_same_conditions_in_connection_order():
    spider = h2.H2.__new__(h2.H2)
    assert spider.combine_flows([rec(0), rec(1, protocol="h2")]) == WORKS
    assert spider.combine_flows([rec(0), rec(1, ok=False)]) == BROKEN
    assert spider.combine_flows([]) == OFFLINE


def test_register_args_and_class():
    assert issubclass(h2.H2, DesynchronizedSpider) and issubclass(h2.H2, PluggableSpider)
    parser = argparse.ArgumentParser()
    h2.H2.register_args(parser.add_subparsers())
    args = parser.parse_args(["h2"])
    assert (args.spider, args.timeout, args.connect, args.ca_file) == (h2.H2, 5.0, "http", None)
    assert parser.parse_args(["h2", "--connect", "https"]).connect == "https"
    with pytest.raises(SystemExit):
        parser.parse_args(["h2", "--connect", "tcp"])
    assert "h2" in summary.summary_plugins()
    assert h2.H2Record._fields[:9] == ("ip", "rport", "port", "rank", "host", "config",
                                       "connstate", "tstart", "tstop")


# ---- end to end on the lab -------------------------------------------------------------------

@pytest.fixture(scope="module", params=["http", "https"])
def h2_run(request, lab, tmp_path_factory):
    """One h2 run per --connect mode over one target per class and family (every class)."""
    mode = request.param
    rows = targets(lab, list(plan.CLASS_NAMES), 1)
    if mode == "https":
        rows = [[ip, plan.HTTPS_PORT, host, rank] for ip, _, host, rank in rows]
    records, _ = run_plugin(lab, tmp_path_factory.mktemp(f"h2-{mode}"), rows, "h2",
                            "--timeout", "1.5", "--connect", mode, workers=32)
    return mode, rows, by_target(records)


@pytest.mark.root
def test_every_target_has_both_records_with_real_ports(h2_run):
    mode, rows, table = h2_run
    assert set(table) == {row[0] for row in rows} and families(table) == {4, 6}
    for ip, recs in table.items():
        assert set(recs) == {0, 1}, ip
        for record in recs.values():
            assert record["observed"] is True and record["sp"] > 0, record
            assert record["dp"] == (443 if mode == "https" else 80)


@pytest.mark.root
def test_each_class_shows_its_conditions(h2_run):
    mode, _, table = h2_run
    seen = {}
    for ip, recs in table.items():
        cls = plan.class_of(ip)
        seen[cls, 6 if ":" in ip else 4] = h2.conditions(recs[0], recs[1])
    want = {(cls, fam): expected(mode, cls) for cls in plan.CLASS_NAMES for fam in (4, 6)}
    assert seen == want


@pytest.mark.root
def test_records_say_how_the_response_came(h2_run):
    mode, _, table = h2_run
    for ip, recs in table.items():
        cls = plan.class_of(ip)
        base, exp = recs[0], recs[1]
        if expected(mode, cls) in (WORKS, NOT_UPGRADED):
            assert base["http_status"] == 200 and base["http_protocol"] == "http/1.1", base
            assert exp["http_status"] == 200 and base["tcp_connected"], exp
            assert exp["http_protocol"] == ("h2" if expected(mode, cls) == WORKS
                                            else "http/1.1"), exp
            assert base["tls_alpn"] == ("http/1.1" if mode == "https" else None)
        elif cls == "h2c-drop":
            assert exp["spdr_state"] == 2 and exp["tcp_connected"] and not exp["connstate"]
        elif cls == "unreachable":
            assert exp["spdr_state"] == 1 and exp["icmp_unreachable"] is True
        elif cls == "blackhole":
            assert exp["spdr_state"] == 2 and not exp["tcp_connected"]
