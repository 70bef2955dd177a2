"""The udpzero plugin: what it forges (IPv4 and IPv6), its interpretation, runs on the lab
over every class and family, and a hostile host name that never reaches a packet."""
import argparse

import pytest

from pathspider.base import ForgeSkip
from pathspider.client.packets import PROTO_UDP, UDPDatagram
from pathspider.lab import plan
from pathspider.plugins import udpzero
from forge_lab import check_classes, run_on_every_class
from psd_lab_run import run_plugin


def spider(*argv):
    parser = argparse.ArgumentParser()
    udpzero.UDPZero.register_args(parser.add_subparsers())
    return udpzero.UDPZero(1, "int:lo", parser.parse_args(["udpzero", *argv]))


V4 = ["198.18.64.1", 53, "t1.clean.lab.test", "1"]
V6 = ["2001:db8:100::1", 53, "t1.clean.lab.test", "2"]


# ---- options and forging ----------------------------------------------------------------------

def test_register_args_defaults():
    plugin = spider()
    assert (plugin.conn_timeout, plugin.ipv6_zero) == (5.0, False)
    assert spider("--ipv6-zero-checksum", "-t", "2").ipv6_zero is True


def test_packet_one_has_a_zero_checksum_for_ipv4_only_by_default():
    plugin = spider()
    probes = [plugin.forge(job, seq) for job in (V4, V6) for seq in (0, 1)]
    assert all(isinstance(p, UDPDatagram) and p.dport == 53 and not p.evil for p in probes)
    assert [p.zero_checksum for p in probes] == [False, True, False, False]


def test_ipv6_zero_checksum_option_sends_it_as_2_0_1_did():
    plugin = spider("--ipv6-zero-checksum")
    assert [plugin.forge(V6, seq).zero_checksum for seq in (0, 1)] == [False, True]


def test_a_hostname_that_is_not_a_dns_name_is_skipped_not_sent():
    with pytest.raises(ForgeSkip, match="not a DNS name"):
        spider().forge(["198.18.64.1", 53, "a b", "1"], 1)


# ---- interpretation -----------------------------------------------------------------------------

def rec(config, answered=True, zero=None, **kw):
    record = {"config": config, "dip": "198.18.64.1", "proto": PROTO_UDP, "observed": True,
              "dns_response_valid": answered, "spdr_state": 0 if answered else 2,
              "udp_zero_checksum_sent": bool(config) if zero is None else zero,
              "forge_skipped": None}
    record.update(kw)
    return record


@pytest.mark.parametrize("baseline, experiment, expected", [
    (rec(0), rec(1), ["udpzero.connectivity.works"]),
    (rec(0), rec(1, answered=False), ["udpzero.connectivity.broken"]),
    (rec(0, answered=False), rec(1), ["udpzero.connectivity.transient"]),
    (rec(0, answered=False), rec(1, answered=False), ["udpzero.connectivity.offline"]),
    (rec(0), rec(1, zero=False),
     ["udpzero.connectivity.works", "udpzero.zero_checksum.not_applicable"]),
    (rec(0, observed=False, spdr_state=2), rec(1),
     ["udpzero.connectivity.transient", "pathspider.not_observed"]),
    (rec(0, forge_skipped="x"), rec(1, forge_skipped="x"), ["pathspider.forge_skipped"]),
])
def test_conditions(baseline, experiment, expected):
    assert udpzero.conditions(baseline, experiment) == expected


def test_combine_flows_is_the_conditions_of_the_job():
    assert spider().combine_flows([rec(0), rec(1, answered=False)]) == \
        ["udpzero.connectivity.broken"]


# ---- on the lab -------------------------------------------------------------------------------

@pytest.mark.root
def test_every_lab_class_in_both_families(lab, tmp_path):
    before = lab.client_snapshot()
    table, proc = run_on_every_class(lab, tmp_path, plan.DNS_PORT, "udpzero", "-t", "1")
    assert lab.client_snapshot() == before
    _, conds = check_classes(table, udpzero.conditions, "udpzero", {("udp-zero-drop", 4)})
    for ip, recs in table.items():
        v6 = ":" in ip
        assert [recs[c]["udp_zero_checksum_sent"] for c in (0, 1)] == [False, not v6], ip
        if plan.class_of(ip) not in ("unreachable", "blackhole"):
            # the zero left as forged (the client's own capture), only on packet 1
            assert (recs[0]["udp_zero_checksum_fwd"], recs[1]["udp_zero_checksum_fwd"]) == \
                (False, not v6), ip
        assert ("udpzero.zero_checksum.not_applicable" in conds[ip]) is v6
        if plan.class_of(ip) == "unreachable":
            assert all(r["spdr_state"] == 1 and r["answer"] == "EHOSTUNREACH"
                       and r["icmp_unreachable"] for r in recs.values()), ip
    assert "a zero UDP checksum is invalid in IPv6" in proc.stderr


@pytest.mark.root
def test_ipv6_zero_checksums_are_dropped_by_every_receiver(lab, tmp_path):
    """With --ipv6-zero-checksum (2.0.1's behaviour) every IPv6 target that answers at all
    comes out broken: the receiver's kernel drops the invalid datagram, whatever the path."""
    table, _ = run_on_every_class(lab, tmp_path, plan.DNS_PORT, "udpzero",
                                  "--ipv6-zero-checksum", "-t", "1",
                                  classes=["clean", "udp-zero-drop", "evilbit-drop",
                                           "blackhole"])
    impaired = {("udp-zero-drop", 4)} | {(c, 6) for c in ("clean", "udp-zero-drop",
                                                          "evilbit-drop")}
    check_classes(table, udpzero.conditions, "udpzero", impaired)


@pytest.mark.root
def test_a_hostile_hostname_never_reaches_a_packet(lab_client_state, tmp_path):
    """The target reader refuses a host name that is not a DNS name: the row is skipped with
    a warning, and nothing is sent to its address (no flow, no record)."""
    lab = lab_client_state
    good = lab.targets(1, ["clean"], "4", plan.DNS_PORT)[0]
    rows = [["198.18.64.9", 53, "evil.lab.test\\r\\nX-Injected:1", "1"],
            ["198.18.64.10", 53, "bad host.lab.test", "2"], good]
    records, proc = run_plugin(lab, tmp_path, rows, "udpzero", "-t", "1")
    assert {r["dip"] for r in records} == {good[0]}
    assert "2 bad rows skipped" in proc.stderr
    assert "0 observed flows without a result" in proc.stderr

