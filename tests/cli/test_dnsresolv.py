"""Tests of the ``dnsresolv`` utility against a real (local, in-test) DNS server over UDP."""
import argparse
import logging
import os
import select
import socket
import threading
import time

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pathspider.cli import dnsresolv

ZONE = {
    "example.org.": {"A": ["198.18.70.1"], "AAAA": ["2001:db8:170::1"]},
    "www.example.org.": {"A": ["198.18.70.2"], "AAAA": ["2001:db8:170::2"]},
    "bare.example.": {"A": ["198.18.70.3"]},
    "www.wwwonly.example.": {"AAAA": ["2001:db8:170::4"]},
    "www.pre.example.": {"A": ["198.18.70.5", "198.18.70.6"]},
}
SILENT = "silent.example."


class TinyDNS:
    """A UDP DNS server on loopback answering from ZONE; never answers names under SILENT."""

    def __init__(self, zone, family=socket.AF_INET, host="127.0.0.1"):
        self.zone = zone
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            wire, peer = self.sock.recvfrom(4096)
            query = dns.message.from_wire(wire)
            self.queries += 1
            question = query.question[0]
            name = question.name.to_text().lower()
            if name.endswith(SILENT):
                continue
            response = dns.message.make_response(query)
            records = self.zone.get(name)
            if records is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                rdtype = dns.rdatatype.to_text(question.rdtype)
                if records.get(rdtype):
                    response.answer.append(dns.rrset.from_text_list(
                        question.name, 60, "IN", rdtype, records[rdtype]))
            self.sock.sendto(response.to_wire(), peer)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def dnsserver():
    server = TinyDNS(ZONE)
    yield server
    server.close()


def make_args(tmp_path, lines, server, *extra):
    """Parse a dnsresolv command line the way the CLI does, with input and output files."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-w", "--workers", type=int, default=4)
    parser.add_argument("--input", default="/dev/stdin")
    parser.add_argument("--output", default="/dev/stdout")
    sub = parser.add_subparsers()
    dnsresolv.register_args(sub)
    infile, outfile = tmp_path / "in.csv", tmp_path / "out.csv"
    infile.write_text("".join(line + "\n" for line in lines))
    argv = ["--input", str(infile), "--output", str(outfile), "dnsresolv",
            "--nameserver", f"127.0.0.1:{server.port}", "--rate", "0", *extra]
    return parser.parse_args(argv), outfile


def run_rows(tmp_path, lines, server, *extra):
    args, outfile = make_args(tmp_path, lines, server, *extra)
    assert args.func(args) == 0
    return [line.split(",") for line in outfile.read_text().splitlines()]


def test_never_resolves_name_as_given_a_and_aaaa(tmp_path, dnsserver):
    rows = run_rows(tmp_path, ["1,example.org", "2,bare.example"], dnsserver, "--www", "never")
    assert rows == [["198.18.70.1", "80", "example.org", "1"],
                    ["2001:db8:170::1", "80", "example.org", "1"],
                    ["198.18.70.3", "80", "bare.example", "2"]]


def test_preferred_uses_www_and_falls_back_to_bare_name(tmp_path, dnsserver):
    rows = run_rows(tmp_path, ["1,example.org", "2,bare.example"], dnsserver)
    assert rows == [["198.18.70.2", "80", "www.example.org", "1"],
                    ["2001:db8:170::2", "80", "www.example.org", "1"],
                    ["198.18.70.3", "80", "bare.example", "2"]]


def test_always_never_doubles_www(tmp_path, dnsserver):
    rows = run_rows(tmp_path, ["7,www.example.org", "8,wwwonly.example"], dnsserver,
                    "--www", "always", "--add-port", "8080")
    assert rows == [["198.18.70.2", "8080", "www.example.org", "7"],
                    ["2001:db8:170::2", "8080", "www.example.org", "7"],
                    ["2001:db8:170::4", "8080", "www.wwwonly.example", "8"]]


def test_both_resolves_both_names(tmp_path, dnsserver):
    rows = run_rows(tmp_path, ["3,example.org"], dnsserver, "--www", "both", "--family", "4")
    assert rows == [["198.18.70.1", "80", "example.org", "3"],
                    ["198.18.70.2", "80", "www.example.org", "3"]]


def test_no_port_and_all_addresses(tmp_path, dnsserver):
    rows = run_rows(tmp_path, ["4,pre.example"], dnsserver, "--no-port", "--all-addresses")
    assert sorted(rows) == [["198.18.70.5", "www.pre.example", "4"],
                            ["198.18.70.6", "www.pre.example", "4"]]


def test_unresolvable_and_bad_rows_are_reported_and_skipped(tmp_path, dnsserver, caplog):
    lines = ["1,example.org", "justonefield", "3,missing.example", "", "5,bare.example",
             "6,bad domain.example"]
    with caplog.at_level(logging.WARNING, logger="pathspider.cli.dnsresolv"):
        rows = run_rows(tmp_path, lines, dnsserver, "--www", "never")
    assert [r[2] for r in rows] == ["example.org", "example.org", "bare.example"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("line 2" in m and "rank,domain" in m for m in messages)
    assert any("line 3" in m and "missing.example" in m and "NXDOMAIN" in m for m in messages)
    assert any("line 6" in m for m in messages)
    assert not any("line 1:" in m or "line 5:" in m for m in messages)


def test_timeout_is_reported_and_others_still_resolve(tmp_path, dnsserver, caplog):
    lines = ["1,silent.example", "2,bare.example"]
    with caplog.at_level(logging.WARNING, logger="pathspider.cli.dnsresolv"):
        rows = run_rows(tmp_path, lines, dnsserver, "--www", "never", "--timeout", "0.3")
    assert rows == [["198.18.70.3", "80", "bare.example", "2"]]
    assert any("line 1" in r.getMessage() and "timeout" in r.getMessage()
               for r in caplog.records)


def test_many_names_in_parallel_lose_nothing_and_keep_order(tmp_path):
    zone = {f"n{i}.example.": {"A": [f"198.18.71.{i % 250 + 1}"]} for i in range(600)}
    server = TinyDNS(zone)
    try:
        lines = [f"{i},n{i}.example" for i in range(600)]
        rows = run_rows(tmp_path, lines, server, "--www", "never", "--family", "4",
                        "--parallel", "32")
    finally:
        server.close()
    assert [row[3] for row in rows] == [str(i) for i in range(600)]
    assert all(row[0] == f"198.18.71.{int(row[3]) % 250 + 1}" for row in rows)


def test_rate_limit_spaces_queries(tmp_path, dnsserver):
    lines = [f"{i},bare.example" for i in range(15)]
    args, outfile = make_args(tmp_path, lines, dnsserver, "--www", "never", "--family", "4",
                              "--parallel", "8")
    args.rate = 50.0
    started = time.monotonic()
    assert args.func(args) == 0
    elapsed = time.monotonic() - started
    # 15 queries at 50/s with a burst of at most 5 cannot finish in less than (15-5)/50 s.
    assert elapsed >= (15 - 5) / 50
    assert len(outfile.read_text().splitlines()) == 15


def test_ipv6_nameserver(tmp_path):
    server = TinyDNS(ZONE, socket.AF_INET6, "::1")
    try:
        args, outfile = make_args(tmp_path, ["1,bare.example"], server, "--www", "never")
        args.nameserver = [f"[::1]:{server.port}"]
        assert args.func(args) == 0
    finally:
        server.close()
    assert outfile.read_text() == "198.18.70.3,80,bare.example,1\n"


@pytest.mark.parametrize("text,expected", [
    ("198.18.0.53", ("198.18.0.53", 53)),
    ("198.18.0.53:5353", ("198.18.0.53", 5353)),
    ("2001:db8::53", ("2001:db8::53", 53)),
    ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
])
def test_parse_nameserver(text, expected):
    assert dnsresolv.parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["nonsense", "198.18.0.53:0", "[2001:db8::53]x"])
def test_parse_nameserver_rejects(text):
    with pytest.raises(ValueError):
        dnsresolv.parse_nameserver(text)


def test_bad_nameserver_is_an_error(tmp_path, dnsserver):
    args, _ = make_args(tmp_path, ["1,example.org"], dnsserver)
    args.nameserver = ["not-an-address"]
    assert args.func(args) == 2


@pytest.mark.root
def test_resolves_lab_names_through_the_lab_dns(lab, tmp_path):
    """Through the CLI in the lab client, against the lab's DNS server (v4 and v6 answers)."""
    import sys

    from pathspider.lab import names, plan
    rows = lab.targets(4, ["clean", "ecn-bleach"], "both")
    domains = sorted({row[2] for row in rows})
    infile = tmp_path / "names.csv"
    infile.write_text("".join(f"{i},{d}\n" for i, d in enumerate(domains, 1))
                      + "9,nonexistent.lab.test\n")
    results = {}
    for server in (str(plan.DNS_V4), f"[{plan.DNS_V6}]:53", None):
        outfile = tmp_path / "targets.csv"
        argv = [sys.executable, "-m", "pathspider.run", "--input", str(infile),
                "--output", str(outfile), "dnsresolv", "--www", "never", "--rate", "0"]
        if server:
            argv += ["--nameserver", server]
        proc = lab.exec_in_client(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "line 3: nonexistent.lab.test does not resolve" in proc.stderr
        results[server] = outfile.read_text()
    expected = sorted(f"{ip},80,{host},{domains.index(host) + 1}"
                      for ip, _, host, _ in rows)
    assert sorted(results[str(plan.DNS_V4)].splitlines()) == expected
    # the lab client's resolv.conf points at the lab DNS too; the answers do not depend on
    # which address of the server was asked
    assert len(set(results.values())) == 1
    assert names.hostname("clean", 1) in domains


def read_logged(lines, caplog, skip=0, count=0):
    """Entries read from ``lines`` and the warnings, as ``(lineno, domain)`` pairs."""
    with caplog.at_level(logging.WARNING, logger="pathspider.cli.dnsresolv"):
        entries = list(dnsresolv.read_entries(lines, skip, count))
    return [(e.lineno, e.rank, e.domain) for e in entries], [r.getMessage() for r in caplog.records]


def test_read_entries_line_rules(caplog):
    lines = [b"\xef\xbb\xbf1,Example.org\r\n",      # BOM and CRLF
             b'"2","bare.example."\n',              # quotes within the line
             b'3,"open.example\n',                  # a stray quote...
             b"4,www.example.org\n",                # ...does not swallow this line
             b"5," + b"a" * 70_000 + b"\n",         # over-long
             b"6,caf\xe9.example\n",                # not UTF-8
             b"7,B\xc3\xbccher.example\n",          # Unicode name: its A-label
             b"8,evil.example\rX-Injected: 1\n",    # CR inside the line
             b"9,evil example\n",
             b"\n", b"# comment\n",
             b"12,\x1b[2J,x\n",
             b"13\n",
             b"14,bare.example"]                    # no newline at the end
    entries, messages = read_logged(lines, caplog)
    assert entries == [(1, "1", "example.org"), (2, "2", "bare.example"),
                       (4, "4", "www.example.org"), (7, "7", "xn--bcher-kva.example"),
                       (14, "14", "bare.example")]
    bad = {int(m.split()[2].rstrip(":")): m for m in messages}
    assert sorted(bad) == [3, 5, 6, 8, 9, 12, 13]
    assert "malformed quoting" in bad[3] and "longer than 65536 bytes" in bad[5]
    assert "not valid UTF-8" in bad[6] and "carriage return" in bad[8]
    assert "not a domain name" in bad[9] and "rank,domain" in bad[13]
    assert all(m.endswith("; skipped") and len(m) < 200 for m in messages)


def test_read_entries_skip_and_count_still_work(caplog):
    lines = [f"{i},n{i}.example\n" for i in range(1, 11)]
    entries, _ = read_logged(lines, caplog, skip=3, count=4)
    assert [e[0] for e in entries] == [4, 5, 6, 7]


def test_read_entries_from_a_descriptor(tmp_path, caplog):
    path = tmp_path / "names.csv"
    path.write_bytes(b"1,example.org\n2,\xff\n3,bare.example\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        entries, messages = read_logged(fd, caplog)
    finally:
        os.close(fd)
    assert [e[2] for e in entries] == ["example.org", "bare.example"]
    assert len(messages) == 1 and "line 2" in messages[0]


def test_cli_reads_bytes_safely(tmp_path, dnsserver, caplog):
    """A BOM, a non-UTF-8 line and a stray quote in the input file: the rest still resolves."""
    args, outfile = make_args(tmp_path, [], dnsserver, "--www", "never", "--family", "4")
    with open(args.input, "wb") as infile:
        infile.write(b'\xef\xbb\xbf1,bare.example\n2,\xff\xfe\n3,"example.org\n4,Example.ORG\n')
    with caplog.at_level(logging.WARNING, logger="pathspider.cli.dnsresolv"):
        assert args.func(args) == 0
    assert outfile.read_text() == "198.18.70.3,80,bare.example,1\n198.18.70.1,80,example.org,4\n"
    messages = [r.getMessage() for r in caplog.records]
    assert any("line 2" in m and "UTF-8" in m for m in messages)
    assert any("line 3" in m and "quoting" in m for m in messages)
