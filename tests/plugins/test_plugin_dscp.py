"""The dscp plugin: interpretation logic, and end-to-end runs on the lab (IPv4 and IPv6)."""
import argparse

import pytest

from pathspider.lab import netns
from pathspider.plugins import dscp
from psd_lab_run import by_target, families, of_class, run_plugin, targets


# ---- pure logic ---------------------------------------------------------------------------------

def rec(config, fwd, rev, **kw):
    out = {"config": config, "observed": True, "connstate": True, "fwd_syn_dscp": fwd,
           "rev_syn_dscp": rev, "fwd_data_dscp": fwd, "rev_data_dscp": rev,
           "codepoint": 46 if config else 0}
    out.update(kw)
    return out


@pytest.mark.parametrize("baseline,experiment,expected", [
    (rec(0, 0, 0), rec(1, 46, 46),
     ["dscp.46.connectivity.works", "dscp.0.replymark:0", "dscp.46.replymark:46"]),
    (rec(0, 0, 0), rec(1, 46, 0), ["dscp.46.connectivity.works", "dscp.0.replymark:0",
                                   "dscp.46.replymark:0"]),
    (rec(0, 0, 0), rec(1, 46, None, connstate=False, rev_data_dscp=None),
     ["dscp.46.connectivity.broken", "dscp.0.replymark:0"]),
    (rec(0, 0, 0), {"config": 1, "observed": False, "connstate": False, "codepoint": 46},
     ["dscp.46.connectivity.broken", "dscp.0.replymark:0", "pathspider.not_observed"]),
])
def test_conditions(baseline, experiment, expected):
    assert dscp.conditions(baseline, experiment) == expected


def test_toggle_records_the_configuration_once_per_connection():
    assert dscp.toggle_script(True) == (
        "flush chain inet pathspider_dscp toggle\n"
        "add rule inet pathspider_dscp toggle ct mark set ct mark or 0xc00000\n")
    assert dscp.toggle_script(False).endswith("ct mark set ct mark or 0x800000\n")
    table = dscp.table_definition(46)
    assert "ct mark and 0x800000 == 0 jump toggle" in table
    assert "ip dscp set 46" in table and "ip6 dscp set 46" in table


@pytest.mark.parametrize("text", ["64", "-1", "x"])
def test_codepoint_option_is_validated(text):
    parser = argparse.ArgumentParser()
    dscp.DSCP.register_args(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["dscp", "--codepoint", text])


# ---- end to end on the lab -------------------------------------------------------------------

FOREIGN = "table inet psd_foreign_test {\n chain c {\n  type filter hook output priority 0;\n" \
          "  meta mark 0x5 counter\n }\n}\n"


@pytest.fixture
def reflecting_server(lab):
    """The lab server reflects the DSCP of a SYN into its answers (net.ipv4.tcp_reflect_tos),
    so the client can see what arrived at the server; restored afterwards."""
    key = "net.ipv4.tcp_reflect_tos"
    old = netns.sysctl_get(lab.server_netns, key)
    netns.sysctl_set(lab.server_netns, key, 1)
    try:
        yield lab
    finally:
        netns.sysctl_set(lab.server_netns, key, old)


@pytest.mark.root
def test_dscp_end_to_end(lab_client_state, reflecting_server, tmp_path):
    lab = lab_client_state
    netns.run(lab.client_netns, ["nft", "-f", "-"], input=FOREIGN)
    try:
        rows = targets(lab, ["clean", "dscp-bleach", "unreachable", "blackhole"], 2)
        records, _ = run_plugin(lab, tmp_path, rows, "dscp", "--codepoint", "46",
                                "--timeout", "2")
        ruleset = netns.run(lab.client_netns, ["nft", "list", "ruleset"]).stdout
    finally:
        netns.run(lab.client_netns, ["nft", "delete", "table", "inet", "psd_foreign_test"])
    # the plugin's table is gone, the foreign table and its rule were left alone
    assert "pathspider_dscp" not in ruleset
    assert "table inet psd_foreign_test" in ruleset and "meta mark 0x00000005" in ruleset

    table = by_target(records)
    assert set(table) == {row[0] for row in rows} and families(table) == {4, 6}
    for ip, recs in table.items():
        assert set(recs) == {0, 1} and recs[0]["sp"] > 0 and recs[1]["sp"] > 0, ip
        assert recs[0]["fwd_syn_dscp"] == 0 and recs[1]["fwd_syn_dscp"] == 46, ip
        assert (recs[0]["codepoint"], recs[1]["codepoint"]) == (0, 46)

    for ip, recs in of_class(table, "clean").items():
        base, exp = recs[0], recs[1]
        assert base["connstate"] and exp["connstate"] and exp["http_status"] == 200
        assert base["rev_syn_dscp"] == 0 and base["fwd_data_dscp"] == 0
        assert exp["fwd_data_dscp"] == 46 and exp["rev_syn_dscp"] == 46, ip
        assert dscp.conditions(base, exp) == ["dscp.46.connectivity.works",
                                              "dscp.0.replymark:0", "dscp.46.replymark:46"]

    for ip, recs in of_class(table, "dscp-bleach").items():
        exp = recs[1]
        # sent with 46, arrived as 0: the server reflected 0, the replies carry 0
        assert exp["connstate"] and exp["fwd_data_dscp"] == 46, ip
        assert exp["rev_syn_dscp"] == 0 and exp["rev_data_dscp"] == 0
        assert "dscp.46.replymark:0" in dscp.conditions(recs[0], exp)

    for ip, recs in of_class(table, "unreachable").items():
        assert all(r["icmp_unreachable"] and r["spdr_state"] == 1 for r in recs.values()), ip

    for ip, recs in of_class(table, "blackhole").items():
        # the baseline's retransmitted SYNs stayed unmarked, the experiment's stayed marked
        assert all(r["spdr_state"] == 2 for r in recs.values()), ip
        assert recs[0]["fwd_syn_dscp"] == 0 and recs[1]["fwd_syn_dscp"] == 46
