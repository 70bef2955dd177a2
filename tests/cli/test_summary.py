"""Pure-logic tests of result pairing and the per-group summary table, and of the command
finding the plugin's summary among the discovered plugins."""
import argparse
import io
import json
import logging
import subprocess
import sys
import textwrap

import pytest

from pathspider.cli import summary
from pathspider.lab import plan

PLUGINS = summary.summary_plugins()
ECN, TFO, DSCP = PLUGINS["ecn"], PLUGINS["tfo"], PLUGINS["dscp"]
LAB = summary.group_function("lab", class_of=plan.class_of)
NONE = summary.group_function("none")


def lab_table(records, plugin, by_family=False):
    """What ``pathspider summary --group lab`` computes: lab groups in the plan's order."""
    group = summary.group_function("lab", by_family, plan.class_of)
    return summary.order_groups(summary.summarise(records, plugin, group), plan.CLASS_NAMES)


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
    table = lab_table(records, ECN)
    assert list(table) == ["clean", "ecn-syn-drop", "ecn-bleach"]
    assert table["clean"]["works"] == 1 and table["clean"]["ECT seen"] == 1
    assert table["clean"]["negotiated"] == 1
    assert table["ecn-syn-drop"]["broken"] == 1 and table["ecn-syn-drop"]["fallback"] == 1
    assert table["ecn-syn-drop"]["ECN ok"] == 0 and table["ecn-syn-drop"]["no ECN ok"] == 1
    assert table["ecn-bleach"]["works"] == 1 and table["ecn-bleach"]["negotiated"] == 1
    assert table["ecn-bleach"]["ECT seen"] == 0
    text = summary.format_table(table, ECN)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["group", "targets", "no"]
    assert lines[-1].startswith("total") and lines[-1].split()[1] == "3"


def test_by_family_and_group_none():
    records = [rec("198.18.64.1", 0), rec("198.18.64.1", 1),
               rec("2001:db8:100::1", 0), rec("2001:db8:100::1", 1)]
    assert list(lab_table(records, ECN, by_family=True)) == ["clean v4", "clean v6"]
    assert dict(summary.summarise(records, ECN, NONE))["all"]["targets"] == 2


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
           rec("198.18.64.1", 1, tfo_synclen=8, tfo_dlen=40, tfo_seq=100, tfo_ack=141)]
    table = summary.summarise(tfo, TFO, NONE)["all"]
    assert table["cookie"] == 1 and table["SYN data acked"] == 1 and table["works"] == 1
    dscp = [rec("198.18.68.1", 0, fwd_syn_dscp=0, rev_syn_dscp=0, codepoint=0),
            rec("198.18.68.1", 1, fwd_syn_dscp=48, rev_syn_dscp=0, codepoint=48)]
    table = summary.summarise(dscp, DSCP, LAB)["dscp-bleach"]
    assert table["mark sent"] == 1 and table["0 back"] == 1 and table["mark back"] == 0


# ---- the summary comes from the plugin class ---------------------------------------------------

def toy_conditions(baseline, experiment):
    """A plugin's own interpretation: whether the experiment's record says ``toy``."""
    return ["toy.yes" if (experiment or {}).get("toy") else "toy.no"]


class Toy:
    """A plugin class that declares a summary (no plugin module, no engine needed)."""
    command_name = "toy"
    summary_columns = (("toy", lambda c, b, e: "toy.yes" in c),
                       ("both ok", lambda c, b, e: bool(b and e and b["connstate"]
                                                        and e["connstate"])))
    summary_legend = "toy: the experiment said toy."
    conditions = staticmethod(toy_conditions)


def by_last_octet(key):
    """A caller's grouping: odd or even last address byte."""
    return "odd" if int(key[0].rsplit(".", 1)[1]) % 2 else "even"


def test_summary_uses_the_plugin_class_and_the_callers_group_function():
    records = [rec("192.0.2.1", 0), rec("192.0.2.1", 1, toy=True),
               rec("192.0.2.2", 0), rec("192.0.2.2", 1, connstate=False),
               rec("192.0.2.3", 0)]
    table = summary.summarise(records, Toy, by_last_octet)
    assert list(table) == ["odd", "even"]                  # groups in the order seen
    assert dict(table["odd"]) == {"targets": 2, "toy": 1, "both ok": 1}
    assert dict(table["even"]) == {"targets": 1}
    lines = summary.format_table(table, Toy).splitlines()
    assert lines[0].split() == ["group", "targets", "toy", "both", "ok"]
    assert lines[-1].split() == ["total", "3", "1", "1"]


def test_order_groups_puts_unknown_groups_last():
    table = {name: {} for name in ("zz v6", "b v6", "zz v4", "a v4", "b v4")}
    assert list(summary.order_groups(table, ("b", "a"))) == ["b v4", "b v6", "a v4", "zz v4",
                                                            "zz v6"]


def test_bundled_plugins_are_found_by_their_command():
    assert {"ecn", "tfo", "dscp"} <= set(PLUGINS)
    assert [(name, cls.__name__) for name, cls in sorted(PLUGINS.items())
            if name in ("dscp", "ecn", "tfo")] == [("dscp", "DSCP"), ("ecn", "ECN"),
                                                   ("tfo", "TFO")]


class Inherits(Toy):
    """Inherits the summary but names no command of its own: not offered."""


class Undeclared:
    command_name = "undeclared"


@pytest.fixture
def toy_discovered(monkeypatch):
    """The plugin loader finds Toy (a third-party plugin with a summary) next to the others."""
    real = summary.load_plugins
    monkeypatch.setattr(summary, "load_plugins",
                        lambda: (real()[0] + [Toy, Inherits, Undeclared], []))


def test_a_third_party_plugin_with_a_summary_is_offered(toy_discovered, tmp_path, capsys):
    assert summary.summary_plugins()["toy"] is Toy
    assert "undeclared" not in summary.summary_plugins()
    results = tmp_path / "r.ndjson"
    results.write_text("".join(json.dumps(r) + "\n" for r in (
        rec("192.0.2.1", 0), rec("192.0.2.1", 1, toy=True), rec("192.0.2.2", 0))))
    assert summary.cli(["--plugin", "toy", "--group", "none", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["group", "targets", "toy", "both", "ok"]
    assert out[1].split() == ["all", "2", "1", "1"] and out[2] == "toy: the experiment said toy."
    parser = argparse.ArgumentParser()
    summary.register_args(parser.add_subparsers())
    assert parser.parse_args(["summary", "--plugin", "toy"]).plugin == "toy"


def test_lab_rows_follow_the_plan_with_unknown_addresses_last(tmp_path, capsys):
    records = [rec("192.0.2.9", 0), rec("192.0.2.9", 1),               # not a lab target
               rec("198.18.66.7", 0), rec("198.18.66.7", 1),           # ecn-syn-drop
               rec("2001:db8:100::1", 0), rec("2001:db8:100::1", 1),   # clean, IPv6
               rec("198.18.64.7", 0), rec("198.18.64.7", 1)]           # clean, IPv4
    results = tmp_path / "r.ndjson"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = argparse.Namespace(plugin="ecn", group="lab", by_family=True, results=str(results))
    assert summary.main(args) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:6]]
    assert rows == [["clean", "v4"], ["clean", "v6"], ["ecn-syn-drop", "v4"], ["other", "v4"],
                    ["total", "4"]]


def test_summarising_does_not_import_the_lab():
    """Only the command line's ``--group lab`` brings the lab in."""
    code = textwrap.dedent("""
        import sys
        from pathspider.cli import summary
        ecn = summary.summary_plugins()["ecn"]
        records = [{"dip": "198.18.64.1", "config": 0, "connstate": True}]
        summary.summarise(records, ecn, summary.group_function("host", by_family=True))
        assert not [m for m in sys.modules if m.startswith("pathspider.lab")], sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- --format jobs lines ------------------------------------------------------------------------

def job_line(dip, baseline, experiment, conditions=None, **fields):
    line = {"dip": dip, "dp": 80, "domain": "", "rank": 1, **fields,
            "flow_results": [r for r in (baseline, experiment) if r is not None],
            "missed_flows": 0}
    if conditions is not None:
        line["conditions"] = conditions
    return line


def test_job_lines_use_their_written_conditions_and_records():
    clean, syndrop = "198.18.64.7", "198.18.66.7"
    lines = [
        job_line(clean, rec(clean, 0), rec(clean, 1), ECN.conditions(rec(clean, 0),
                                                                     rec(clean, 1))),
        # no conditions written: the plugin's are computed from the records
        job_line(syndrop, rec(syndrop, 0),
                 rec(syndrop, 1, ecn_fallback=True, rev_syn_flags=0x12, rev_ez=False)),
    ]
    table = lab_table(lines, ECN)
    assert table["clean"]["works"] == 1 and table["clean"]["ECT seen"] == 1
    assert table["ecn-syn-drop"]["broken"] == 1 and table["ecn-syn-drop"]["fallback"] == 1


def test_job_lines_and_records_mixed_and_from_a_file(tmp_path):
    clean, bleach = "198.18.64.7", "2001:db8:100:3000::7"
    lines = [job_line(clean, rec(clean, 0), rec(clean, 1), ["ecn.connectivity.works"],
                      info={"x": 1}),
             rec(bleach, 0), rec(bleach, 1, rev_ez=False)]
    path = tmp_path / "mixed.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with open(path) as stream:
        records = list(summary.read_records(stream))
    assert len(records) == 3
    table = lab_table(records, ECN)
    assert table["clean"]["targets"] == 1 and table["clean"]["works"] == 1
    assert table["ecn-bleach"]["targets"] == 1 and table["ecn-bleach"]["ECT seen"] == 0


def test_single_connection_job_lines():
    mss = PLUGINS["mss"]
    rewrite = "198.18.74.9"
    record = {"config": 0, "observed": True, "connstate": True, "tcp_connected": True,
              "mss_value_fwd": 1460, "mss_value_rev": 536, "dip": rewrite}
    table = lab_table([job_line(rewrite, record, None), dict(record, dp=80, host="",
                                                             rank="1")], mss)
    assert table["mss-rewrite"]["targets"] == 2 and table["mss-rewrite"]["deflated"] == 2
