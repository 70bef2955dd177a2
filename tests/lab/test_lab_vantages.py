"""The lab's vantages (``pathspider lab up --vantages N``): extra client namespaces joined to
hop 1 by their own access links, v2's bleaching ECN on all its traffic. Real namespaces,
real packets and real ``pathspider ecn`` runs in the session lab with three vantages
(``lab_vantages``), plus a lab of this module's own for changing the number of vantages,
repairs and failures."""
import ipaddress
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from pathspider.lab import Lab, LabError, impair, netns, plan, probe, topology
from pathspider.lab.lab import RESOLV_ROOT, ROLES, default_name

FAMILIES = (4, 6)
#: Host numbers of this module's targets (other modules use other numbers).
HOSTS = (140, 141, 142)
TIME_EXCEEDED = {4: 11, 6: 3}


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pathspider.lab.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def own_name():
    """A lab of this module's own (names have at most 8 characters)."""
    return default_name()[:5] + "-vn"


def lab_namespaces(name):
    return sorted(ns for ns in os.listdir(netns.NETNS_RUN_DIR) if ns.startswith(name + "-"))


# ---- the plan, no root -----------------------------------------------------------------------

def test_vantage_links_are_their_own_inside_the_lab_space():
    assert plan.VANTAGE_NAMES == tuple(f"v{k}" for k in range(1, 9))
    assert str(plan.vantage_link(1, 4)) == "198.18.33.0/24"
    assert str(plan.vantage_link("v8", 6)) == "2001:db8:0:28::/64"
    assert str(plan.vantage_address("v2", 4)) == "198.18.34.2"
    assert str(plan.vantage_gateway(3, 6)) == "2001:db8:0:23::1"
    assert plan.mbox_vantage_iface("v2") == "a2"
    others = {4: [plan.hop_link(k, 4) for k in range(plan.ROUTERS + 1)]
              + [plan.TARGETS_V4, plan.SERVICES_V4],
              6: [plan.hop_link(k, 6) for k in range(plan.ROUTERS + 1)]
              + [plan.TARGETS_V6, plan.SERVICES_V6]}
    for family, space, lab_space in ((4, plan.VANTAGES_V4, plan.LAB_V4),
                                     (6, plan.VANTAGES_V6, plan.LAB_V6)):
        links = [plan.vantage_link(v, family) for v in plan.VANTAGE_NAMES]
        assert space.subnet_of(lab_space)
        assert all(link.subnet_of(space) for link in links)
        assert len(set(links)) == len(links)
        assert not any(space.overlaps(o) for o in others[family])
    for bad in (0, 9, "v0", "v9", "x1", True, None, "1"):
        with pytest.raises(ValueError, match="a vantage is v1 to v8"):
            plan.vantage_number(bad)
    for bad in (-1, 9, True, "3"):
        with pytest.raises(ValueError, match="from 0 to 8"):
            plan.check_vantages(bad)


def test_v2s_access_impairment_is_data_and_becomes_interface_rules():
    assert set(plan.VANTAGE_IMPAIRMENTS) == {"v2"}
    assert "ECN" in plan.VANTAGE_IMPAIRMENTS["v2"].description
    rules = impair.vantage_rules("v2")
    assert rules == [
        'iifname "a2" ip ecn set not-ect counter comment "v2 ip out"',
        'iifname "a2" ip6 ecn set not-ect counter comment "v2 ip6 out"',
        'oifname "a2" ip ecn set not-ect counter comment "v2 ip in"',
        'oifname "a2" ip6 ecn set not-ect counter comment "v2 ip6 in"']
    assert impair.vantage_rules("v1") == impair.vantage_rules("v3") == []


def test_no_vantages_is_the_lab_of_before():
    assert topology.roles(0) == ROLES
    assert topology.all_interfaces(0) == topology.INTERFACES
    assert topology.all_routes(0) == topology.ROUTES
    routes = topology.all_routes(2)
    # routers 2..5 route the vantage space back towards hop 1's side, both families
    assert {(r, str(d), str(g)) for r, d, g in routes if d == plan.VANTAGES_V4} == {
        ("r2", "198.18.32.0/20", "198.18.17.1"), ("r3", "198.18.32.0/20", "198.18.18.1"),
        ("r4", "198.18.32.0/20", "198.18.19.1"), ("r5", "198.18.32.0/20", "198.18.20.1")}
    assert ("v2", plan.LAB_V6, plan.vantage_gateway(2, 6)) in routes


# ---- the session lab with three vantages --------------------------------------------------

@pytest.mark.root
def test_three_vantages_are_built_and_described(lab_vantages):
    lab = lab_vantages
    assert lab.vantage_names() == ["v1", "v2", "v3"]
    assert lab.vantage_netns("v3") == f"{lab.name}-v3"
    with pytest.raises(LabError, match="has no vantage v4"):
        lab.vantage_netns("v4")
    with pytest.raises(ValueError):
        lab.vantage_netns("client")
    status = lab.status()
    assert status["up"], status["problems"]
    assert [v["name"] for v in status["vantages"]] == ["v1", "v2", "v3"]
    v2 = status["vantages"][1]
    assert v2["namespace"] == f"{lab.name}-v2"
    assert (v2["address4"], v2["address6"]) == ("198.18.34.2", "2001:db8:0:22::2")
    assert v2["access_impairment"]["hop"] == 1
    assert {(c["family"], c["direction"]) for c in v2["access_impairment"]["counters"]} == {
        ("ip", "out"), ("ip6", "out"), ("ip", "in"), ("ip6", "in")}
    assert status["vantages"][0]["access_impairment"] is None
    for v in lab.vantage_names():
        assert status["namespaces"][v]["ours"]
        with open(os.path.join(RESOLV_ROOT, lab.vantage_netns(v), "resolv.conf")) as f:
            assert f"nameserver {plan.DNS_V4}" in f.read()
        # the vantage's eth0 carries its addresses and its offloads are off
        done = lab.exec_in_vantage(v, ["ip", "-j", "addr", "show", "dev", "eth0"],
                                   capture_output=True, text=True)
        addrs = {a["local"] for a in json.loads(done.stdout)[0]["addr_info"]}
        assert {str(plan.vantage_address(v, f)) for f in FAMILIES} <= addrs
        features = netns.run(lab.vantage_netns(v), ["ethtool", "-k", "eth0"]).stdout
        assert "tcp-segmentation-offload: off" in features
    env = lab.vantage_env("v2", {})
    assert env == {"PATHSPIDER_IN_LAB": lab.name, "PATHSPIDER_LAB_VANTAGE": "v2"}


def _http_get(address):
    host = f"[{address}]" if ":" in address else address
    with urllib.request.urlopen(f"http://{host}/", timeout=5) as answer:
        return answer.status, answer.read().decode()


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_every_vantage_reaches_clean_targets_and_hop_1_answers_it(lab_vantages, family):
    lab = lab_vantages
    for k, v in enumerate(lab.vantage_names(), 1):
        target = str(plan.target_address("clean", HOSTS[0] + k - 1, family))
        status, page = lab.call_in_vantage(v, _http_get, target)
        assert status == 200 and target in page
        # TTL / hop limit 1 expires at hop 1, which answers from its end of v's access link
        err = lab.call_in_vantage(v, probe.ttl_probe, target, 1)
        assert err is not None and err.type == TIME_EXCEEDED[family]
        assert ipaddress.ip_address(err.offender) == plan.vantage_gateway(v, family)
        err = lab.call_in_vantage(v, probe.ttl_probe, target, 2)
        assert ipaddress.ip_address(err.offender) == plan.hop_address(2, family)
    # and the client is where it was
    err = lab.call_in_client(probe.ttl_probe, str(plan.target_address("clean", 1, family)), 1)
    assert ipaddress.ip_address(err.offender) == plan.hop_address(1, family)


def _ecn_run(lab, tmp_path, vantage, rows):
    """A real ``pathspider ecn`` in ``vantage``, started through ``lab exec --vantage``;
    {target: experiment record} and the run's stderr."""
    infile = tmp_path / "targets.csv"
    infile.write_text("".join(f"{ip},80,{host},1\n" for ip, host in rows))
    outfile = tmp_path / f"ecn-{vantage}.ndjson"
    done = cli("--name", lab.name, "exec", "--vantage", vantage, "--", sys.executable, "-m",
               "pathspider.run", "-i", "eth0", "-w", "8", "--no-progress", "--input",
               str(infile), "--output", str(outfile), "ecn")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in outfile.read_text().splitlines()]
    assert len(records) == 2 * len(rows)
    return {r["dip"]: r for r in records if r["config"] == 1}, done.stderr


def _access_packets(lab):
    v2 = next(v for v in lab.status()["vantages"] if v["name"] == "v2")
    return sum(c["packets"] for c in v2["access_impairment"]["counters"])


@pytest.mark.root
def test_ecn_runs_see_v2s_own_bleaching_and_the_targets_everywhere(lab_vantages, tmp_path):
    lab = lab_vantages
    rows = [(str(plan.target_address(cls, host, family)), f"t{host}.{cls}.lab.test")
            for cls in ("clean", "ecn-bleach") for host in HOSTS[:2] for family in FAMILIES]
    before = _access_packets(lab)
    seen = {}
    for vantage in ("v1", "v2"):
        (tmp_path / vantage).mkdir()
        seen[vantage], stderr = _ecn_run(lab, tmp_path / vantage, vantage, rows)
        assert f"inside lab {lab.name}" in stderr       # scope: the lab's ranges measured
    for vantage, records in seen.items():
        for ip, rec in records.items():
            family = 6 if ":" in ip else 4
            assert rec["sip"] == str(plan.vantage_address(vantage, family))
            assert rec["connstate"] and rec["observed"]
            assert rec["fwd_ez"], rec                    # sent with ECT(0), seen before hop 1
            negotiated = rec["rev_syn_flags"] & 0xD2 == 82
            assert negotiated, rec                       # ECN still negotiated (flags pass)
            bleached = plan.class_of(ip) == "ecn-bleach" or vantage == "v2"
            assert rec["rev_ez"] is not bleached, (vantage, rec)
    assert _access_packets(lab) > before + 8 * len(rows)   # every v2 packet, both ways


@pytest.mark.root
def test_a_run_in_a_vantage_without_the_variable_measures_no_lab_address(lab_vantages,
                                                                          tmp_path):
    """The variable is what lifts the lab's ranges; the namespace alone does not."""
    lab = lab_vantages
    infile = tmp_path / "t.csv"
    infile.write_text(f"{plan.target_address('clean', HOSTS[2], 4)},80\n")
    env = {k: v for k, v in os.environ.items() if k != "PATHSPIDER_IN_LAB"}
    done = subprocess.run(netns.command(lab.vantage_netns("v3"), [
        sys.executable, "-m", "pathspider.run", "-i", "eth0", "--no-progress", "--input",
        str(infile), "ecn"]), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "" and "out of scope" in done.stderr


@pytest.mark.root
def test_exec_in_a_vantage_from_the_command_line(lab_vantages):
    name = lab_vantages.name
    done = cli("--name", name, "exec", "--vantage", "v3", "--", "sh", "-c",
               "ip -br addr show dev eth0; echo $PATHSPIDER_IN_LAB $PATHSPIDER_LAB_VANTAGE; "
               "getent hosts t1.clean.lab.test")
    assert done.returncode == 0, done.stderr
    assert "198.18.35.2/24" in done.stdout and f"{name} v3" in done.stdout
    assert "198.18.64.1" in done.stdout or "2001:db8:100::1" in done.stdout
    done = cli("--name", name, "exec", "--", "ip", "-br", "addr", "show", "dev", "eth0")
    assert "198.18.0.2/24" in done.stdout                  # default: the client
    done = cli("--name", name, "exec", "--vantage", "v7", "--", "true")
    assert done.returncode == 1 and "has no vantage v7 (it has v1, v2, v3" in done.stderr
    done = cli("--name", name, "exec", "--vantage", "client", "--", "true")
    assert done.returncode == 2 and "a vantage is v1 to v8" in done.stderr
    done = cli("--name", name, "up", "--vantages", "9")
    assert done.returncode == 2 and "vantages must be between 0 and 8" in done.stderr
    done = cli("--name", name, "status", "--json")
    assert done.returncode == 0 and len(json.loads(done.stdout)["vantages"]) == 3


# ---- a lab of this module's own: changing N, repairs, failures --------------------------------

@pytest.fixture
def own_lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    lab = Lab(own_name(), http_workers=1)
    lab.down()
    try:
        yield lab
    finally:
        lab.down()
        assert lab_namespaces(lab.name) == []


def _space_routes(lab):
    done = netns.run(lab.router_netns[4], ["ip", "route", "show", str(plan.VANTAGES_V4)])
    return done.stdout.strip()


@pytest.mark.root
def test_changing_the_number_of_vantages(own_lab):
    name = own_lab.name
    assert Lab(name, http_workers=1, vantages=2).ensure_up() == "built"
    assert own_lab.vantage_names() == ["v1", "v2"] and own_lab.is_up()
    supervisor = own_lab.status()["servers"]["supervisor"]["pid"]
    done = cli("--name", name, "up", "--vantages", "4")
    assert done.returncode == 0 and "now has 4 vantage(s): v1, v2, v3, v4" in done.stdout
    assert own_lab.is_up() and f"{name}-v4" in lab_namespaces(name)
    assert own_lab.call_in_vantage("v4", _http_get,
                                   str(plan.target_address("clean", 5, 6)))[0] == 200
    # a lab with no --vantages keeps what it has
    assert Lab(name).ensure_up() == "unchanged" and len(own_lab.vantage_names()) == 4
    assert own_lab.set_vantages(1)
    assert lab_namespaces(name) == sorted(f"{name}-{r}" for r in ROLES + ("v1",))
    assert not os.path.exists(os.path.join(RESOLV_ROOT, f"{name}-v2"))
    assert impair.vantage_chains(own_lab.mbox_netns) == []      # v2's chain went with it
    assert _space_routes(own_lab)
    assert own_lab.set_vantages(0) and own_lab.is_up()
    assert _space_routes(own_lab) == ""                          # the lab of before
    assert own_lab.status()["vantages"] == []
    assert not own_lab.set_vantages(0)
    own_lab.set_vantages(2)
    assert impair.vantage_chains(own_lab.mbox_netns) == ["v2"]
    # none of it touched the servers
    assert own_lab.status()["servers"]["supervisor"]["pid"] == supervisor
    done = cli("--name", name, "down")
    assert done.returncode == 0 and lab_namespaces(name) == []
    assert not any(os.path.exists(os.path.join(RESOLV_ROOT, f"{name}-v{k}")) for k in (1, 2))


@pytest.mark.root
def test_a_broken_vantage_is_seen_and_repaired(own_lab):
    Lab(own_lab.name, http_workers=1, vantages=2).up()
    netns.run(own_lab.router_netns[4], ["ip", "route", "del", str(plan.VANTAGES_V4)])
    netns.run(f"{own_lab.name}-v2", ["ip", "-6", "route", "del", str(plan.LAB_V6)])
    problems = own_lab.problems()
    assert f"{own_lab.name}-r4: route 198.18.32.0/20 via 198.18.19.1 missing" in problems
    assert f"{own_lab.name}-v2: route 2001:db8::/32 via 2001:db8:0:22::1 missing" in problems
    netns.run(own_lab.mbox_netns, ["nft", "delete", "chain", "inet", impair.TABLE,
                                   "vantage-v2"])
    assert "access impairment of vantage v2 not loaded" in " ".join(own_lab.problems())
    subprocess.run(["ip", "netns", "del", f"{own_lab.name}-v1"], check=True)
    problems = own_lab.problems()
    assert f"namespace {own_lab.name}-v1 missing or replaced" in problems
    done = cli("--name", own_lab.name, "status")
    assert done.returncode == 1 and "NOT healthy" in done.stdout
    assert own_lab.ensure_up() == "rebuilt"
    assert own_lab.vantage_names() == ["v1", "v2"] and own_lab.is_up()


@pytest.mark.root
def test_a_clashing_vantage_namespace_is_refused_and_nothing_is_left(own_lab):
    clash = f"{own_lab.name}-v3"
    subprocess.run(["ip", "netns", "add", clash], check=True)
    try:
        with pytest.raises(LabError, match=f"{clash} already exist"):
            Lab(own_lab.name, vantages=3).up()
        assert lab_namespaces(own_lab.name) == [clash]     # nothing built, the stranger kept
        Lab(own_lab.name, http_workers=1, vantages=1).up()
        with pytest.raises(LabError, match="cannot add vantages.*the lab keeps 1"):
            own_lab.set_vantages(4)
        assert own_lab.vantage_names() == ["v1"] and own_lab.is_up()
        assert f"{own_lab.name}-v2" not in lab_namespaces(own_lab.name)
        assert netns.exists(clash)
    finally:
        subprocess.run(["ip", "netns", "del", clash], check=False)


@pytest.mark.root
def test_a_failed_up_removes_the_vantages_too(own_lab, monkeypatch):
    real = topology.add_vantage

    def fail_at_v2(names, k):
        if plan.vantage_name(k) == "v2":
            raise RuntimeError("injected failure")
        return real(names, k)

    monkeypatch.setattr(topology, "add_vantage", fail_at_v2)
    with pytest.raises(LabError, match="injected failure.*everything it had built"):
        Lab(own_lab.name, http_workers=1, vantages=3).up()
    assert lab_namespaces(own_lab.name) == []
    assert not os.path.exists(os.path.join(RESOLV_ROOT, f"{own_lab.name}-v1"))
