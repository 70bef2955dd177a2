"""The ecn plugin: interpretation logic, and end-to-end runs on the lab (IPv4 and IPv6).

Run the lab tests with ``PATHSPIDER_TEST_LAB=<name>`` to use a lab of your own.
"""
import signal
import types

import pytest

from pathspider.observer.tcp import TCP_ACK, TCP_CWR, TCP_ECE, TCP_SYN
from pathspider.plugins import ecn
from psd_lab_run import (by_target, families, of_class, read_records, run_plugin,
                         start_plugin, targets, wait_for_log)

SYN, SEC, SA, SAE = TCP_SYN, TCP_SYN | TCP_ECE | TCP_CWR, TCP_SYN | TCP_ACK, \
    TCP_SYN | TCP_ACK | TCP_ECE


# ---- pure logic ---------------------------------------------------------------------------------

def test_syn_track_counts_forward_syns_and_keeps_the_first_flags():
    rec = {}
    ecn.ecn_syn_setup(rec, None)
    for flags, rev in ((SEC, False), (SA, True), (SYN, False), (TCP_ACK, False)):
        assert ecn.ecn_syn_track(rec, types.SimpleNamespace(flags=flags), rev) is True
    assert rec == {"fwd_syn_first_flags": SEC, "fwd_syn_count": 2}


@pytest.mark.parametrize("first,last,count,expected", [
    (SEC, SYN, 2, True),       # ECN SYN unanswered, retried without ECN
    (SEC, SEC, 3, False),      # retried with ECN (fallback off): no fallback
    (SYN, SYN, 2, False),      # baseline retransmission
    (SEC, SEC, 1, False),
    (None, None, 0, False),
])
def test_fallback_seen(first, last, count, expected):
    flow = {"fwd_syn_first_flags": first, "fwd_syn_flags": last, "fwd_syn_count": count}
    assert ecn.fallback_seen(flow) is expected


def flow(config, **kw):
    rec = {"config": config, "observed": True, "connstate": True, "tcp_connected": True,
           "rev_syn_flags": SAE if config else SA, "rev_ez": False, "rev_eo": False,
           "rev_ce": False, "ecn_fallback": False}
    rec.update(kw)
    return rec


@pytest.mark.parametrize("baseline,experiment,expected", [
    (flow(0), flow(1, rev_ez=True),
     ["ecn.connectivity.works", "ecn.negotiation.succeeded", "ecn.ipmark.ect0.seen",
      "ecn.ipmark.ect1.not_seen", "ecn.ipmark.ce.not_seen"]),
    (flow(0), flow(1, ecn_fallback=True, rev_syn_flags=SA),
     ["ecn.connectivity.broken", "ecn.fallback.seen", "ecn.negotiation.failed",
      "ecn.ipmark.ect0.not_seen", "ecn.ipmark.ect1.not_seen", "ecn.ipmark.ce.not_seen"]),
    (flow(0), flow(1, connstate=False, tcp_connected=False),
     ["ecn.connectivity.broken"]),
    (flow(0, connstate=False), flow(1, rev_syn_flags=SAE | TCP_CWR, rev_ce=True),
     ["ecn.connectivity.transient", "ecn.negotiation.reflected", "ecn.ipmark.ect0.not_seen",
      "ecn.ipmark.ect1.not_seen", "ecn.ipmark.ce.seen"]),
    ({"config": 0, "observed": False, "connstate": False},
     {"config": 1, "observed": False, "connstate": False},
     ["ecn.connectivity.offline", "pathspider.not_observed"]),
])
def test_conditions(baseline, experiment, expected):
    assert ecn.conditions(baseline, experiment) == expected


def test_register_args_defaults():
    import argparse
    parser = argparse.ArgumentParser()
    ecn.ECN.register_args(parser.add_subparsers())
    args = parser.parse_args(["ecn"])
    assert (args.spider, args.timeout, args.connect, args.no_ecn_fallback) == \
        (ecn.ECN, 5.0, "http", False)


# ---- end to end on the lab -------------------------------------------------------------------

CLASSES = ["clean", "ecn-syn-drop", "ecn-bleach", "unreachable", "blackhole"]


@pytest.fixture(scope="module")
def ecn_run(lab, tmp_path_factory):
    """One ecn run over three targets per class and family (shared by the checks below)."""
    rows = targets(lab, CLASSES, 3)
    before = lab.client_snapshot()
    records, proc = run_plugin(lab, tmp_path_factory.mktemp("ecn"), rows, "ecn",
                               "--timeout", "2")
    after = lab.client_snapshot()
    return rows, by_target(records), before, after, proc



@pytest.mark.root
def test_every_target_has_both_records_with_real_ports(ecn_run):
    rows, table, *_ = ecn_run
    assert set(table) == {row[0] for row in rows}
    assert families(table) == {4, 6}
    for ip, recs in table.items():
        assert set(recs) == {0, 1}, ip
        for rec in recs.values():
            assert rec["observed"] is True, rec
            assert rec["sp"] > 0 and rec["dp"] == 80
            assert rec["sip"] in ("198.18.0.2", "2001:db8:0:1::2")
            assert rec["fwd_syn_count"] >= 1


@pytest.mark.root
def test_clean_targets_work_and_negotiate(ecn_run):
    for ip, recs in of_class(ecn_run[1], "clean").items():
        assert recs[0]["fwd_syn_first_flags"] == SYN and recs[0]["connstate"]
        assert recs[0]["rev_syn_flags"] == SA and not recs[0]["rev_ez"]
        assert recs[1]["fwd_syn_flags"] == SEC and recs[1]["fwd_syn_count"] == 1
        assert recs[1]["http_status"] == 200 and recs[1]["ecn_fallback"] is False
        assert ecn.conditions(recs[0], recs[1]) == [
            "ecn.connectivity.works", "ecn.negotiation.succeeded", "ecn.ipmark.ect0.seen",
            "ecn.ipmark.ect1.not_seen", "ecn.ipmark.ce.not_seen"], ip


@pytest.mark.root
def test_ecn_syn_drop_is_detected_despite_the_kernel_fallback(ecn_run):
    for ip, recs in of_class(ecn_run[1], "ecn-syn-drop").items():
        base, exp = recs[0], recs[1]
        assert base["connstate"] and base["fwd_syn_count"] == 1 and not base["ecn_fallback"]
        assert exp["fwd_syn_first_flags"] == SEC and exp["fwd_syn_flags"] == SYN
        assert exp["fwd_syn_count"] >= 2 and exp["ecn_fallback"] is True
        assert exp["connect_time"] >= 0.9          # the kernel retried after its SYN timeout
        conds = ecn.conditions(base, exp)
        assert conds[:3] == ["ecn.connectivity.broken", "ecn.fallback.seen",
                             "ecn.negotiation.failed"], ip


@pytest.mark.root
def test_bleached_targets_negotiate_but_show_no_marks(ecn_run):
    for ip, recs in of_class(ecn_run[1], "ecn-bleach").items():
        exp = recs[1]
        assert recs[0]["connstate"] and exp["connstate"] and exp["http_status"] == 200
        assert exp["rev_syn_flags"] == SAE
        assert not (exp["rev_ez"] or exp["rev_eo"] or exp["rev_ce"]), ip
        assert "ecn.ipmark.ect0.not_seen" in ecn.conditions(recs[0], exp)


@pytest.mark.root
def test_unreachable_targets_carry_the_icmp_evidence(ecn_run):
    for ip, recs in of_class(ecn_run[1], "unreachable").items():
        for rec in recs.values():
            assert rec["icmp_unreachable"] is True and rec["connstate"] is False, ip
            assert rec["spdr_state"] == 1 and rec["connect_time"] < 0.5


@pytest.mark.root
def test_blackholed_targets_time_out_and_stay_in_the_output(ecn_run):
    for ip, recs in of_class(ecn_run[1], "blackhole").items():
        for rec in recs.values():
            assert rec["spdr_state"] == 2 and rec["connstate"] is False, ip
            assert rec["sp"] > 0 and rec["observed"] and not rec["tcp_connected"]
        assert ecn.connectivity(recs[0], recs[1]) == "ecn.connectivity.offline"


@pytest.mark.root
def test_client_state_is_restored_after_the_run(ecn_run):
    *_, before, after, proc = ecn_run
    assert after == before
    assert "applying" not in proc.stdout


@pytest.mark.root
def test_no_fallback_option_makes_syn_drop_fail(lab_client_state, tmp_path):
    lab = lab_client_state
    rows = targets(lab, ["clean", "ecn-syn-drop"], 1)
    records, _ = run_plugin(lab, tmp_path, rows, "ecn", "--timeout", "1.5", "--no-ecn-fallback",
                            "--connect", "tcp")
    table = by_target(records)
    for ip, recs in of_class(table, "ecn-syn-drop").items():
        exp = recs[1]
        assert exp["spdr_state"] == 2 and exp["fwd_syn_flags"] == SEC, ip
        assert exp["fwd_syn_count"] >= 2 and exp["ecn_fallback"] is False
        assert ecn.connectivity(recs[0], exp) == "ecn.connectivity.broken"
    for ip, recs in of_class(table, "clean").items():
        # tcp mode, as 1.0: no data, so no ECT marks can be seen even on a clean path
        assert recs[1]["connstate"] and recs[1]["http_status"] is None
        assert recs[1]["rev_syn_flags"] == SAE and not recs[1]["rev_ez"], ip


@pytest.mark.root
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_restores_the_client(lab_client_state, tmp_path, signum):
    lab = lab_client_state
    rows = targets(lab, ["blackhole"], 4)
    proc, outfile = start_plugin(lab, tmp_path, rows, "ecn", "--timeout", "3",
                                 "--no-ecn-fallback", workers=2)
    try:
        wait_for_log(proc, "applying configuration 1")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err[-2000:]
    # the jobs already started were finished and written before the run ended
    assert all(rec["spdr_state"] == 2 for rec in read_records(outfile))
