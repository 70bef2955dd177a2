"""The scope filter as pure logic: the default blocklist's table, CIDR files, precedence,
counting and warnings, the lab check, and the cost of a lookup. No packet is sent: addresses
are only classified."""
import ipaddress
import logging
import os
import random
import subprocess

import pytest

from pathspider.engine import scope, special_ranges
from pathspider.engine.scope import ScopeError, build_filter, read_cidr_file
from pathspider.engine.targets import TargetStats
from pathspider.lab import lab as lab_module
from pathspider.lab import plan

BLOCKED = [r for r in special_ranges.ALL if r.blocked]
EXEMPT = [r for r in special_ranges.ALL if not r.blocked]

#: Public addresses that must stay measurable (classified only: nothing is sent to them).
PUBLIC = ["8.8.8.8", "1.1.1.1", "9.9.9.9", "193.0.14.129", "2606:4700::1111",
          "2001:4860:4860::8888", "2a00:1450:4001::1", "2002:c000:204::1", "2001::1",
          "64:ff9b::808:808", "192.0.0.9", "192.0.0.10", "100.63.255.255", "100.128.0.0",
          "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0", "198.17.255.255",
          "198.20.0.0", "223.255.255.255", "2001:200::1", "2001:3::1", "2001:20::1",
          "3fff:1000::1", "2001:db9::1", "2001:db7:ffff::1"]


def ints(network):
    """First, last and a middle address of a network, as text."""
    net = ipaddress.ip_network(network)
    first, last = int(net.network_address), int(net.broadcast_address)
    cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [str(cls(v)) for v in (first, (first + last) // 2, last)]


def covered_by_exempt(address):
    """The more specific globally reachable entry that lets ``address`` through, if any."""
    ip = ipaddress.ip_address(address)
    holders = [r for r in special_ranges.ALL if ip in ipaddress.ip_network(r.network)]
    best = max(holders, key=lambda r: ipaddress.ip_network(r.network).prefixlen)
    return best if not best.blocked else None


# -- the table -----------------------------------------------------------------------------

def test_the_table_is_well_formed():
    seen = set()
    for entry in special_ranges.ALL:
        net = ipaddress.ip_network(entry.network)         # strict: no host bits
        assert entry.name and entry.rfc.startswith("RFC"), entry
        assert entry.network not in seen, entry
        seen.add(entry.network)
        if not entry.blocked:     # an exemption only makes sense inside a blocked range
            assert any(net.subnet_of(ipaddress.ip_network(o.network)) and o.blocked
                       for o in special_ranges.ALL if o is not entry
                       and ipaddress.ip_network(o.network).version == net.version), entry


@pytest.mark.parametrize("network", [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "127.0.0.0/8", "::1/128",
    "169.254.0.0/16", "fe80::/10", "224.0.0.0/4", "ff00::/8", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20", "198.18.0.0/15",
    "2001:2::/48", "100.64.0.0/10", "0.0.0.0/8", "240.0.0.0/4", "255.255.255.255/32",
    "192.0.0.0/24", "::/128", "::ffff:0:0/96", "100::/64", "2001:10::/28", "fec0::/10",
    "5f00::/16", "64:ff9b:1::/48"])
def test_every_listed_range_is_in_the_table_and_blocked(network):
    entry = next(r for r in special_ranges.ALL if r.network == network)
    assert entry.blocked
    check = build_filter().check
    for address in ints(network):
        if covered_by_exempt(address) is None:
            rule = check(address)
            assert rule is not None and not rule.measure, address


def test_every_blocked_entry_blocks_its_edges_and_middle_but_not_its_exemptions():
    check = build_filter().check
    for entry in BLOCKED:
        for address in ints(entry.network):
            if address.startswith("::ffff:"):
                continue                    # targets are unmapped before the filter
            exempt = covered_by_exempt(address)
            rule = check(address)
            if exempt is None:
                assert rule is not None and not rule.measure, (entry, address)
            else:
                assert rule is None, (entry, address, exempt)
    for entry in EXEMPT:
        for address in ints(entry.network):
            assert check(address) is None, (entry, address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_measured(address):
    assert build_filter().check(address) is None


def test_the_kind_is_the_registry_name():
    check = build_filter().check
    assert check("127.0.0.1").kind == "Loopback"
    assert check("::1").kind == "Loopback Address"
    assert check("10.9.8.7").kind == check("192.168.1.1").kind == "Private-Use"
    assert check("fd00::1").kind == "Unique-Local"
    assert check("2001:db8::1").kind == "Documentation"
    assert "RFC 1918" in check("10.0.0.1").text


def test_the_lab_ranges_match_the_lab_plan():
    assert special_ranges.LAB_RANGES == (str(plan.LAB_V4), str(plan.LAB_V6))
    assert scope.IN_LAB_ENV == lab_module.IN_LAB_ENV


def test_inside_the_lab_only_the_lab_ranges_are_lifted():
    check = build_filter(lab="x").check
    for address in ("198.18.0.1", "198.18.64.1", "198.19.255.254", "2001:db8::1",
                    "2001:db8:100:2000::17"):
        assert check(address) is None, address
    for address in ("127.0.0.1", "::1", "10.0.0.1", "192.0.2.1", "3fff::1", "2001:2::1"):
        assert not check(address).measure, address


def test_allow_lifts_everything():
    f = build_filter(allow=True)
    for entry in BLOCKED:
        assert f.check(ints(entry.network)[0]) is None


# -- CIDR files ------------------------------------------------------------------------------

def write(tmp_path, text, name="list.txt", mode="w"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_a_good_file(tmp_path):
    path = write(tmp_path, "# zmap-style list\n\n192.0.2.0/24\n  203.0.113.7  # one host\n"
                           "2001:db8::/32\r\n::ffff:10.0.0.0/104\n198.18.64.0/255.255.255.0\n")
    assert [str(n) for n in read_cidr_file(path)] == [
        "192.0.2.0/24", "203.0.113.7/32", "2001:db8::/32", "10.0.0.0/8", "198.18.64.0/24"]


def test_an_empty_file_and_only_comments(tmp_path):
    assert read_cidr_file(write(tmp_path, "")) == []
    assert read_cidr_file(write(tmp_path, "# nothing\n\n   \n#\n")) == []


@pytest.mark.parametrize("line, why", [
    ("10.1.2.3/8", "did you mean 10.0.0.0/8"),
    ("10.0.0.0/33", "not a network"),
    ("999.0.0.0/8", "not a network"),
    ("010.0.0.0/8", "not a network"),
    ("10.0.0.0 /8", "not a network"),
    ("10.0.0.0/8 10.1.0.0/16", "not a network"),
    ("10.0.0.0/8,", "not a network"),
    ("fe80::%eth0/64", "not a network"),
    ("example.com", "not a network"),
    ("10.0.0.0/-8", "not a network"),
    ("'; rm -rf /", "not a network"),
    ("\x1b[2J10.0.0.0/8", "not a network"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, line, why):
    path = write(tmp_path, f"# header\n192.0.2.0/24\n{line}\n198.51.100.0/24\n")
    with pytest.raises(ScopeError) as err:
        read_cidr_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}, line 3: ") and why in message
    assert "\n" not in message and "\x1b" not in message.replace("\\x1b", "")


@pytest.mark.parametrize("content, why", [
    (b"192.0.2.0/24\n\xff\xfe10.0.0.0/8\n", "not ASCII"),
    (b"192.0.2.0/24\n\xef\xbc\x91\xef\xbc\x90.0.0.0/8\n", "not ASCII"),   # fullwidth digits
    (b"192.0.2.0/24\n" + b"1" * 5000 + b"\n", "longer than"),
    (b"192.0.2.0/24\n10.0.0.0/8\x00\n", "not a network"),
])
def test_hostile_bytes(tmp_path, content, why):
    with pytest.raises(ScopeError) as err:
        read_cidr_file(write(tmp_path, content))
    assert "line 2: " in str(err.value) and why in str(err.value)
    assert len(str(err.value)) < 300


def test_an_endless_line_is_refused_without_reading_it_all():
    with pytest.raises(ScopeError, match="line 1: longer than"):
        read_cidr_file("/dev/zero")


def test_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ScopeError, match="cannot read .*nope.txt"):
        read_cidr_file(str(tmp_path / "nope.txt"))
    with pytest.raises(ScopeError, match="cannot read"):
        read_cidr_file(str(tmp_path))


# -- precedence ----------------------------------------------------------------------------

def test_blocklist_wins_over_allowlist_and_allow(tmp_path):
    block = write(tmp_path, "8.8.8.0/24\n2606:4700::/32\n", "block.txt")
    allow = write(tmp_path, "8.8.8.8/32\n0.0.0.0/0\n::/0\n", "allow.txt")
    for f in (build_filter(blocklists=[block], allowlists=[allow]),
              build_filter(allow=True, blocklists=[block], allowlists=[allow])):
        assert f.check("8.8.8.8").kind == "--blocklist"
        assert f.check("2606:4700::1").kind == "--blocklist"
        assert f.check("8.8.4.4") is None
        assert "block.txt" in f.check("8.8.8.8").text


def test_allowlist_restricts_and_lifts_only_what_it_names_specifically(tmp_path):
    allow = write(tmp_path, "0.0.0.0/0\n127.0.0.1/32\n192.0.2.0/24\n", "allow.txt")
    f = build_filter(allowlists=[allow])
    assert f.check("8.8.8.8") is None
    assert f.check("127.0.0.1").measure and f.check("127.0.0.1").kind == "Loopback (allowlisted)"
    assert not f.check("127.0.0.2").measure                 # 0.0.0.0/0 does not lift 127/8
    assert f.check("10.0.0.1").kind == "Private-Use"
    assert f.check("192.0.2.77").measure
    assert f.check("2606:4700::1").kind == "not in --allowlist"      # no IPv6 entry
    assert f.check("::1").kind == "Loopback Address"                 # default says so first


def test_an_allowlist_of_exactly_a_blocked_range_lifts_it(tmp_path):
    allow = write(tmp_path, "10.0.0.0/8\nfc00::/7\n")
    f = build_filter(allowlists=[allow])
    assert f.check("10.255.255.255").measure and f.check("fd12::1").measure
    assert f.check("11.0.0.0").kind == "not in --allowlist"


def test_an_allowlist_inside_an_exemption_stays_quiet(tmp_path):
    allow = write(tmp_path, "192.0.0.9/32\n2001::/48\n")
    f = build_filter(allowlists=[allow])
    assert f.check("192.0.0.9") is None                      # globally reachable anyway
    assert f.check("2001::1") is None                        # Teredo: exempt
    assert f.check("192.0.0.8").kind == "IETF Protocol Assignments"


def test_several_files_of_each_kind(tmp_path):
    a1 = write(tmp_path, "8.8.8.0/24\n", "a1")
    a2 = write(tmp_path, "1.1.1.0/24\n", "a2")
    b1 = write(tmp_path, "8.8.8.8/32\n", "b1")
    f = build_filter(allowlists=[a1, a2], blocklists=[b1])
    assert f.check("8.8.8.8").kind == "--blocklist"
    assert f.check("8.8.8.9") is None and f.check("1.1.1.1") is None
    assert f.check("9.9.9.9").kind == "not in --allowlist"


def test_flattening_matches_a_brute_force_longest_prefix_match(tmp_path):
    """Random nested allow/block lists against the rule, one address at a time."""
    rnd = random.Random(7)
    nets = []
    for _ in range(300):
        length = rnd.choice([4, 8, 12, 16, 20, 24, 28, 32])
        base = rnd.choice([0x0A000000, 0x7F000000, 0x08080800, 0xC6120000, rnd.getrandbits(32)])
        nets.append(ipaddress.ip_network(((base ^ rnd.getrandbits(8)) & ~((1 << (32 - length)) - 1)
                                          & 0xFFFFFFFF, length)))
    allow_nets, block_nets = nets[:200], nets[200:260]
    allow = write(tmp_path, "".join(f"{n}\n" for n in allow_nets), "allow")
    block = write(tmp_path, "".join(f"{n}\n" for n in block_nets), "block")
    f = build_filter(allowlists=[allow], blocklists=[block])
    defaults = [(ipaddress.ip_network(r.network), r) for r in special_ranges.IPV4]
    probes = [str(ipaddress.IPv4Address(n.network_address + k)) for n in nets
              for k in (0, 1, n.num_addresses - 1) if k < n.num_addresses]
    probes += [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(2000)]
    for address in probes:
        ip = ipaddress.ip_address(address)
        expected = _expected(ip, allow_nets, block_nets, defaults)
        rule = f.check(address)
        got = "measure" if rule is None or rule.measure else rule.kind
        assert got == expected, address


def _expected(ip, allow_nets, block_nets, defaults):
    if any(ip in n for n in block_nets):
        return "--blocklist"
    candidates = [(n.prefixlen, 1, None) for n in allow_nets if ip in n]
    candidates += [(n.prefixlen, 0, r) for n, r in defaults if ip in n]
    if not candidates:
        return "not in --allowlist"
    _, is_allow, entry = max(candidates, key=lambda c: (c[0], c[1]))
    if not is_allow and entry.blocked:
        return entry.name
    if not any(ip in n for n in allow_nets):
        return "not in --allowlist"
    return "measure"


# -- counting and warnings -------------------------------------------------------------------

def test_skipped_targets_are_counted_per_kind_and_warned_about_once(caplog):
    stats = TargetStats()
    f = build_filter(stats=stats)
    jobs = [[f"127.0.0.{i}", 80, "", str(i)] for i in range(1, 101)]
    jobs += [[f"10.0.{i}.1", 80, "", ""] for i in range(50)] + [["8.8.8.8", 53, "", ""]]
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.scope"):
        admitted = list(f.admit(iter(jobs)))
    assert admitted == [["8.8.8.8", 53, "", ""]]
    assert f.skipped == {"Loopback": 100, "Private-Use": 50}
    assert stats.out_of_scope == 150 and stats.as_dict()["out_of_scope"] == 150
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "127.0.0.1" in warnings[0] and "Loopback" in warnings[0]
    assert f.summary() == "150 targets out of scope not measured: 100 Loopback, 50 Private-Use"


def test_lifted_targets_get_one_warning_per_kind(tmp_path, caplog):
    allow = write(tmp_path, "127.0.0.0/8\n")
    f = build_filter(allowlists=[allow])
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.scope"):
        admitted = list(f.admit([[f"127.0.0.{i}", 80] for i in range(1, 11)]))
    assert len(admitted) == 10 and f.skipped_total == 0
    assert f.lifted == {"Loopback (allowlisted)": 10}
    assert len(caplog.records) == 1 and "measuring 127.0.0.1" in caplog.records[0].getMessage()


def test_no_filter_when_everything_is_lifted():
    f = build_filter(allow=True)
    jobs = [["127.0.0.1", 1]]
    assert list(f.admit(jobs)) == jobs and f.summary() == ""


# -- the lab check -------------------------------------------------------------------------

def test_no_variable_no_lab():
    assert scope.lab_client_namespace({}) is None


@pytest.mark.parametrize("value", ["../../etc", "a b", "x" * 9, "-x"])
def test_a_variable_that_is_not_a_lab_name_lifts_nothing(value, caplog):
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: value}) is None
    assert "is not a lab name" in caplog.text


def test_a_variable_naming_no_namespace_lifts_nothing(caplog):
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: "nosuchlb"}) is None
    assert "cannot be checked" in caplog.text


@pytest.mark.root
def test_a_variable_naming_a_namespace_we_are_not_in_lifts_nothing(caplog):
    """A namespace called NAME-client exists, but this process is not in it."""
    name = f"sc{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", f"{name}-client"], check=True)
    try:
        assert scope.lab_client_namespace({scope.IN_LAB_ENV: name}) is None
        assert "not in its client namespace" in caplog.text
    finally:
        subprocess.run(["ip", "netns", "del", f"{name}-client"], check=False)


def test_the_process_own_namespace_is_recognised(tmp_path, monkeypatch):
    """Point the namespace directory at a file that *is* this process's namespace."""
    link = tmp_path / "mine-client"
    link.symlink_to("/proc/self/ns/net")
    monkeypatch.setattr(scope, "NETNS_DIR", str(tmp_path))
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: "mine"}) == "mine"


def test_a_vantage_namespace_of_the_lab_is_recognised(tmp_path, monkeypatch, caplog):
    """A lab's vantages (<name>-v1 .. -v8) are client namespaces too; anything else named like
    one (-v9, -vx) or another lab's vantage is not, and the variable alone never is."""
    (tmp_path / "mine-client").write_text("")           # exists, but is not our namespace
    monkeypatch.setattr(scope, "NETNS_DIR", str(tmp_path))
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: "mine"}) is None
    assert "not in its client namespace" in caplog.text
    for wrong in ("mine-v9", "mine-vx", "mine-v0", "other-v3"):
        (tmp_path / wrong).symlink_to("/proc/self/ns/net")
    (tmp_path / "other-client").write_text("")
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: "mine"}) is None
    (tmp_path / "mine-v3").symlink_to("/proc/self/ns/net")
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: "mine"}) == "mine"
    assert scope.lab_client_namespace({scope.IN_LAB_ENV: "other"}) == "other"


def test_what_was_lifted_is_logged_once_reading_starts(caplog):
    import argparse
    f = scope.scope_for_run(argparse.Namespace(allow=True, blocklist=None, allowlist=None))
    assert "--allow" not in caplog.text                 # a refused run says only why
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.scope"):
        assert list(f.admit([["127.0.0.1", 1]])) == [["127.0.0.1", 1]]
    assert caplog.text.count("--allow: the default blocklist is lifted") == 1
