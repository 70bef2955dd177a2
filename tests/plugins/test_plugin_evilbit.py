"""The evilbit plugin: what it forges, its interpretation, and runs on the lab in both
``--connect`` modes over every lab class, IPv4 and IPv6."""
import argparse

import pytest

from pathspider.base import ForgeSkip
from pathspider.client.packets import PROTO_TCP, PROTO_UDP, TCPSyn, UDPDatagram
from pathspider.lab import plan
from pathspider.plugins import evilbit
from forge_lab import check_classes, run_on_every_class


def spider(*argv):
    parser = argparse.ArgumentParser()
    evilbit.EvilBit.register_args(parser.add_subparsers())
    return evilbit.EvilBit(1, "int:lo", parser.parse_args(["evilbit", *argv]))


# ---- options and forging ----------------------------------------------------------------------

def test_register_args_defaults():
    parser = argparse.ArgumentParser()
    evilbit.EvilBit.register_args(parser.add_subparsers())
    args = parser.parse_args(["evilbit"])
    assert (args.spider, args.connect, args.timeout) == (evilbit.EvilBit, "tcpsyn", 5.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["evilbit", "--connect", "http"])


def test_tcpsyn_marks_packet_one_of_ipv4_targets_only():
    plugin = spider()
    v4, v6 = ["198.18.64.1", 80, "t1.clean.lab.test", "1"], ["2001:db8:100::1", 80, "", "2"]
    probes = [plugin.forge(job, seq) for job in (v4, v6) for seq in (0, 1)]
    assert all(isinstance(p, TCPSyn) and p.dport == 80 for p in probes)
    assert [p.evil for p in probes] == [False, True, False, False]


def test_dnsudp_sends_a_query_for_the_hostname():
    plugin = spider("--connect", "dnsudp")
    probe = plugin.forge(["198.18.64.1", 53, "t1.clean.lab.test", "1"], 1)
    assert isinstance(probe, UDPDatagram) and probe.evil and not probe.zero_checksum
    assert b"\x02t1\x05clean\x03lab\x04test\x00" in probe.payload


def test_a_hostname_that_is_not_a_dns_name_is_skipped_not_sent():
    plugin = spider("--connect", "dnsudp")
    with pytest.raises(ForgeSkip, match="not a DNS name"):
        plugin.forge(["198.18.64.1", 53, "x\r\nHost: evil", "1"], 0)


# ---- interpretation -----------------------------------------------------------------------------

def rec(config, dip="198.18.64.1", proto=PROTO_TCP, answered=True, mark=False, **kw):
    record = {"config": config, "dip": dip, "proto": proto, "observed": True,
              "rev_syn_flags": 0x12 if answered and proto == PROTO_TCP else None,
              "dns_response_valid": answered and proto == PROTO_UDP,
              "evilbit_syn_rev": mark if proto == PROTO_TCP else None,
              "evilbit_data_rev": mark if proto == PROTO_UDP else None,
              "spdr_state": 0, "forge_skipped": None}
    record.update(kw)
    return record


@pytest.mark.parametrize("baseline, experiment, expected", [
    (rec(0), rec(1), ["evilbit.connectivity.works", "evilbit.mark.not_seen"]),
    (rec(0), rec(1, mark=True), ["evilbit.connectivity.works", "evilbit.mark.seen"]),
    (rec(0), rec(1, answered=False), ["evilbit.connectivity.broken"]),
    (rec(0, answered=False), rec(1), ["evilbit.connectivity.transient",
                                      "evilbit.mark.not_seen"]),
    (rec(0, answered=False), rec(1, answered=False), ["evilbit.connectivity.offline"]),
    (rec(0, proto=PROTO_UDP), rec(1, proto=PROTO_UDP, mark=True),
     ["evilbit.connectivity.works", "evilbit.mark.seen"]),
    (rec(0, dip="2001:db8:100::1"), rec(1, dip="2001:db8:100::1"),
     ["evilbit.connectivity.works", "evilbit.mark.not_applicable"]),
    (rec(0, observed=False), rec(1, answered=False),
     ["evilbit.connectivity.offline", "pathspider.not_observed"]),
    # without a flow, a UDP probe's own socket still tells it was answered
    (rec(0, proto=PROTO_UDP, observed=False), rec(1, proto=PROTO_UDP, observed=False),
     ["evilbit.connectivity.works", "pathspider.not_observed"]),
    (rec(0, forge_skipped="bad"), rec(1, forge_skipped="bad"), ["pathspider.forge_skipped"]),
    (rec(0), None, ["evilbit.connectivity.broken", "pathspider.not_observed"]),
])
def test_conditions(baseline, experiment, expected):
    assert evilbit.conditions(baseline, experiment) == expected


def test_combine_flows_is_the_conditions_of_the_job():
    plugin = spider()
    assert plugin.combine_flows([rec(0), rec(1, answered=False)]) == \
        ["evilbit.connectivity.broken"]
    assert plugin.combine_flows([rec(0)]) == ["evilbit.connectivity.broken",
                                              "pathspider.not_observed"]


# ---- on the lab -------------------------------------------------------------------------------

#: The (class, family) the evil bit breaks: IPv4 only (the lab drops IPv4 evil packets; IPv6
#: targets get no evil bit).
IMPAIRED = {("evilbit-drop", 4)}


@pytest.mark.root
@pytest.mark.parametrize("mode, port", [("tcpsyn", plan.HTTP_PORT), ("dnsudp", plan.DNS_PORT)])
def test_every_lab_class_in_both_families(lab, tmp_path, mode, port):
    before = lab.client_snapshot()
    table, proc = run_on_every_class(lab, tmp_path, port, "evilbit", "--connect", mode,
                                     "--timeout", "1")
    assert lab.client_snapshot() == before
    _, conds = check_classes(table, evilbit.conditions, "evilbit", IMPAIRED)
    fwd_mark = "evilbit_syn_fwd" if mode == "tcpsyn" else "evilbit_data_fwd"
    for ip, recs in table.items():
        cls, v6 = plan.class_of(ip), ":" in ip
        assert [recs[c]["evilbit_sent"] for c in (0, 1)] == [False, not v6], ip
        assert all(r["dp"] == port and r["sp"] > 0 for r in recs.values())
        if v6:
            assert "evilbit.mark.not_applicable" in conds[ip]
            assert recs[1][fwd_mark] is None            # no IPv4 header, no bit recorded
        else:
            # the bit left as forged (seen on the client's own capture), only on packet 1
            assert (recs[0][fwd_mark], recs[1][fwd_mark]) == (False, True), ip
            if cls not in ("evilbit-drop", "unreachable", "blackhole"):
                assert "evilbit.mark.not_seen" in conds[ip], ip
        if cls == "unreachable":
            assert all(r["icmp_unreachable"] for r in recs.values()), ip
    assert "IPv6 has no evil bit" in proc.stderr


@pytest.mark.root
def test_the_kernel_rst_completes_the_forged_handshake(lab, tmp_path):
    """A SYN-ACK to a forged SYN is answered by the client kernel's RST (no socket): the
    observation (the SYN-ACK) is made, and the flow ends at once."""
    table, _ = run_on_every_class(lab, tmp_path, plan.HTTP_PORT, "evilbit", hosts=1,
                                  classes=["clean"])
    for recs in table.values():
        for rec in recs.values():
            assert rec["rev_syn_flags"] == 0x12 and rec["fwd_rst"] is True
            assert rec["tcp_connected"] is False and rec["pkt_fwd"] == 2
