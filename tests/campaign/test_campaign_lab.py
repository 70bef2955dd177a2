"""Real campaigns: a private Redis broker, the lab with three vantages (v2 bleaches the IP ECN
field of all its traffic), three agents (Celery workers on the host, each measuring inside its
vantage's namespace), and ``pathspider campaign`` run, killed, resumed and analysed.
"""
import json
import signal
import subprocess

import pytest

from campaign_kit import (LoggedProcess, assert_complete, broker,  # noqa: F401 (fixture)
                          pathspider, start_agent)
from pathspider.campaign.broker import make_app
from pathspider.campaign.messages import make as make_message
from pathspider.campaign.names import TASK_NAME, queue_of
from pathspider.lab import plan

pytestmark = pytest.mark.root

VANTAGES = ["v1", "v2", "v3"]
#: Short, so that a killed worker's chunk comes back within seconds (chunks here take < 8 s).
VISIBILITY = 15


@pytest.fixture(scope="module")
def agents(lab_vantages, broker):  # noqa: F811 (fixture)
    """One running agent per vantage: ``{vantage: LoggedProcess}``; stopped by PID at the end
    (a test may replace one)."""
    running = {}
    try:
        for vantage in VANTAGES:
            running[vantage] = start_agent(lab_vantages, vantage, broker.url, VISIBILITY)
        yield running
    finally:
        for agent in running.values():
            agent.stop()


@pytest.fixture(scope="module")
def targets(lab_vantages):
    """Two hosts of every class, both families: 52 targets."""
    return lab_vantages.targets(len(plan.CLASS_NAMES) * 2 * 2)


def _write(tmp_path, rows):
    path = tmp_path / "targets.csv"
    path.write_text("".join(",".join(str(c) for c in row) + "\n" for row in rows))
    return str(path)


def _run_argv(tmp_path, url, rows, chunk_size, name="camp"):
    return pathspider("campaign", "run", "--dir", str(tmp_path / name), "--vantages",
                      ",".join(VANTAGES), "--broker", url, "--chunk-size", str(chunk_size),
                      "--input", _write(tmp_path, rows), "--progress-interval", "1", "ecn")


def _cli(*args, timeout=120):
    return subprocess.run(pathspider(*args), capture_output=True, text=True, timeout=timeout)


def test_three_vantage_ecn_campaign_attributes_bleaching(tmp_path, broker, agents,  # noqa: F811
                                                         targets):
    run = _cli(*_run_argv(tmp_path, broker.url, targets, 13)[3:])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "campaign done: 312 records from 3 vantages" in run.stderr
    assert broker.password not in run.stderr                       # never logged in clear
    cdir = str(tmp_path / "camp")
    assert_complete(cdir, VANTAGES, targets)                       # 3 x 52 x 2 records

    out = tmp_path / "analysis.ndjson"
    analysed = _cli("campaign", "analyse", cdir, "--group", "lab", "--output", str(out),
                    "--report", str(tmp_path / "campaign.html"))
    assert analysed.returncode == 0, analysed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    not_seen = [r for r in rows if r["condition"] == "ecn.ipmark.ect0.not_seen"]
    bleach = [r for r in not_seen if r["class"] == "ecn-bleach"]
    clean = [r for r in not_seen if r["class"] in ("clean", "clean2")]
    assert len(bleach) == 4 and {r["attribution"] for r in bleach} == {"target"}
    assert len(clean) == 8 and {r["attribution"] for r in clean} == {"vantage:v2"}
    assert all(r["seen_by"] == ["v2"] and r["reached_by"] == VANTAGES for r in clean)
    drops = [r for r in rows if r["class"] == "ecn-syn-drop"
             and r["condition"] == "ecn.connectivity.broken"]
    assert len(drops) == 4 and {r["attribution"] for r in drops} == {"target"}
    page = (tmp_path / "campaign.html").read_text()
    assert "vantage:v2" in page and "ecn.ipmark.ect0.not_seen" in page

    status = _cli("campaign", "status", cdir, "--json", "--broker", broker.url)
    summary = json.loads(status.stdout)
    assert summary["status"] == "done"
    for vantage in VANTAGES:
        v = summary["vantages"][vantage]
        assert (v["stored"], v["pending"], v["failed"], v["records"]) == (4, 0, 0, 104)
        assert v["agents_seen"] and v["agents_live"] and v["agents_seen"][0].startswith(vantage)
    text = _cli("campaign", "status", cdir).stdout
    assert "v2: 4/4 chunks stored, 0 pending, 0 failed, 104 records" in text


def test_a_worker_killed_mid_campaign_loses_and_duplicates_nothing(
        tmp_path, broker, agents, lab_vantages, targets):  # noqa: F811
    run = LoggedProcess(_run_argv(tmp_path, broker.url, targets, 4), name="campaign run")
    try:
        agents["v1"].wait_for("vantage v1: chunk 2 of campaign", timeout=60)
        agents["v1"].stop(signal.SIGKILL)                      # mid-chunk, no warning
        agents["v1"] = start_agent(lab_vantages, "v1", broker.url, VISIBILITY)
        assert run.wait(timeout=120) == 0, run.tail()
    finally:
        run.stop()
    cdir = str(tmp_path / "camp")
    assert_complete(cdir, VANTAGES, targets)
    journal = json.loads((tmp_path / "camp" / "campaign.json").read_text())
    assert journal["status"] == "done"
    assert {e["state"] for v in VANTAGES for e in journal["chunks"][v].values()} == {"stored"}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_the_submitter_was_stopped(tmp_path, broker, agents, targets,  # noqa: F811
                                                sig):
    run = LoggedProcess(_run_argv(tmp_path, broker.url, targets, 4), name="campaign run")
    try:
        run.wait_for("sent 39 chunks", timeout=60)
        agents["v3"].wait_for("chunk 1 done", timeout=60, times=agents["v3"].count(
            "chunk 1 done") + 1)
        run.proc.send_signal(sig)
        status = run.wait(timeout=30)
    finally:
        run.stop()
    assert status == 128 + sig if sig == signal.SIGINT else status == -sig
    cdir = str(tmp_path / "camp")
    journal = json.loads((tmp_path / "camp" / "campaign.json").read_text())
    assert journal["status"] == ("interrupted" if sig == signal.SIGINT else "running")
    pending = _cli("campaign", "status", cdir)
    assert pending.returncode == 0 and "pending" in pending.stdout

    resumed = _cli("campaign", "resume", cdir, "--broker", broker.url)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "0 chunks to send again" in resumed.stderr          # queued tasks were not resent
    assert_complete(cdir, VANTAGES, targets)
    summary = json.loads(_cli("campaign", "status", cdir, "--json").stdout)
    assert summary["status"] == "done"
    assert all(v["stored"] == 13 and v["records"] == 104 for v in summary["vantages"].values())


@pytest.mark.parametrize("change, reason", [
    ({"plugin": "lab", "options": ["exec", "--", "touch", "/tmp/pwned"]}, "no measurement"),
    ({"options": ["--output=/tmp/pwned"]}, "agent's to choose"),
    ({"options": ["--no-such-option"]}, "refuses the options"),
])
def test_an_agent_refuses_hostile_messages(broker, agents, change, reason):  # noqa: F811
    app = make_app(broker.url)
    message = make_message("hostile", 0, "v1", "ecn", [], [], "198.18.64.1,80\n")
    message.update(change)
    result = app.send_task(TASK_NAME, args=[message], queue=queue_of("v1"))
    with pytest.raises(Exception, match=reason):
        result.get(timeout=30)
    assert result.state == "FAILURE"


def test_campaign_without_broker_or_with_a_bad_one_fails_in_one_line(tmp_path, targets):
    path = _write(tmp_path, targets[:2])
    bad = _cli("campaign", "run", "--dir", str(tmp_path / "c"), "--vantages", "v1",
               "--broker", "redis://:wrong@127.0.0.1:1/0", "--input", path, "ecn")
    assert bad.returncode == 1 and "does not answer" in bad.stderr and "wrong" not in bad.stderr
    hostile = _cli("campaign", "run", "--dir", str(tmp_path / "c"), "--vantages", "v1",
                   "--broker", "redis://127.0.0.1:1/0", "--input", path, "lab", "exec")
    assert hostile.returncode == 1 and "no measurement plugin named 'lab'" in hostile.stderr
    names = _cli("campaign", "run", "--dir", str(tmp_path / "c"), "--vantages", "V1;x",
                 "--broker", "redis://127.0.0.1:1/0", "--input", path, "ecn")
    assert names.returncode == 1 and "bad vantage name" in names.stderr
