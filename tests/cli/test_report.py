"""``pathspider report`` and ``pathspider export --pto`` on results made here: counting per group,
streaming, hostile input escaped, the page rendered in headless Chromium, the observation set
format. (The same on real lab runs: test_report_lab.py.)"""
import json
import tracemalloc

import pytest

from pathspider.cli import results
from pathspider.cli.reporting import pto, tally
from pathspider.engine.discovery import load_plugins
from pathspider.lab import plan
from report_checks import (assert_looks_like_a_report, assert_self_contained,
                           check_observation_set, colour_count, needs_chromium, pathspider,
                           read_csv, screenshot)

PLUGINS = results.summary_plugins(load_plugins)


def rec(dip, config, **fields):
    """An ecn record as the plugin writes it (connected, ECN negotiated, ECT marks back)."""
    base = {"dip": dip, "dp": 80, "host": "", "rank": "7", "config": config, "sip": (
        "2001:db8:0:1::2" if ":" in dip else "198.18.0.2"),
        "observed": True, "connstate": True, "tcp_connected": True,
        "rev_syn_flags": 0x52 if config else 0x12, "rev_ez": bool(config), "rev_eo": False,
        "rev_ce": False, "ecn_fallback": False, "tstart": "2024-05-01 12:00:00.5",
        "tstop": "2024-05-01 12:00:01.25"}
    base.update(fields)
    return base


def lab_records(hosts=3):
    """Records of every lab class and both families, impaired as the lab impairs them."""
    out = []
    for cls in plan.CLASS_NAMES:
        for family in (4, 6):
            for host in range(1, hosts + 1):
                ip = str(plan.target_address(cls, host, family))
                baseline, experiment = rec(ip, 0, rank=str(host * 40)), rec(ip, 1,
                                                                          rank=str(host * 40))
                if cls == "ecn-syn-drop":
                    experiment.update(ecn_fallback=True, rev_syn_flags=0x12, rev_ez=False)
                if cls in ("unreachable", "blackhole"):
                    for side in (baseline, experiment):
                        side.update(connstate=False, tcp_connected=False)
                out += [baseline, experiment]
    return out


def write(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# ---- pure logic --------------------------------------------------------------------------------

def test_groups_of_a_target():
    assert [tally.rank_bucket((None, 0, "", r)) for r in ("1", 10, "11", "1000", "1001",
                                                          "999999", "1000001", "", "x", "0")] \
        == ["1–10", "1–10", "11–100", "101–1k", "1k–10k", "100k–1M", ">1M", "no rank",
            "no rank", "no rank"]
    assert [tally.family((ip,)) for ip in ("198.18.64.1", "2001:DB8::1", "<x>", None)] == [
        "IPv4", "IPv6", "not an address", "not an address"]
    assert tally.split_condition("ecn.connectivity.works") == ("ecn.connectivity", "works")
    assert tally.split_condition("mss.option.local.value:1460") == ("mss.option.local.value",
                                                                    "1460")
    assert tally.split_condition("odd") == ("odd", "odd")


def test_tally_counts_conditions_and_columns_per_group():
    ecn = PLUGINS["ecn"]
    counted = tally.Tally(ecn, [tally.Grouping("lab class", tally.lab_class(plan.class_of),
                                               plan.CLASS_NAMES),
                                tally.Grouping("IP version", tally.family, tally.FAMILY_ORDER)])
    for target in results.targets(lab_records(), ecn):
        counted.add(*target)
    lab = dict(counted.groups("lab class"))
    assert [name for name, _ in counted.groups("lab class")] == list(plan.CLASS_NAMES)
    assert lab["ecn-syn-drop"].targets == 6
    assert lab["ecn-syn-drop"].conditions["ecn.connectivity.broken"] == 6
    assert lab["ecn-syn-drop"].columns["fallback"] == 6
    assert lab["clean"].conditions["ecn.connectivity.works"] == 6
    assert lab["blackhole"].conditions["ecn.connectivity.offline"] == 6
    assert dict(counted.groups("IP version"))["IPv6"].targets == 3 * len(plan.CLASS_NAMES)
    assert "ecn.connectivity" in counted.dimensions()


def test_hostile_conditions_are_capped():
    counted = tally.Tally(PLUGINS["ecn"], [tally.Grouping("all", lambda key: "all", ())])
    for n in range(tally.MAX_CONDITIONS + 50):
        counted.add(("198.18.64.1", 80, "", "1"), None, None,
                    [f"x.c{n}", 5, None, "y" * 10_000, ["nested"]])
    assert len(counted.known) <= tally.MAX_CONDITIONS + 1
    assert counted.counts["all"]["all"].conditions[tally.OVERFLOW] == 51  # the cut "yyy..." is one
    assert max(len(c) for c in counted.known) <= tally.MAX_CONDITION_CHARS


def test_pairing_streams_and_is_bounded():
    """A target is handed on as soon as its second record is read, and at most ``window``
    targets wait: memory does not grow with the file."""
    consumed = []

    def records():
        for n in range(10):
            for config in (0, 1):
                consumed.append(n)
                yield rec(f"198.18.64.{n + 1}", config)
    pairs = results.pair_records(records())
    first = next(pairs)
    assert first[0][0] == "198.18.64.1" and len(consumed) == 2
    lonely = [rec(f"198.18.64.{n}", 0) for n in range(1, 6)] + [rec("198.18.64.1", 1)]
    handed = list(results.pair_records(lonely, window=2))
    assert [(k[0], e is not None) for k, b, e in handed][:3] == [
        ("198.18.64.1", False), ("198.18.64.2", False), ("198.18.64.3", False)]
    assert len(handed) == 6                     # the late experiment is a target of its own
    single = list(results.pair_records([rec("198.18.74.1", 0)] * 3, connections=1))
    assert len(single) == 3


def test_counting_a_large_run_keeps_little_memory():
    """200,000 records counted as they stream: the memory used stays far below what holding
    them would take (each record is about 1 KB as a dict)."""
    ecn = PLUGINS["ecn"]

    def records():
        for n in range(100_000):
            ip = f"198.18.{64 + n % 13}.{1 + n % 250}"
            yield rec(ip, 0, rank=str(n + 1))
            yield rec(ip, 1, rank=str(n + 1))
    counted = tally.Tally(ecn, [tally.Grouping("lab class", tally.lab_class(plan.class_of),
                                               plan.CLASS_NAMES),
                                tally.Grouping("rank", tally.rank_bucket, tally.RANK_ORDER)])
    tracemalloc.start()
    try:
        for target in results.targets(records(), ecn):
            counted.add(*target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counted.targets == 100_000
    assert dict(counted.groups("rank"))["10k–100k"].targets == 90_000
    assert peak < 20 * 1024 * 1024, peak


def test_pto_observations_of_a_target():
    key = ("2001:DB8:100::7", 80, "", "1")
    rows = pto.observations(key, rec("2001:db8:100::7", 0, tstart="2024-05-01 12:00:00"),
                            rec("2001:db8:100::7", 1, tstop="2024-05-01T12:00:02+01:00"),
                            ["mss.option.local.value:1460", "ecn.connectivity.works",
                             "ecn.connectivity.works", 7])
    path = "[2001:db8:0:1::2] * [2001:db8:100::7]"
    start, end = "2024-05-01T12:00:00.000000Z", "2024-05-01T12:00:01.250000Z"
    assert rows == [["0", start, end, path, "mss.option.local.value", "1460"],
                    ["0", start, end, path, "ecn.connectivity.works"]]
    assert pto.observations(("<script>", 80, "", "1"), rec("x", 0), None, ["a.b"]) == []
    no_sip = rec("198.18.64.1", 0)
    del no_sip["sip"]
    assert pto.observations(("198.18.64.1",), no_sip, None, ["a.b"])[0][3] == "* 198.18.64.1"


# ---- the commands --------------------------------------------------------------------------------

def test_report_and_export_of_hostile_results(tmp_path):
    """Fields, conditions and metadata written by someone hostile end up escaped in the page,
    harmless in the CSV, and as plain data in the observation set."""
    evil = "<script>alert(1)</script>"
    ip = "198.18.64.9"
    lines = [{"dip": ip, "dp": 80, "domain": evil, "rank": "<b>1</b>",
              "flow_results": [rec(ip, 0, host=evil), rec(ip, 1, host=evil)],
              "conditions": ["ecn.connectivity.works", f"ecn.{evil}.seen",
                             "ecn.x:<img src=x onerror=alert(2)>", "=cmd|' /C calc'!A0"]},
             {"dip": evil, "dp": 80, "domain": "", "rank": 1, "conditions": ["ecn.y.z"],
              "flow_results": [rec(evil, 0)]}]
    results_file = write(tmp_path / "evil.ndjson", lines)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({evil: evil, "options": {"a": [evil, 1]}, "plugin": "ecn"}))
    done = pathspider("report", "--metadata", str(meta), str(results_file), "-o",
                      str(tmp_path / "r.html"), "--title", evil)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "r.html").read_text()
    assert "<script" not in text and "onerror" not in text.replace("onerror=alert(2)&gt;", "")
    assert text.count("<img") == text.count('<img alt="')      # only the report's own plots
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert_self_contained(text)
    numbers = read_csv(tmp_path / "r.csv")
    assert numbers[("ecn", "lab class", "clean", "ecn.connectivity.works")] == (1, 1)
    assert numbers[("ecn", "IP version", "not an address", "ecn.y.z")] == (1, 1)
    assert ("ecn", "rank", "no rank", "'=cmd|' /C calc'!A0") in numbers
    done = pathspider("export", "--pto", str(results_file), "-o", str(tmp_path / "o.ndjson"))
    assert done.returncode == 0, done.stderr
    meta, observations = json.loads((tmp_path / "o.ndjson").read_text().splitlines()[0]), [
        json.loads(line) for line in (tmp_path / "o.ndjson").read_text().splitlines()[1:]]
    assert {o[4] for o in observations} == {"ecn.connectivity.works", f"ecn.{evil}.seen",
                                           "ecn.x", "=cmd|' /C calc'!A0"}
    assert ["ecn.x", "<img src=x onerror=alert(2)>"] == next(o[4:] for o in observations
                                                            if o[4] == "ecn.x")
    assert all(o[3] == "198.18.0.2 * 198.18.64.9" for o in observations)
    assert meta["plugin"] == "ecn"


def test_report_of_a_lab_shaped_run(tmp_path):
    results_file = write(tmp_path / "ecn.ndjson", lab_records())
    done = pathspider("report", "--plugin", "ecn", str(results_file), "-o", str(tmp_path) + "/")
    assert done.returncode == 0, done.stderr
    numbers = read_csv(tmp_path / "report.csv")
    assert numbers[("ecn", "lab class", "ecn-syn-drop", "ecn.connectivity.broken")] == (6, 6)
    assert numbers[("ecn", "lab class", "clean", "ecn.connectivity.works")] == (6, 6)
    assert numbers[("ecn", "rank", "101–1k", "ecn.connectivity.works")][1] == 2 * 13
    text = (tmp_path / "report.html").read_text()
    assert text.count('src="data:image/png;base64,') >= 3 * 5
    assert_self_contained(text)


@needs_chromium
def test_the_page_in_chromium(tmp_path):
    """Rendered as a person would see it: not blank, plots drawn, the broken class red."""
    results_file = write(tmp_path / "ecn.ndjson", lab_records())
    assert pathspider("report", "--plugin", "ecn", str(results_file), "-o",
                      str(tmp_path / "report.html")).returncode == 0
    image = screenshot(tmp_path / "report.html", tmp_path / "shot.png")
    assert_looks_like_a_report(image)
    assert colour_count(image, "#d0312d") > 1500        # ecn-syn-drop's broken / failed bars
    assert colour_count(image, "#8a8a8a") > 1500        # unreachable and blackhole: offline


def test_export_counts_and_schema(tmp_path):
    records = lab_records()
    results_file = write(tmp_path / "ecn.ndjson", records)
    out = tmp_path / "obs.ndjson"
    done = pathspider("export", "--pto", "--plugin", "ecn", str(results_file), "-o", str(out))
    assert done.returncode == 0, done.stderr
    meta, observations = check_observation_set(out)
    ecn = PLUGINS["ecn"]
    expected = sum(len(set(c)) for *_, c in results.targets(records, ecn))
    assert len(observations) == expected
    paths = {o[3] for o in observations}
    assert len(paths) == len(records) // 2
    assert "[2001:db8:0:1::2] * [2001:db8:100:2000::1]" in paths
    assert meta["_sources"] == [str(results_file)]


def test_failures_leave_nothing_behind(tmp_path):
    results_file = write(tmp_path / "ecn.ndjson", lab_records(1))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for command in (["report", "--plugin", "ecn", str(results_file), "-o",
                     str(blocker / "r.html")],
                    ["export", "--pto", "--plugin", "ecn", str(results_file), "-o",
                     str(blocker / "o.ndjson")]):
        done = pathspider(*command)
        assert done.returncode == 1 and "Not a directory" in done.stderr, done.stderr
    done = pathspider("report", str(results_file), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 1 and "give --plugin" in done.stderr
    done = pathspider("report", "--plugin", "ecn", str(tmp_path / "missing"), "-o",
                      str(tmp_path / "r.html"))
    assert done.returncode == 1 and "missing" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ecn.ndjson", "file"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", None])
def test_a_bad_metadata_file_is_shown_not_fatal(tmp_path, content):
    results_file = write(tmp_path / "ecn.ndjson", lab_records(1))
    meta = tmp_path / "meta.json"
    if content is not None:
        meta.write_bytes(content)
    done = pathspider("report", "--plugin", "ecn", "--metadata", str(meta), str(results_file),
                      "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    assert 'class="problem">metadata:' in (tmp_path / "r.html").read_text()
