"""Pure logic of campaigns: names, sharding, attribution, the chunk store, task messages,
broker URLs, the run's argv. (The real runs are in test_campaign_lab.py.)"""
import json
import os

import pytest

from pathspider.campaign import analyse, broker, messages, names, runner, sharding, store
from pathspider.campaign.plugins import check_plugin_options, measurement_plugins
from pathspider.campaign.submit import check_result, progress_text


# ---- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["v1", "a", "vantage-2", "0", "x" * 32])
def test_good_vantage_names(name):
    assert names.check_vantage(name) == name
    assert names.vantage_of_queue(names.queue_of(name)) == name


@pytest.mark.parametrize("name", ["", "-v", "V1", "v_1", "v 1", "x" * 33, "v1\n", "../x",
                                  "v1;rm", None, 3])
def test_bad_vantage_names(name):
    with pytest.raises(names.VantageNameError):
        names.check_vantage(name)


def test_vantage_list():
    assert names.parse_vantages("v1, v2,v3") == ["v1", "v2", "v3"]
    for bad in ("", ",", "v1,v1", "v1,V2"):
        with pytest.raises(names.VantageNameError):
            names.parse_vantages(bad)


# ---- sharding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("count, size, chunks", [(1, 1, 1), (10, 3, 4), (9, 3, 3), (5, 500, 1)])
def test_shard_sizes(count, size, chunks):
    lines = [f"198.18.64.{i},80" for i in range(count)]
    shards = sharding.shard(lines, size)
    assert len(shards) == chunks
    assert "".join(shards).splitlines() == lines            # nothing lost, nothing twice, order
    assert all(0 < s.count("\n") <= size for s in shards)


def test_shard_drops_blank_and_comment_lines_and_detects_format(tmp_path):
    path = tmp_path / "t.ndjson"
    path.write_text('# comment\n\n{"dip": "198.18.64.1", "dp": 80}\n  \n'
                    '{"dip": "198.18.64.2", "dp": 80, "x": 1}\n')
    fmt, chunks = sharding.read_chunks(str(path), 1)
    assert fmt == "ndjson" and len(chunks) == 2 and '"x": 1' in chunks[1]
    assert sharding.read_chunks(str(path), 1, "csv")[0] == "csv"
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(sharding.ShardingError):
        sharding.read_chunks(str(tmp_path / "empty"), 5)
    with pytest.raises(sharding.ShardingError):
        sharding.shard(["a"], 0)


# ---- attribution ------------------------------------------------------------------------------

V = ["v1", "v2", "v3"]


@pytest.mark.parametrize("seen, reached, want", [
    (V, V, "target"),                              # every vantage sees it
    (["v2"], V, "vantage:v2"),                     # only v2: its own access network
    (["v1", "v3"], V, "mixed"),
    (V, [], "target"),                             # nobody reached it, everybody sees it
    (["v2"], [], "vantage:v2"),
    (["v1", "v2"], ["v1", "v2"], "target"),        # v3 did not reach it: not asked
    (["v3"], ["v1", "v2"], "vantage:v3"),          # seen only by v3, which did not reach it
    (["v1"], ["v1"], "target"),                    # one vantage cannot tell
])
def test_attribution_rules(seen, reached, want):
    assert analyse.attribute(V, seen, reached) == want


def _pair(dip, vantage, ect0, connected=True):
    base = {"dip": dip, "dp": 80, "host": None, "rank": None, "config": 0,
            "connstate": connected, "observed": True, "vantage": vantage}
    exp = dict(base, config=1, tcp_connected=connected, rev_syn_flags=0x52 if connected else 0,
               rev_ez=ect0)
    return [base, exp]


def test_analyse_attributes_ecn_marks_per_vantage():
    from pathspider.plugins.ecn import ECN
    sets = {
        "v1": _pair("198.18.67.1", "v1", False) + _pair("198.18.64.1", "v1", True),
        "v2": _pair("198.18.67.1", "v2", False) + _pair("198.18.64.1", "v2", False),
        "v3": _pair("198.18.67.1", "v3", False) + _pair("198.18.64.1", "v3", True),
    }
    rows = {(r["dip"], r["condition"]): r for r in analyse.analyse(sets, ECN, V)}
    assert rows["198.18.67.1", "ecn.ipmark.ect0.not_seen"]["attribution"] == "target"
    assert rows["198.18.64.1", "ecn.ipmark.ect0.not_seen"]["attribution"] == "vantage:v2"
    assert rows["198.18.64.1", "ecn.ipmark.ect0.seen"]["attribution"] == "mixed"
    assert rows["198.18.64.1", "ecn.connectivity.works"]["seen_by"] == V
    assert rows["198.18.64.1", "ecn.connectivity.works"]["reached_by"] == V


# ---- the chunk store --------------------------------------------------------------------------

def _journal(vantages=("v1",), chunks=1):
    return {"pathspider_campaign": 1, "id": "c1", "vantages": list(vantages), "targets": 2,
            "chunk_count": chunks, "plugin": "ecn", "options": [],
            "chunks": {v: {store.chunk_name(i): {"state": "new", "task_ids": []}
                           for i in range(chunks)} for v in vantages}}


def test_store_twice_replaces_and_open_marks_stored(tmp_path):
    cdir = store.CampaignDir(tmp_path / "c")
    cdir.create(_journal(chunks=2), ["198.18.64.1,80\n", "198.18.64.2,80\n"])
    cdir.store_chunk("v1", 0, [{"a": 1}, {"a": 2}], {"outcome": {"ended": "done"}})
    cdir.store_chunk("v1", 0, [{"a": 3}, {"a": 4}], None)            # delivered again
    assert cdir.count_records("v1", 0) == 2
    assert [json.loads(x)["a"] for x in open(cdir.records_path("v1", 0))] == [3, 4]
    journal = store.CampaignDir(tmp_path / "c").open()
    assert journal["chunks"]["v1"]["00000"]["state"] == "stored"
    assert journal["chunks"]["v1"]["00000"]["records"] == 2
    assert journal["chunks"]["v1"]["00001"]["state"] == "new"
    assert not [n for n in os.listdir(os.path.dirname(cdir.records_path("v1", 0)))
                if n.startswith(".tmp")]
    with pytest.raises(store.StoreError, match="already holds a campaign"):
        store.CampaignDir(tmp_path / "c").create(_journal(), ["x\n"])


def test_store_failing_write_leaves_no_file(tmp_path, monkeypatch):
    """A write that fails half-way (a full disk) leaves neither the chunk nor a temporary."""
    cdir = store.CampaignDir(tmp_path / "c")
    cdir.create(_journal(), ["198.18.64.1,80\n"])

    def no_space(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        cdir.store_chunk("v1", 0, [{"a": 1}], None)
    monkeypatch.undo()
    directory = os.path.dirname(cdir.records_path("v1", 0))
    assert os.listdir(directory) == []
    assert store.CampaignDir(tmp_path / "c").open()["chunks"]["v1"]["00000"]["state"] == "new"


def test_open_refuses_what_is_not_a_campaign(tmp_path):
    with pytest.raises(store.StoreError, match="holds no campaign"):
        store.CampaignDir(tmp_path).open()
    (tmp_path / "campaign.json").write_text("[1]")
    with pytest.raises(store.StoreError, match="not a campaign journal"):
        store.CampaignDir(tmp_path).open()


# ---- task messages ----------------------------------------------------------------------------

def _message(**change):
    msg = {"version": 1, "campaign": "c1", "chunk": 0, "vantage": "v1", "plugin": "ecn",
           "options": [], "run_options": [], "targets": "198.18.64.1,80\n"}
    msg.update(change)
    return msg


def test_a_good_message_passes():
    assert messages.validate(_message(options=["--locate"],
                                      run_options=["--format", "jobs", "--rate", "50"]))


@pytest.mark.parametrize("change", [
    {"plugin": "../../bin/sh"}, {"plugin": "ecn; rm -rf /"}, {"plugin": "-i"},
    {"plugin": "$(id)"}, {"plugin": ""}, {"plugin": ["ecn"]}, {"plugin": "x" * 65},
    {"options": ["-i", "lo"]}, {"options": ["--output=/etc/passwd"]}, {"options": ["--input"]},
    {"options": ["--metadata", "/x"]}, {"options": ["--"]}, {"options": ["--allow"]},
    {"options": ["--blocklist=/dev/null"]}, {"options": ["-h"]}, {"options": "--locate"},
    {"options": [1]}, {"options": ["a\nb"]}, {"options": ["a\0b"]}, {"options": ["x"] * 65},
    {"run_options": ["--output", "x"]}, {"run_options": ["--format", "pickle"]},
    {"run_options": ["--rate", "-1"]}, {"run_options": ["--rate"]},
    {"vantage": "V1"}, {"vantage": "../v1"}, {"chunk": -1}, {"chunk": "0"}, {"chunk": True},
    {"targets": b"198.18.64.1,80"}, {"targets": "a\0b"}, {"campaign": ""}, {"version": 2},
])
def test_hostile_messages_are_refused(change):
    with pytest.raises(messages.MessageError):
        messages.validate(_message(**change))


def test_only_measurement_plugins_and_their_own_options_pass():
    plugins = measurement_plugins()
    assert "ecn" in plugins and "lab" not in plugins and "campaign" not in plugins
    assert "summary" not in plugins and "restore" not in plugins
    check_plugin_options("ecn", [])
    for plugin, options in (("lab", ["exec", "--", "sh"]), ("campaign", ["agent"]),
                            ("restore", []), ("nope", []), ("ecn", ["--no-such-option"]),
                            ("ecn", ["exec"])):
        with pytest.raises(messages.MessageError):
            check_plugin_options(plugin, options)
    with pytest.raises(messages.MessageError):
        messages.validate(_message(plugin="lab"), plugins)


def test_the_agent_builds_the_argv_itself():
    settings = runner.AgentSettings(vantage="v1", interface="eth0", workers=8, netns="lab-v1",
                                    scope_options=["--allow"])
    msg = _message(options=["--locate"], run_options=["--format", "jobs"])
    argv = runner.build_argv(settings, msg, "/t/in", "/t/out", "/t/meta")
    assert argv[:4] == ["ip", "netns", "exec", "lab-v1"]
    assert argv[-3:] == ["jobs", "ecn", "--locate"]
    assert argv[argv.index("--input") + 1] == "/t/in" and argv[argv.index("-i") + 1] == "eth0"
    assert argv.index("ecn") > argv.index("--output")       # plugin options come last


def test_check_result_refuses_foreign_results():
    good = {"campaign": "c1", "vantage": "v1", "chunk": 3, "records": [{"vantage": "v1"}]}
    assert check_result(good, "c1", "v1", 3) is None
    assert check_result(dict(good, chunk=4), "c1", "v1", 3)
    assert check_result(dict(good, campaign="c2"), "c1", "v1", 3)
    assert check_result(dict(good, records=[{"vantage": "v2"}]), "c1", "v1", 3)
    assert check_result(None, "c1", "v1", 3)


def test_progress_text_per_vantage():
    journal = _journal(("v1", "v2"), 2)
    journal["chunks"]["v1"]["00000"].update(state="stored", records=2)
    journal["chunks"]["v2"]["00001"].update(state="failed")
    text = progress_text(journal, 2.0, 2)
    assert "v1 1/2 chunks 2/4 records" in text and "v2 0/2 chunks 0/4 records (1 failed)" in text


# ---- the broker URL ---------------------------------------------------------------------------

def test_broker_url_password_file_and_redaction(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3:cr@t\n")
    url = broker.broker_url("redis://127.0.0.1:6379/0", str(secret), environ={})
    assert url == "redis://:s3%3Acr%40t@127.0.0.1:6379/0"
    assert "s3" not in broker.redact(url) and "***" in broker.redact(url)
    assert broker.broker_url(None, None, {"PATHSPIDER_BROKER": "rediss://h:1/0"}) == \
        "rediss://h:1/0"
    for bad in ("http://h/", "redis:///0", ""):
        with pytest.raises(broker.BrokerError):
            broker.broker_url(bad, None, environ={})
    (tmp_path / "empty").write_text("")
    with pytest.raises(broker.BrokerError):
        broker.broker_url("redis://h:1/0", str(tmp_path / "empty"), environ={})


def test_the_app_never_accepts_pickle():
    app = broker.make_app("redis://:pw@127.0.0.1:1/0", visibility_timeout=8)
    conf = app.conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.result_accept_content == ["json"] and conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 8.0
    assert conf.broker_transport_options["unacked_restore_interval"] == 2
