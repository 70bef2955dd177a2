"""Pure-logic tests of result pairing and the per-group summary table."""
import io
import json
import logging

from pathspider.cli import summary


def rec(dip, config, **fields):
    base = {"dip": dip, "dp": 80, "host": "", "rank": "1", "config": config,
            "observed": True, "connstate": True, "tcp_connected": True,
            "rev_syn_flags": 0x52 if config else 0x12, "rev_ez": bool(config),
            "rev_eo": False, "rev_ce": False, "ecn_fallback": False}
    base.update(fields)
    return base


def test_pairing_keeps_order_and_repeats():
    records = [rec("198.18.64.1", 0), rec("198.18.64.2", 0), rec("198.18.64.1", 1),
               rec("198.18.64.1", 0), rec("198.18.64.2", 1), rec("198.18.64.1", 1)]
    pairs = summary.pair_records(records)
    assert [(k[0], b["config"], e["config"]) for k, b, e in pairs] == [
        ("198.18.64.1", 0, 1), ("198.18.64.1", 0, 1), ("198.18.64.2", 0, 1)]


def test_missing_experiment_is_none():
    pairs = summary.pair_records([rec("198.18.64.1", 0)])
    assert pairs[0][2] is None


def test_ecn_summary_per_lab_class():
    clean = "198.18.64.7"                      # first /24 of the lab plan: clean
    syndrop = "198.18.66.7"                    # third: ecn-syn-drop
    bleach = "2001:db8:100:3000::7"               # ecn-bleach's /64
    records = [
        rec(clean, 0), rec(clean, 1),
        rec(syndrop, 0), rec(syndrop, 1, ecn_fallback=True, rev_syn_flags=0x12, rev_ez=False),
        rec(bleach, 0), rec(bleach, 1, rev_ez=False),
    ]
    table = summary.summarise(records, "ecn", "lab")
    assert list(table) == ["clean", "ecn-syn-drop", "ecn-bleach"]
    assert table["clean"]["works"] == 1 and table["clean"]["ECT seen"] == 1
    assert table["clean"]["negotiated"] == 1
    assert table["ecn-syn-drop"]["broken"] == 1 and table["ecn-syn-drop"]["fallback"] == 1
    assert table["ecn-syn-drop"]["ECN ok"] == 0 and table["ecn-syn-drop"]["no ECN ok"] == 1
    assert table["ecn-bleach"]["works"] == 1 and table["ecn-bleach"]["negotiated"] == 1
    assert table["ecn-bleach"]["ECT seen"] == 0
    text = summary.format_table(table, "ecn")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["group", "targets", "no"]
    assert lines[-1].startswith("total") and lines[-1].split()[1] == "3"


def test_by_family_and_group_none():
    records = [rec("198.18.64.1", 0), rec("198.18.64.1", 1),
               rec("2001:db8:100::1", 0), rec("2001:db8:100::1", 1)]
    assert list(summary.summarise(records, "ecn", "lab", by_family=True)) == ["clean v4",
                                                                                "clean v6"]
    assert dict(summary.summarise(records, "ecn", "none"))["all"]["targets"] == 2


def test_bad_lines_are_reported(caplog):
    stream = io.StringIO(json.dumps(rec("198.18.64.1", 0)) + "\n{oops\n\n[1]\n")
    with caplog.at_level(logging.WARNING, logger="pathspider.cli.summary"):
        records = list(summary.read_records(stream, "r.ndjson"))
    assert len(records) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("r.ndjson line 2" in m for m in messages)
    assert any("r.ndjson line 4" in m for m in messages)


def test_tfo_and_dscp_columns():
    tfo = [rec("198.18.64.1", 0, tfo_ackkind=34, tfo_ackclen=8),
           rec("198.18.64.1", 1, tfo_dlen=40, tfo_seq=100, tfo_ack=141)]
    table = summary.summarise(tfo, "tfo", "none")["all"]
    assert table["cookie"] == 1 and table["SYN data acked"] == 1 and table["works"] == 1
    dscp = [rec("198.18.68.1", 0, fwd_syn_dscp=0, rev_syn_dscp=0, codepoint=0),
            rec("198.18.68.1", 1, fwd_syn_dscp=48, rev_syn_dscp=0, codepoint=48)]
    table = summary.summarise(dscp, "dscp", "lab")["dscp-bleach"]
    assert table["mark sent"] == 1 and table["0 back"] == 1 and table["mark back"] == 0
