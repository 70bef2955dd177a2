"""The tfo plugin: interpretation logic, and end-to-end runs on the lab (IPv4 and IPv6)."""
import pytest

from pathspider.lab import netns
from pathspider.plugins import tfo
from psd_lab_run import by_target, families, of_class, run_plugin, targets


# ---- pure logic ---------------------------------------------------------------------------------

def rec(config, **kw):
    out = {"config": config, "observed": True, "connstate": True, "tfo_synkind": 34,
           "tfo_synclen": 8 if config else 0, "tfo_ackkind": 34, "tfo_ackclen": 8,
           "tfo_seq": 1000, "tfo_dlen": 60 if config else 0, "tfo_ack": 1061 if config else 1001}
    out.update(kw)
    return out


@pytest.mark.parametrize("baseline,experiment,expected", [
    (rec(0), rec(1), ["tfo.connectivity.works", "tfo.cookie.received", "tfo.syndata.acked"]),
    (rec(0, tfo_ackkind=0, tfo_ackclen=0), rec(1, tfo_synclen=0, tfo_dlen=0, tfo_ack=1001),
     ["tfo.connectivity.works", "tfo.cookie.not_received"]),        # no cookie: no SYN data
    (rec(0), rec(1, tfo_ack=0, connstate=False),
     ["tfo.connectivity.broken", "tfo.cookie.received", "tfo.syndata.failed"]),
    (rec(0), rec(1, tfo_ack=1001),
     ["tfo.connectivity.works", "tfo.cookie.received", "tfo.syndata.not_acked"]),
    (rec(0, connstate=False, tfo_ackkind=0, tfo_ackclen=0), None,
     ["tfo.connectivity.offline", "tfo.cookie.not_received"]),
])
def test_conditions(baseline, experiment, expected):
    assert tfo.conditions(baseline, experiment) == expected


def test_syn_data_ack_wraps_around():
    assert tfo.syn_data_acked({"tfo_seq": 2**32 - 10, "tfo_dlen": 20, "tfo_ack": 11})
    assert not tfo.syn_data_acked({"tfo_seq": 5, "tfo_dlen": 0, "tfo_ack": 6})


def test_skipped_experiment_yields_no_record_and_job_is_untouched():
    spider = tfo.TFO.__new__(tfo.TFO)
    job = ["198.18.70.1", 80, "t1.blackhole.lab.test", "1"]
    pcs = spider.pre_connect(job)
    conn = spider.connect(job, pcs, 1)        # the baseline did not succeed
    assert conn.state == tfo.Conn.SKIPPED
    assert spider.post_connect(job, conn, pcs, 1) is tfo.NO_RESULT
    assert job == ["198.18.70.1", 80, "t1.blackhole.lab.test", "1"]


# ---- end to end on the lab -------------------------------------------------------------------

@pytest.mark.root
def test_tfo_end_to_end(lab_client_state, tmp_path):
    lab = lab_client_state
    key = "net.ipv4.tcp_fastopen"
    original = netns.sysctl_get(lab.client_netns, key)
    # Client TFO off and no cached cookies: the plugin must switch TFO on, and put 0 back.
    netns.sysctl_set(lab.client_netns, key, 0)
    netns.run(lab.client_netns, ["ip", "tcp_metrics", "flush", "all"])
    try:
        # Few hosts per class: the kernel's TCP metrics cache (where the client keeps its
        # cookies) evicts entries from hash buckets deeper than 5, and the lab's IPv6 plan
        # puts many targets into the same bucket (see docs/plugins/tfo.md).
        rows = targets(lab, ["clean", "tfo-strip", "unreachable", "blackhole"], 2)
        records, _ = run_plugin(lab, tmp_path, rows, "tfo", "--timeout", "2")
        assert netns.sysctl_get(lab.client_netns, key) == "0"
    finally:
        netns.sysctl_set(lab.client_netns, key, original)

    table = by_target(records)
    assert set(table) == {row[0] for row in rows} and families(table) == {4, 6}

    for ip, recs in of_class(table, "clean").items():
        base, exp = recs[0], recs[1]
        assert base["connstate"] and base["http_status"] == 200
        assert base["tfo_synkind"] == 34 and base["tfo_synclen"] == 0, ip
        assert base["tfo_ackkind"] == 34 and base["tfo_ackclen"] == 8
        assert exp["connstate"] and exp["http_status"] == 200
        assert exp["tfo_synclen"] == 8 and exp["tfo_dlen"] > 0, ip
        assert tfo.syn_data_acked(exp)
        assert base["cookie0_time"] > 0 and exp["cookie1_time"] > 0

    for ip, recs in of_class(table, "tfo-strip").items():
        base, exp = recs[0], recs[1]
        assert base["connstate"] and exp["connstate"], ip
        assert base["tfo_synkind"] == 34 and base["tfo_ackkind"] == 0      # no cookie
        assert exp["tfo_synclen"] == 0 and exp["tfo_dlen"] == 0             # no data on SYN
        assert tfo.conditions(base, exp) == ["tfo.connectivity.works",
                                             "tfo.cookie.not_received"]

    for ip, recs in of_class(table, "unreachable").items():
        assert set(recs) == {0}, ip                                      # experiment skipped
        assert recs[0]["icmp_unreachable"] and recs[0]["spdr_state"] == 1
        assert recs[0]["cookie1_time"] is None

    for ip, recs in of_class(table, "blackhole").items():
        assert set(recs) == {0}, ip
        assert recs[0]["spdr_state"] == 2 and recs[0]["sp"] > 0 and recs[0]["observed"]
