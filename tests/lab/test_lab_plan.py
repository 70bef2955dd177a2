"""Pure logic of the lab: address plan, DNS names, target lists, ruleset text, server replies,
the packet summariser and crafted packets. No root needed."""
import io
import ipaddress
import json
import struct

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from pathspider.lab import craft, dnsd, httpd, impair, names, packets, plan, targets

ALLOWED = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))


def _all_plan_addresses():
    for value in vars(plan).values():
        if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address,
                              ipaddress.IPv4Network, ipaddress.IPv6Network)):
            yield value
    for cls in plan.CLASSES.values():
        yield cls.net4
        yield cls.net6


def _inside(item):
    net = ipaddress.ip_network(item)
    return any(net.version == a.version and net.subnet_of(a) for a in ALLOWED)


def test_every_plan_address_is_in_the_benchmark_or_documentation_space():
    found = list(_all_plan_addresses())
    assert len(found) > 20
    outside = [str(a) for a in found if not _inside(a)]
    assert outside == []


def test_classes_have_the_agreed_names_and_disjoint_subnets_inside_the_target_space():
    assert set(plan.CLASS_NAMES) >= {
        "clean", "ecn-syn-drop", "ecn-bleach", "dscp-bleach", "tfo-strip", "unreachable",
        "blackhole", "evilbit-drop", "udp-zero-drop", "mss-rewrite"}
    nets4 = [c.net4 for c in plan.CLASSES.values()]
    nets6 = [c.net6 for c in plan.CLASSES.values()]
    assert len(set(nets4)) == len(nets4) and len(set(nets6)) == len(nets6)
    assert all(n.prefixlen == 24 and n.subnet_of(plan.TARGETS_V4) for n in nets4)
    assert all(n.prefixlen == 64 and n.subnet_of(plan.TARGETS_V6) for n in nets6)
    assert all(c.description for c in plan.CLASSES.values())


def test_target_addresses_use_the_host_number_in_both_families():
    assert str(plan.target_address("ecn-syn-drop", 17, 4)) == "198.18.66.17"
    assert str(plan.target_address("ecn-syn-drop", 17, 6)) == "2001:db8:100:2000::17"
    assert plan.class_of("2001:db8:100:2000::17") == "ecn-syn-drop"
    assert plan.class_of(plan.target_address("mss-rewrite", 254, 4)) == "mss-rewrite"
    assert plan.class_of(plan.DNS_V4) is None
    with pytest.raises(ValueError):
        plan.target_address("clean", 255, 4)


@pytest.mark.parametrize("qname, family, expect", [
    ("t17.ecn-syn-drop.lab.test.", 4, (names.OK, ["198.18.66.17"])),
    ("T17.ECN-SYN-DROP.lab.test", 6, (names.OK, ["2001:db8:100:2000::17"])),
    ("ecn-bleach.lab.test", 4, (names.OK, ["198.18.67.1"])),
    ("www.lab.test", 6, (names.OK, ["2001:db8:100::1"])),
    ("lab.test", 4, (names.OK, ["198.18.64.1"])),
    ("dns.lab.test", 6, (names.OK, [str(plan.DNS_V6)])),
    ("t17.clean.lab.test", None, (names.NODATA, [])),
    ("t0.clean.lab.test", 4, (names.NXDOMAIN, [])),
    ("t255.clean.lab.test", 4, (names.NXDOMAIN, [])),
    ("t017.clean.lab.test", 4, (names.NXDOMAIN, [])),
    ("t1.nosuchclass.lab.test", 4, (names.NXDOMAIN, [])),
    ("example.com", 4, (names.REFUSED, [])),
    ("notlab.test", 4, (names.REFUSED, [])),
])
def test_lab_names(qname, family, expect):
    status, addrs = names.lookup(qname, family)
    assert (status, [str(a) for a in addrs]) == expect


def test_targets_cycle_over_classes_and_families_with_resolvable_names():
    rows = targets.make_targets(6, "clean,ecn-syn-drop", "both", port=8080)
    assert rows[:4] == [
        ["198.18.64.1", 8080, "t1.clean.lab.test", "1"],
        ["2001:db8:100::1", 8080, "t1.clean.lab.test", "2"],
        ["198.18.66.1", 8080, "t1.ecn-syn-drop.lab.test", "3"],
        ["2001:db8:100:2000::1", 8080, "t1.ecn-syn-drop.lab.test", "4"]]
    assert rows[4][0] == "198.18.64.2" and rows[5][3] == "6"
    for ip, _, host, _ in targets.make_targets(200, None, "both"):
        family = ipaddress.ip_address(ip).version
        assert names.lookup(host, family) == (names.OK, [ipaddress.ip_address(ip)])


def test_targets_reject_bad_requests_clearly():
    with pytest.raises(ValueError, match="nosuch"):
        targets.make_targets(1, "clean,nosuch")
    with pytest.raises(ValueError, match="family"):
        targets.make_targets(1, None, "5")
    with pytest.raises(ValueError, match="between 0 and 254"):
        targets.make_targets(255, "clean", "4")
    assert len(targets.make_targets(254, "clean", "6")) == 254


def test_target_writers():
    rows = targets.make_targets(2, "blackhole", "4")
    out = io.StringIO()
    targets.write_csv(rows, out)
    assert out.getvalue() == ("198.18.71.1,80,t1.blackhole.lab.test,1\n"
                              "198.18.71.2,80,t2.blackhole.lab.test,2\n")
    out = io.StringIO()
    targets.write_ndjson(rows, out)
    assert json.loads(out.getvalue().splitlines()[1]) == {
        "dip": "198.18.71.2", "dp": 80, "domain": "t2.blackhole.lab.test", "rank": "2"}


def test_lab_rows_have_the_types_the_csv_target_reader_gives():
    """A job is the same whether it came from the lab or from a CSV file: rank is text."""
    from pathspider.engine.targets import read_targets

    rows = targets.make_targets(None, None, "both", port=8080)
    out = io.StringIO()
    targets.write_csv(rows, out)
    from_csv = list(read_targets(out.getvalue().splitlines(keepends=True)))
    assert from_csv == rows
    assert [[type(v) for v in r] for r in from_csv] == [[type(v) for v in r] for r in rows]
    assert {type(r[3]) for r in rows} == {str}
    out = io.StringIO()
    targets.write_ndjson(rows, out)
    jobs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [j["rank"] for j in jobs] == [r[3] for r in rows]
    assert {type(j["rank"]) for j in jobs} == {str} and {type(j["dp"]) for j in jobs} == {int}


def test_ruleset_has_one_counted_rule_per_class_family_direction():
    text = impair.ruleset()
    rules = impair.rules()
    assert all(" counter" in r and 'comment "' in r for r in rules)
    comments = [r.rsplit('comment "', 1)[1].rstrip('"') for r in rules]
    assert len(set(comments)) == len(comments)
    assert {c.split()[0] for c in comments} == set(plan.CLASS_NAMES)
    assert "ip daddr 198.18.66.0/24 tcp flags & (syn|ack|ecn|cwr) == (syn|ecn|cwr) counter drop" \
        in text
    assert "ip6 saddr 2001:db8:100:3000::/64 ip6 ecn set not-ect counter" in text
    assert "reset tcp option fastopen reset tcp option 254" in text
    assert "ip frag-off & 0x8000 != 0 counter drop" in text
    assert f"tcp option maxseg size set {plan.REWRITTEN_MSS}" in text
    assert text.startswith(f"table inet {impair.TABLE}\ndelete table inet {impair.TABLE}\n")


def _ask(qname, rdtype):
    wire = dns.message.make_query(qname, rdtype).to_wire()
    return dns.message.from_wire(dnsd.respond(wire, ("test", 0)))


def test_dns_answers():
    resp = _ask("t5.udp-zero-drop.lab.test", "AAAA")
    assert resp.rcode() == dns.rcode.NOERROR
    assert [r.address for r in resp.answer[0]] == ["2001:db8:100:9000::5"]
    both = _ask("t5.clean.lab.test", "ANY")
    assert {rr.rdtype for rr in both.answer} == {dns.rdatatype.A, dns.rdatatype.AAAA}
    assert _ask("nope.lab.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert _ask("example.org", "A").rcode() == dns.rcode.REFUSED
    nodata = _ask("t5.clean.lab.test", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority


def test_dns_malformed_queries_get_formerr_or_silence():
    assert dnsd.respond(b"\x01", ("test", 0)) is None
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff"
    reply = dnsd.respond(garbage, ("test", 0))
    qid, flags = struct.unpack("!HH", reply[:4])
    assert qid == 0x1234 and flags & 0x8000 and flags & 0xF == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("lab.test", "A")).to_wire()
    assert dnsd.respond(response, ("test", 0)) is None


def test_dns_cache_answers_a_repeated_query_with_its_own_id(monkeypatch):
    cache = {}
    first = dns.message.make_query("t5.clean.lab.test", "A", id=1)
    again = dns.message.make_query("t5.clean.lab.test", "A", id=2)
    again.flags = first.flags
    reply1 = dnsd.respond_cached(first.to_wire(), ("test", 0), cache)
    assert reply1 == dnsd.respond(first.to_wire(), ("test", 0)) and len(cache) == 1
    monkeypatch.setattr(dnsd, "respond", lambda *a: pytest.fail("parsed again"))
    reply2 = dnsd.respond_cached(again.to_wire(), ("test", 0), cache)
    assert reply2[:2] == b"\x00\x02" and reply2[2:] == reply1[2:]
    assert dns.message.from_wire(reply2).id == 2 and len(cache) == 1
    monkeypatch.undo()
    for host in range(1, dnsd.CACHE_MAX + 10):                     # bounded
        dnsd.respond_cached(dns.message.make_query(f"t{host % 254 + 1}.c{host}.lab.test", "A")
                            .to_wire(), ("test", 0), cache)
    assert len(cache) <= dnsd.CACHE_MAX


def test_http_replies():
    ok = httpd.handle_request(b"GET / HTTP/1.1\r\nHost: x", "198.18.69.3")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in ok
    assert b"198.18.69.3 class tfo-strip" in ok
    head = httpd.handle_request(b"HEAD / HTTP/1.1\r\nHost: x", "198.18.69.3")
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: " in head
    assert httpd.handle_request(b"POST / HTTP/1.1", "::1").startswith(b"HTTP/1.1 405")
    assert httpd.handle_request(b"hello", "::1").startswith(b"HTTP/1.1 400")


def test_crafted_packets_parse_back():
    opts = craft.options(mss=1400, tfo_cookie=b"", tfo_exp_cookie=b"")
    pkt = craft.ip4("198.18.0.2", "198.18.64.1", craft.PROTO_TCP,
                    craft.tcp(40000, 80, craft.SYN, options=opts, src="198.18.0.2",
                              dst="198.18.64.1"),
                    flags=craft.IP4_RF | craft.IP4_DF, tos=0xB9)
    assert craft.checksum(pkt[:20]) == 0
    parsed = packets.parse(pkt, packets.DLT_RAW)
    assert parsed["evil"] and parsed["dscp"] == 46 and parsed["ecn"] == 1
    assert parsed["flags"] == packets.SYN and packets.mss(parsed) == 1400
    assert packets.option(parsed, packets.OPT_TFO) == b""
    assert packets.option(parsed, packets.OPT_EXP) == craft.TFO_EXP_MAGIC
    eth = b"\x00" * 12 + b"\x81\x00\x00\x01\x08\x00" + pkt
    assert packets.parse(eth, packets.DLT_EN10MB)["dport"] == 80
    assert packets.parse(b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28) is None


def test_tcp_option_parser_stops_on_bad_lengths():
    assert packets.tcp_options(b"\x01\x02\x04\x05\xb4\x00") == [(2, b"\x05\xb4")]
    assert packets.tcp_options(b"\x02\x00\x05\xb4") == []
    assert packets.tcp_options(b"\x22\x09\x00") == []


def test_ipv6_targets_never_share_a_tfo_cookie_cache_bucket():
    """Linux hashes IPv6 addresses for its TFO cookie cache by XOR-ing the four 32-bit words
    and evicts from buckets with more than five entries: every lab target must hash apart."""
    import ipaddress

    def word_xor(address):
        value = int(ipaddress.ip_address(address))
        return (value >> 96) ^ (value >> 64) ^ (value >> 32) ^ value & 0xFFFFFFFF

    hashes = [word_xor(plan.target_address(cls, host, 6))
              for cls in plan.CLASS_NAMES for host in plan.HOSTS]
    assert len(set(h & 0xFFFFFFFF for h in hashes)) == len(hashes)
