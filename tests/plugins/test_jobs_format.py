"""``--format jobs`` on a PATHspider 2.0 ndjson job list with extra fields, over every lab
class and both IP versions: one line per job, the fields unchanged, the conditions per class.
"""
import json
import subprocess
import sys

import pytest

from pathspider.lab import plan
from psd_lab_run import read_records

pytestmark = pytest.mark.root

#: Classes whose ECN-setup and HTTP exchange work end to end (ECT marks come back).
ECN_WORKS = ["ecn.connectivity.works", "ecn.negotiation.succeeded", "ecn.ipmark.ect0.seen",
             "ecn.ipmark.ect1.not_seen", "ecn.ipmark.ce.not_seen"]
ECN_EXPECTED = {
    "ecn-syn-drop": ["ecn.connectivity.broken", "ecn.fallback.seen", "ecn.negotiation.failed",
                     "ecn.ipmark.ect0.not_seen", "ecn.ipmark.ect1.not_seen",
                     "ecn.ipmark.ce.not_seen"],
    "ecn-bleach": ["ecn.connectivity.works", "ecn.negotiation.succeeded",
                   "ecn.ipmark.ect0.not_seen", "ecn.ipmark.ect1.not_seen",
                   "ecn.ipmark.ce.not_seen"],
    "unreachable": ["ecn.connectivity.offline"],
    # the kernel retried the unanswered ECN SYN without ECN after 1 s: evidence, still offline
    "blackhole": ["ecn.connectivity.offline", "ecn.fallback.seen"],
}


def mss_expected(cls, family):
    if cls in ("unreachable", "blackhole"):
        return ["mss.connectivity.offline"]
    local = 1460 if family == 4 else 1440
    remote = plan.REWRITTEN_MSS if cls == "mss-rewrite" else local
    return ["mss.connectivity.online", f"mss.option.local.value:{local}",
            f"mss.option.remote.value:{remote}",
            f"mss.option.received.{'deflated' if cls == 'mss-rewrite' else 'unchanged'}"]


def job_list(port=plan.HTTP_PORT):
    """One 2.0 job per class and IP version, with extra fields of every JSON kind; IPv6
    addresses in upper case (the output keeps them as given)."""
    jobs = []
    for cls in plan.CLASS_NAMES:
        for family in (4, 6):
            ip = str(plan.target_address(cls, 3, family))
            jobs.append({"dip": ip.upper(), "dp": port,
                         "domain": f"t3.{cls}.{plan.DOMAIN}", "rank": len(jobs) + 1,
                         "info": {"class": cls, "family": family, "tags": ["a", 1, None]},
                         "dip_asn": 64496, "note": "é ✓ \u2028", "flag": True,
                         "ratio": 0.25, "nothing": None})
    return jobs


def run_jobs(lab, tmp_path, plugin, *plugin_args, port=plan.HTTP_PORT):
    jobs = job_list(port)
    infile = tmp_path / f"{plugin}-jobs.ndjson"
    infile.write_text("# a PATHspider 2 job list\n"
                      + "".join(json.dumps(job, ensure_ascii=False) + "\n" for job in jobs),
                      encoding="utf-8")
    outfile = tmp_path / f"{plugin}-lines.ndjson"
    argv = [sys.executable, "-m", "pathspider.run", "-i", plan.CLIENT_IFACE, "-w", "16",
            "--format", "jobs", "--input", str(infile), "--output", str(outfile),
            plugin, *plugin_args]
    proc = lab.exec_in_client(argv, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = read_records(outfile)
    assert len(lines) == len(jobs), proc.stderr[-2000:]
    by_dip = {line["dip"]: line for line in lines}
    for job in jobs:                           # every field as it was given, extras included
        line = by_dip[job["dip"]]
        assert {key: line[key] for key in job} == job
        assert list(line)[:len(job)] == list(job)
    return jobs, by_dip, proc, outfile


@pytest.fixture(scope="module")
def ecn_lines(lab, tmp_path_factory):
    return run_jobs(lab, tmp_path_factory.mktemp("jobs-ecn"), "ecn", "--timeout", "2")


@pytest.fixture(scope="module")
def mss_lines(lab, tmp_path_factory):
    return run_jobs(lab, tmp_path_factory.mktemp("jobs-mss"), "mss", "--timeout", "2")


def test_ecn_lines(ecn_lines):
    jobs, by_dip, proc, _ = ecn_lines
    assert f"{len(jobs)} job lines with {2 * len(jobs)} records written" in proc.stderr
    for job in jobs:
        line = by_dip[job["dip"]]
        cls = job["info"]["class"]
        assert [rec["config"] for rec in line["flow_results"]] == [0, 1]
        assert all(rec["observed"] for rec in line["flow_results"]), cls
        assert line["missed_flows"] == 0
        assert line["time"]["from"] <= line["time"]["to"]
        assert line["conditions"] == ECN_EXPECTED.get(cls, ECN_WORKS), (cls, job["dip"])


def test_mss_lines(mss_lines):
    jobs, by_dip, _, _ = mss_lines
    for job in jobs:
        line = by_dip[job["dip"]]
        cls, family = job["info"]["class"], job["info"]["family"]
        [record] = line["flow_results"]
        assert record["config"] == 0 and record["observed"] and line["missed_flows"] == 0
        assert line["conditions"] == mss_expected(cls, family), (cls, job["dip"])


def test_summary_reads_the_jobs_file(mss_lines):
    jobs, _, _, outfile = mss_lines
    done = subprocess.run([sys.executable, "-m", "pathspider.run", "summary", "--plugin", "mss",
                           "--by-family", str(outfile)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0] + " " + line.split()[1]: line.split()[2:]
            for line in done.stdout.splitlines()[1:] if " v" in line[:20]}
    header = done.stdout.splitlines()[0].split()
    deflated = header.index("deflated") - 1
    assert rows["mss-rewrite v4"][deflated] == "1" and rows["mss-rewrite v6"][deflated] == "1"
    assert rows["clean v4"][deflated] == "0"


#: Every other bundled plugin, with the options and port its jobs need.
OTHER_PLUGINS = {
    "dscp": (["--timeout", "2"], plan.HTTP_PORT, 2),
    "tfo": (["--timeout", "2"], plan.HTTP_PORT, 2),
    "evilbit": ([], plan.HTTP_PORT, 2),
    "evilbit-dnsudp": (["--connect", "dnsudp", "--timeout", "2"], plan.DNS_PORT, 2),
    "udpzero": (["--timeout", "2"], plan.DNS_PORT, 2),
    "h2": (["--timeout", "2"], plan.HTTP_PORT, 2),
}


@pytest.mark.parametrize("name", sorted(OTHER_PLUGINS))
def test_every_plugin_passes_the_job_fields_through(lab, tmp_path, name):
    """A 2.0 job list with extra fields through each plugin in ``--format jobs``: one line
    per job with the fields unchanged (checked in run_jobs), its connections' records, and
    conditions named after the plugin."""
    args, port, connections = OTHER_PLUGINS[name]
    plugin = name.split("-")[0]
    jobs, by_dip, _, _ = run_jobs(lab, tmp_path, plugin, *args, port=port)
    for job in jobs:
        line = by_dip[job["dip"]]
        # tfo skips its experiment where the baseline got no cookie (unreachable targets)
        assert 1 <= len(line["flow_results"]) <= connections, (name, job["dip"])
        assert any(c.startswith(plugin + ".") for c in line["conditions"]), line["conditions"]
