"""The lab's path of routers: every hop answers a TTL-limited packet from its own address
(but the silent one), each impairment class sits in the router of its hop, and classes can be
moved between hops on a running lab. Real packets through the session lab (``lab``), plus a
lab of this module's own for building with a placement, health checks and repair."""
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from pathspider.lab import Lab, LabError, craft, impair, netns, plan, probe
from pathspider.lab.lab import ROLES, default_name

FAMILIES = [4, 6]
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
CLIENT = {4: str(plan.CLIENT_V4), 6: str(plan.CLIENT_V6)}
TIME_EXCEEDED = {4: (11, 0), 6: (3, 0)}
PORT_UNREACHABLE = {4: (3, 3), 6: (1, 4)}
SO_NO_CHECK, UDP_NO_CHECK6_TX = 11, 101
ECT0 = 0b10
H2C_UPGRADE = (b"GET / HTTP/1.1\r\nHost: t1.h2c-drop.lab.test\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
# Host numbers of this module's targets (other modules use other numbers).
HOST = {"ttl": 120, "drop": 121, "quote": 122, "count": 123, "move": 124, "own": 125}


def target(cls, family, host):
    return str(plan.target_address(cls, host, family))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pathspider.lab.cli", *args],
                          capture_output=True, text=True, timeout=120)


def by_hop(lab, cls):
    """{hop: packets} of class ``cls``'s rules, from the lab's aggregated counters."""
    out = {}
    for c in lab.status()["counters"]:
        if c["class"] == cls:
            out[c["hop"]] = out.get(c["hop"], 0) + c["packets"]
    return out


# ---- the plan, no root -----------------------------------------------------------------------

def test_hops_have_their_own_links_inside_the_lab_space():
    assert plan.ROUTERS == 5 and plan.SILENT_HOP == 5
    assert plan.ROUTER_ROLES == ("mbox", "r2", "r3", "r4", "r5")
    assert [str(plan.hop_address(k, 4)) for k in plan.HOPS] == [
        "198.18.0.1", "198.18.17.2", "198.18.18.2", "198.18.19.2", "198.18.20.2"]
    assert str(plan.hop_address(3, 6)) == "2001:db8:0:12::2"
    assert plan.router_addresses(plan.ROUTERS, 4)[1] == plan.SERVER_GATEWAY_V4 == \
        ipaddress.ip_address("198.18.1.1")
    for family, lab_space, others in (
            (4, plan.LAB_V4, [plan.TARGETS_V4, plan.SERVICES_V4]),
            (6, plan.LAB_V6, [plan.TARGETS_V6, plan.SERVICES_V6])):
        links = [plan.hop_link(k, family) for k in range(plan.ROUTERS + 1)]
        assert links[0] in (plan.CLIENT_LINK_V4, plan.CLIENT_LINK_V6)
        assert links[-1] in (plan.SERVER_LINK_V4, plan.SERVER_LINK_V6)
        nets = links + others
        assert all(n.subnet_of(lab_space) for n in nets)
        assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    for bad in (0, 6, "2", True, None):
        with pytest.raises(ValueError, match="hop must be an integer from 1 to 5"):
            plan.hop_address(bad, 4)


def test_default_placement_is_locatable_and_partitions_the_rules():
    assert set(plan.IMPAIRMENT_HOPS) == set(plan.CLASS_NAMES)
    assert {c for c, h in plan.IMPAIRMENT_HOPS.items() if h is None} == \
        {"clean", "clean2", "h2-none"}
    # Every impaired class before the silent hop, and the hop after it answers.
    assert all(1 <= plan.IMPAIRMENT_HOPS[c] < plan.SILENT_HOP - 1
               for c in plan.IMPAIRED_CLASSES)
    per_hop = [impair.rules(hop) for hop in plan.HOPS]
    assert sorted(r for rules in per_hop for r in rules) == sorted(impair.rules())
    assert 'ip daddr 198.18.71.0/24 counter drop comment "blackhole ip to"' in per_hop[2]
    moved = dict(plan.IMPAIRMENT_HOPS, blackhole=5)
    assert not any("blackhole" in r for r in impair.rules(3, moved))
    assert any("blackhole" in r for r in impair.rules(5, moved))
    silent, first = impair.ruleset(plan.SILENT_HOP), impair.ruleset(1)
    assert "hook output" in silent and "icmpv6 type time-exceeded counter drop" in silent
    assert "hook output" not in first and impair.LOSS_CHAIN in first
    assert impair.LOSS_CHAIN not in impair.ruleset(2)


@pytest.mark.parametrize("text, message", [
    ("nope=2", "unknown impairment class 'nope'"),
    ("clean=2", "class clean impairs nothing"),
    ("blackhole=0", "class blackhole: hop must be an integer from 1 to 5, got 0"),
    ("blackhole=6", "got 6"),
    ("blackhole=x", "got 'x'"),
    ("blackhole", "expected CLASS=HOP"),
])
def test_bad_placements_are_refused_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        plan.parse_impairment_hop(text)


# ---- the routers answer, real packets ---------------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_every_router_but_the_silent_one_answers_ttl_expiry(lab, family):
    dst = target("clean", family, HOST["ttl"])
    silent_before = lab.status()["hops"][plan.SILENT_HOP - 1]["time_exceeded_dropped"]
    got = {ttl: lab.call_in_client(probe.ttl_probe, dst, ttl, timeout=0.5 if
                                   ttl == plan.SILENT_HOP else 2.0)
           for ttl in range(1, plan.ROUTERS + 2)}
    for hop in plan.HOPS:
        if hop == plan.SILENT_HOP:
            assert got[hop] is None
        else:
            assert got[hop] == (str(plan.hop_address(hop, family)), *TIME_EXCEEDED[family])
    # One more and the datagram reaches the server: exactly ROUTERS routers on the way. (An
    # IPv6 error about an AnyIP target comes from the server's own address.)
    server = str(plan.SERVER_V4 if family == 4 else plan.SERVER_V6)
    assert got[plan.ROUTERS + 1][1:] == PORT_UNREACHABLE[family]
    assert got[plan.ROUTERS + 1].offender in (dst, server)
    hops = lab.status()["hops"]
    fam = "ip" if family == 4 else "ip6"
    assert hops[plan.SILENT_HOP - 1]["time_exceeded_dropped"][fam] > silent_before[fam]
    assert [h["silent"] for h in hops] == [h == plan.SILENT_HOP for h in plan.HOPS]


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_a_dropping_hop_still_answers_its_own_ttl(lab, family):
    """blackhole at hop h: TTL h expires there (answered), TTL h+1 is dropped there."""
    hop = lab.impairment_hops()["blackhole"]
    dst = target("blackhole", family, HOST["drop"])
    before = by_hop(lab, "blackhole")[hop]
    assert lab.call_in_client(probe.ttl_probe, dst, hop) == \
        (str(plan.hop_address(hop, family)), *TIME_EXCEEDED[family])
    assert lab.call_in_client(probe.ttl_probe, dst, hop + 1, timeout=0.5) is None
    assert by_hop(lab, "blackhole")[hop] == before + 1        # only the TTL h+1 datagram


def quoted_tclass(family, dst, ttl, tclass, port, timeout=2.0):
    """Send a UDP datagram with ``tclass`` and ``ttl``; read ICMP with a raw socket until the
    time-exceeded quoting it arrives: (sender, the quoted packet's TOS / traffic class), or
    None. Inside the client namespace."""
    proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
    with socket.socket(AF[family], socket.SOCK_RAW, proto) as raw, \
            socket.socket(AF[family], socket.SOCK_DGRAM) as udp:
        level = socket.IPPROTO_IP if family == 4 else socket.IPPROTO_IPV6
        udp.setsockopt(level, socket.IP_TOS if family == 4 else socket.IPV6_TCLASS, tclass)
        udp.setsockopt(level, socket.IP_TTL if family == 4 else socket.IPV6_UNICAST_HOPS, ttl)
        udp.sendto(b"quote me", (dst, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([raw], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            data, sender = raw.recvfrom(2048)
            if family == 4:
                icmp = data[(data[0] & 0x0F) * 4:]
                inner = icmp[8:]
                if icmp[0] != 11 or len(inner) < 28:
                    continue
                ihl = (inner[0] & 0x0F) * 4
                qdst, qport, tc = socket.inet_ntop(AF[4], inner[16:20]), inner[ihl + 2:ihl + 4], \
                    inner[1]
            else:
                inner = data[8:]
                if data[0] != 3 or len(inner) < 48:
                    continue
                qdst, qport = socket.inet_ntop(AF[6], inner[24:40]), inner[42:44]
                tc = ((inner[0] & 0x0F) << 4) | (inner[1] >> 4)
            if qdst == dst and int.from_bytes(qport, "big") == port:
                return sender[0], tc
    return None


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_a_rewrite_shows_in_the_quote_of_the_next_hop_only(lab, family):
    """ecn-bleach at hop h: hop h quotes the datagram as sent (ECT(0)), hop h+1 bleached."""
    hop = lab.impairment_hops()["ecn-bleach"]
    dst = target("ecn-bleach", family, HOST["quote"])
    at = lab.call_in_client(quoted_tclass, family, dst, hop, ECT0, 40001)
    after = lab.call_in_client(quoted_tclass, family, dst, hop + 1, ECT0, 40002)
    assert at == (str(plan.hop_address(hop, family)), ECT0)
    assert after == (str(plan.hop_address(hop + 1, family)), 0)
    clean = target("clean", family, HOST["quote"])
    assert lab.call_in_client(quoted_tclass, family, clean, hop + 1, ECT0, 40003)[1] == ECT0


# ---- each class at its hop --------------------------------------------------------------------

def send_udp(dst, zero_checksum=False, port=9999):
    family = 6 if ":" in dst else 4
    with socket.socket(AF[family], socket.SOCK_DGRAM) as sock:
        if zero_checksum:
            if family == 4:
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
            else:
                sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_TX, 1)
        sock.sendto(b"pathspider lab hop check", (dst, port))


def h2c_upgrade(dst, timeout=0.8):
    """Ask ``dst`` for h2c; the answer (dropped on h2c-drop targets) is not waited for long."""
    with socket.socket(AF[6 if ":" in dst else 4], socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((dst, 80))
        sock.sendall(H2C_UPGRADE)
        try:
            while sock.recv(65536):
                pass
        except socket.timeout:
            pass


def matching_packet(cls, family, dst, sport):
    """Send one packet that class ``cls``'s rule matches (inside the client namespace)."""
    syn = craft.SYN | (craft.ECE | craft.CWR if cls == "ecn-syn-drop" else 0)
    if cls in ("ecn-syn-drop", "tfo-strip", "mss-rewrite", "evilbit-drop"):
        craft.send_tcp(CLIENT[family], dst, sport, 80, flags=syn, evil=cls == "evilbit-drop")
    elif cls == "h2c-drop":
        h2c_upgrade(dst)
    else:
        send_udp(dst, zero_checksum=cls == "udp-zero-drop")


@pytest.mark.root
@pytest.mark.parametrize("cls", plan.IMPAIRED_CLASSES)
def test_each_class_is_impaired_at_its_hop(lab, cls):
    placement = lab.impairment_hops()
    hop = placement[cls]
    assert hop == plan.IMPAIRMENT_HOPS[cls]
    for h, ns in lab.router_netns.items():
        here = [c for c in impair.counters(ns) if c["class"] == cls]
        assert bool(here) == (h == hop), (h, here)
    families = [4] if cls == "evilbit-drop" else FAMILIES
    before = by_hop(lab, cls)
    for i, family in enumerate(families):
        lab.call_in_client(matching_packet, cls, family,
                           target(cls, family, HOST["count"]), 43000 + i)
    after = by_hop(lab, cls)
    assert set(after) == {hop}
    assert after[hop] >= before[hop] + len(families)


# ---- moving a class ---------------------------------------------------------------------------

@pytest.mark.root
def test_place_moves_a_class_and_keeps_the_placement(lab):
    old = lab.impairment_hops()["ecn-bleach"]
    new = 1 if old != 1 else 2
    keep = by_hop(lab, "dscp-bleach")               # a class that stays where it is
    try:
        done = cli("--name", lab.name, "place", f"ecn-bleach={new}")
        assert done.returncode == 0, done.stderr
        assert "moved ecn-bleach" in done.stdout and f"ecn-bleach     hop {new}" in done.stdout
        assert lab.impairment_hops()["ecn-bleach"] == new
        with open(lab.state_path) as f:
            assert json.load(f)["impairment_hops"]["ecn-bleach"] == new
        assert [c for c in impair.counters(lab.router_netns[old]) if c["class"] == "ecn-bleach"] \
            == []
        for family in FAMILIES:
            dst = target("ecn-bleach", family, HOST["move"])
            lab.call_in_client(send_udp, dst)
            # The quote of the new hop shows the datagram intact, the next hop's bleached.
            at = lab.call_in_client(quoted_tclass, family, dst, new, ECT0, 40011)
            after = lab.call_in_client(quoted_tclass, family, dst, new + 1, ECT0, 40012)
            assert (at[1], after[1]) == (ECT0, 0)
        assert set(by_hop(lab, "ecn-bleach")) == {new} and by_hop(lab, "ecn-bleach")[new] >= 2
        status = json.loads(cli("--name", lab.name, "status", "--json").stdout)
        assert status["up"] and status["classes"]["ecn-bleach"]["impairment_hop"] == new
        assert by_hop(lab, "dscp-bleach") == keep   # not reloaded: its counters kept
        again = cli("--name", lab.name, "place", f"ecn-bleach={new}")
        assert again.returncode == 0 and "nothing moved" in again.stdout
    finally:
        assert lab.set_impairment_hops(defaults=True) in (["ecn-bleach"], [])
    assert lab.impairment_hops() == {c: plan.IMPAIRMENT_HOPS[c] for c in plan.IMPAIRED_CLASSES}
    assert set(by_hop(lab, "ecn-bleach")) == {old} and lab.is_up()


@pytest.mark.root
def test_bad_moves_are_refused_and_change_nothing(lab):
    before = lab.impairment_hops()
    with pytest.raises(ValueError, match="unknown impairment class"):
        lab.set_impairment_hop("nope", 2)
    with pytest.raises(ValueError, match="hop must be an integer from 1 to 5"):
        lab.set_impairment_hop("blackhole", 6)
    with pytest.raises(ValueError, match="impairs nothing"):
        lab.set_impairment_hop("clean", 2)
    for argv, needle in ((["place", "blackhole=0"], "hop must be an integer from 1 to 5"),
                         (["place", "nope=1"], "unknown impairment class"),
                         (["up", "--impairment-hop", "blackhole"], "expected CLASS=HOP")):
        done = cli("--name", lab.name, *argv)
        assert done.returncode == 2 and needle in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert lab.impairment_hops() == before and lab.is_up()
    with pytest.raises(LabError, match="is not up"):
        Lab(lab.name + "-no").set_impairment_hop("blackhole", 2)
    done = cli("--name", lab.name + "-no", "place")
    assert done.returncode == 1 and "is not up" in done.stderr


@pytest.mark.root
def test_status_json_has_the_hops_and_each_class_hop(lab):
    info = json.loads(cli("--name", lab.name, "status", "--json").stdout)
    assert [h["hop"] for h in info["hops"]] == list(plan.HOPS)
    assert info["hops"][1] == {"hop": 2, "namespace": f"{lab.name}-r2",
                               "address4": "198.18.17.2", "address6": "2001:db8:0:11::2",
                               "silent": False}
    assert info["hops"][4]["silent"] is True and info["hops"][4]["namespace"] == f"{lab.name}-r5"
    assert {c: v["impairment_hop"] for c, v in info["classes"].items()} == plan.IMPAIRMENT_HOPS
    assert info["classes"]["blackhole"]["description"] == "everything silently dropped"
    assert {c["hop"] for c in info["counters"] if c["class"] == "clean"} == {plan.COUNTING_HOP}
    text = cli("--name", lab.name, "status").stdout
    assert f"  5 {lab.name}-r5" in text and "SILENT" in text
    assert "3 blackhole      ip   to" in text


# ---- a lab of our own: built with a placement, health of every router, repair -----------------

@pytest.fixture
def hop_lab():
    lab = Lab(f"{default_name()}-hp"[:8])
    yield lab
    try:
        lab.down()
    finally:
        assert not any(netns.exists(ns) for ns in lab.namespaces.values())


@pytest.mark.root
def test_up_with_a_placement_health_of_every_router_and_repair(hop_lab):
    lab = hop_lab
    done = cli("--name", lab.name, "up", "--impairment-hop", "blackhole=4")
    assert done.returncode == 0, done.stderr
    assert all(netns.exists(f"{lab.name}-{role}") for role in ROLES) and len(ROLES) == 7
    assert lab.impairment_hops()["blackhole"] == 4
    dst = target("blackhole", 4, HOST["own"])
    assert lab.call_in_client(probe.ttl_probe, dst, 4)[0] == str(plan.hop_address(4, 4))
    assert lab.call_in_client(probe.ttl_probe, dst, 5, timeout=0.5) is None

    # Every router's ruleset and routes are checked; `up` repairs and keeps the placement.
    for ns, argv, problem in [
            (lab.router_netns[4], ["nft", "delete", "table", "inet", impair.TABLE],
             f"{lab.name}-r4: impairment ruleset of hop 4 not loaded"),
            (lab.router_netns[5], ["nft", "delete", "table", "inet", impair.TABLE],
             f"{lab.name}-r5: impairment ruleset of hop 5 not loaded"),
            (lab.router_netns[3], ["ip", "route", "del", "198.18.64.0/18"],
             f"{lab.name}-r3: route 198.18.64.0/18 via 198.18.19.2 missing"),
            (lab.router_netns[2], ["ip", "link", "set", "c0", "down"],
             f"{lab.name}-r2: interface c0 is down")]:
        netns.run(ns, argv)
        done = cli("--name", lab.name, "status")
        assert done.returncode == 1 and f"problem: {problem}" in done.stdout, done.stdout
        assert lab.up() is True
        assert lab.is_up() and lab.impairment_hops()["blackhole"] == 4
    assert lab.call_in_client(probe.ttl_probe, dst, 5, timeout=0.5) is None

    # On a running lab, `up --impairment-hop` moves the class (and says so).
    done = cli("--name", lab.name, "up", "--impairment-hop", "blackhole=2")
    assert done.returncode == 0 and "impairments moved: blackhole hop 2" in done.stdout
    assert lab.call_in_client(probe.ttl_probe, dst, 3, timeout=0.5) is None
    assert cli("--name", lab.name, "up").stdout.endswith("nothing changed\n")

    # A move killed half-way (the new router changed, the old not yet): the lab is unhealthy,
    # naming the router, and `up` rebuilds it with the placement it kept.
    code = (f"import os\nfrom pathspider.lab import impair\nfrom pathspider.lab.lab import Lab\n"
            f"impair._chain = lambda *a, **k: os._exit(3)\n"
            f"Lab({lab.name!r}).set_impairment_hop('blackhole', 3)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 3
    assert f"{lab.name}-r3: impairment ruleset of hop 3 not loaded" in lab.problems()
    assert lab.ensure_up() == "rebuilt" and lab.impairment_hops()["blackhole"] == 2
    assert lab.call_in_client(probe.ttl_probe, dst, 2)[0] == str(plan.hop_address(2, 4))
    assert lab.call_in_client(probe.ttl_probe, dst, 3, timeout=0.5) is None

    done = cli("--name", lab.name, "down")
    assert done.returncode == 0
    assert not any(netns.exists(f"{lab.name}-{role}") for role in ROLES)
    assert not os.path.exists(lab.rundir)
