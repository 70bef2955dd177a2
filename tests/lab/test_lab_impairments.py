"""Each impairment proven with plain sockets and captures, IPv4 and IPv6, independent of any
pathspider plugin. Uses the session lab (``lab`` fixture); sysctls a test flips in the client
namespace are restored (``lab_client_state`` checks it)."""
import contextlib
import errno
import select
import socket
import time

import dns.message
import pytest

from pathspider.lab import craft, netns, plan, probe
from pathspider.lab.capture import Capture
from pathspider.lab.packets import ACK, CWR, ECE, OPT_EXP, OPT_TFO, SYN, mss, option

pytestmark = pytest.mark.root

FAMILIES = [4, 6]
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
CLIENT = {4: str(plan.CLIENT_V4), 6: str(plan.CLIENT_V6)}
IP_FREEBIND, IPV6_FREEBIND, SO_NO_CHECK, UDP_NO_CHECK6_TX = 15, 78, 11, 101
# Each test uses its own host numbers, so tests never share a target.
HOST = {"ecn": 10, "mark": 20, "tfo": 30, "tfo_kernel": 31, "unreach": 40, "blackhole": 50,
        "evil": 60, "udpzero": 70, "mss": 80, "http": 90, "netem": 100}


def target(cls, family, host):
    return str(plan.target_address(cls, host, family))


def try_connect(dst, timeout, port=80):
    """Connect (and close): "ok", "timeout" or the errno name."""
    with socket.socket(AF[6 if ":" in dst else 4], socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((dst, port))
            return "ok"
        except socket.timeout:
            return "timeout"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc))


@contextlib.contextmanager
def client_sysctls(lab, values):
    """Set sysctls in the client namespace for the block; put the old values back after."""
    old = {k: netns.sysctl_get(lab.client_netns, k) for k in values}
    try:
        for key, value in values.items():
            netns.sysctl_set(lab.client_netns, key, value)
        yield
    finally:
        for key, value in old.items():
            netns.sysctl_set(lab.client_netns, key, value)


def counter(lab, cls, family, direction="to"):
    fam = "ip" if family == 4 else "ip6"
    return next(c["packets"] for c in lab.status()["counters"]
                if (c["class"], c["family"], c["direction"]) == (cls, fam, direction))


# --- ECN setup SYNs ------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_ecn_setup_syn_is_dropped_while_plain_syn_connects(lab_client_state, family):
    lab = lab_client_state
    dst = target("ecn-syn-drop", family, HOST["ecn"])
    before = counter(lab, "ecn-syn-drop", family)
    with client_sysctls(lab, {"net.ipv4.tcp_ecn": 1, "net.ipv4.tcp_ecn_fallback": 0}):
        with Capture(lab.client_netns, f"tcp and host {dst}") as cap:
            with_ecn = lab.call_in_client(try_connect, dst, 1.3)
        clean_with_ecn = lab.call_in_client(
            try_connect, target("clean", family, HOST["ecn"]), 2.0)
    plain = lab.call_in_client(try_connect, dst, 2.0)  # tcp_ecn back to 2: no ECN asked

    assert with_ecn == "timeout"
    assert clean_with_ecn == "ok" and plain == "ok"
    syns = [p for p in cap.packets if p["dst"] == dst and p["flags"] & SYN]
    assert syns and all(p["flags"] & (ECE | CWR) == ECE | CWR for p in syns)
    assert not [p for p in cap.packets if p["src"] == dst]
    assert counter(lab, "ecn-syn-drop", family) >= before + len(syns)


# --- ECN and DSCP bleaching, both directions -----------------------------------------------

def send_marked(family, dst, tclass, src=None, port=9999):
    """One UDP datagram with the given TOS / traffic class (optionally from ``src``)."""
    with socket.socket(AF[family], socket.SOCK_DGRAM) as sock:
        if family == 4:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tclass)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tclass)
        if src is not None:
            level, opt = ((socket.IPPROTO_IP, IP_FREEBIND) if family == 4
                          else (socket.IPPROTO_IPV6, IPV6_FREEBIND))
            sock.setsockopt(level, opt, 1)  # targets are AnyIP routes, not addresses
            sock.bind((src, port))
        sock.sendto(b"pathspider lab mark", (dst, port))


SENT_TCLASS = (46 << 2) | 0b10  # DSCP EF with ECT(0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("direction", ["to", "from"])
@pytest.mark.parametrize("cls, arrives", [
    ("clean", SENT_TCLASS),
    ("ecn-bleach", 46 << 2),      # ECN field cleared, DSCP kept
    ("dscp-bleach", 0b10),        # DSCP cleared, ECN kept
])
def test_marks_arrive_bleached_or_intact(lab, family, direction, cls, arrives):
    tgt = target(cls, family, HOST["mark"])
    if direction == "to":  # client -> target, seen arriving in the server namespace
        with Capture(lab.server_netns, f"udp and dst host {tgt} and dst port 9999") as cap:
            lab.call_in_client(send_marked, family, tgt, SENT_TCLASS)
            got = cap.wait()
    else:  # target -> client, seen arriving in the client namespace
        with Capture(lab.client_netns, f"udp and src host {tgt} and dst port 9999") as cap:
            lab.call_in_server(send_marked, family, CLIENT[family], SENT_TCLASS, src=tgt)
            got = cap.wait()
    assert len(got) == 1
    assert (got[0]["dscp"], got[0]["ecn"]) == (arrives >> 2, arrives & 3)


# --- TCP Fast Open option stripping ----------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tfo_options_are_stripped_from_syns(lab, family):
    opts = craft.options(mss=1400, tfo_cookie=b"", tfo_exp_cookie=b"")
    seen = {}
    for i, cls in enumerate(("clean", "tfo-strip")):
        dst, sport = target(cls, family, HOST["tfo"]), 41000 + i
        with Capture(lab.server_netns, f"tcp and dst host {dst} and src port {sport}") as cap:
            lab.call_in_client(craft.send_tcp, CLIENT[family], dst, sport, 80, opts=opts)
            seen[cls] = cap.wait(lambda p: p["flags"] == SYN)
    assert len(seen["clean"]) == len(seen["tfo-strip"]) == 1
    clean, stripped = seen["clean"][0], seen["tfo-strip"][0]
    assert option(clean, OPT_TFO) == b"" and option(clean, OPT_EXP) == craft.TFO_EXP_MAGIC
    assert option(stripped, OPT_TFO) is None and option(stripped, OPT_EXP) is None
    assert mss(stripped) == 1400  # other options untouched


def tfo_get(dst):
    """An HTTP GET with data on the SYN (MSG_FASTOPEN); returns the response status line.

    Without a cookie yet, the kernel sends a cookie request and (non-blocking) reports
    EINPROGRESS; the request then goes once the handshake completes."""
    request = b"GET / HTTP/1.1\r\nHost: lab.test\r\n\r\n"
    with socket.socket(AF[6 if ":" in dst else 4], socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sent = sock.sendto(request, socket.MSG_FASTOPEN, (dst, 80))
        except BlockingIOError:
            select.select([], [sock], [], 3)
            sent = 0
        sock.sendall(request[sent:])
        return sock.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_server_gives_tfo_cookies_except_through_tfo_strip(lab, family):
    cookies = {}
    for cls in ("clean", "tfo-strip"):
        dst = target(cls, family, HOST["tfo_kernel"])
        # forget a cookie an earlier run cached (a lab kept up): the SYN must ask for one
        netns.run(lab.client_netns, ["ip", "tcp_metrics", "delete", dst], check=False)
        with Capture(lab.client_netns, f"tcp and src host {dst}") as cap:
            assert lab.call_in_client(tfo_get, dst) == b"HTTP/1.1 200 OK"
        synacks = [p for p in cap.packets if p["flags"] & (SYN | ACK) == SYN | ACK]
        assert len(synacks) == 1
        cookies[cls] = option(synacks[0], OPT_TFO)
    assert cookies["clean"] is not None and len(cookies["clean"]) >= 4
    assert cookies["tfo-strip"] is None


# --- unreachable and blackhole ---------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_unreachable_answers_with_icmp(lab, family):
    dst = target("unreachable", family, HOST["unreach"])
    want = (3, 1) if family == 4 else (1, 3)  # host / address unreachable
    proto = "icmp" if family == 4 else "icmp6"
    with Capture(lab.client_netns, f"{proto} or (tcp and dst host {dst})") as cap:
        start = time.monotonic()
        result = lab.call_in_client(try_connect, dst, 3.0)
        elapsed = time.monotonic() - start
        icmp = cap.wait(lambda p: (p.get("icmp_type"), p.get("icmp_code")) == want)
    first_syn = next(p for p in cap.packets if p.get("flags") == SYN)
    assert result == "EHOSTUNREACH"
    # The ICMP comes from the router the class is placed at.
    hop = lab.impairment_hops()["unreachable"]
    assert icmp and icmp[0]["src"] == str(plan.hop_address(hop, family))
    assert icmp[0]["time"] - first_syn["time"] < 0.1  # the very first SYN is answered
    # Linux aborts the handshake on the first ICMP for IPv4; for IPv6 it treats "address
    # unreachable" as a soft error and gives up at the first SYN retransmission (~1 s).
    assert elapsed < (0.5 if family == 4 else 2.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_blackhole_swallows_everything(lab, family):
    dst = target("blackhole", family, HOST["blackhole"])
    before = counter(lab, "blackhole", family)
    with Capture(lab.server_netns, f"host {dst}") as cap:
        result = lab.call_in_client(try_connect, dst, 1.0)
    assert result == "timeout"
    assert cap.packets == []
    assert counter(lab, "blackhole", family) > before


# --- IPv4 evil bit ---------------------------------------------------------------------------

def test_evil_bit_packets_are_dropped_plain_ones_pass(lab):
    results = {}
    for i, (cls, evil) in enumerate([("clean", True), ("evilbit-drop", True),
                                     ("evilbit-drop", False)]):
        dst, sport = target(cls, 4, HOST["evil"]), 42000 + i
        with Capture(lab.server_netns, f"tcp and host {dst} and port {sport}") as server:
            with Capture(lab.client_netns, f"tcp and src host {dst} and dst port {sport}") \
                    as client:
                lab.call_in_client(craft.send_tcp, CLIENT[4], dst, sport, 80, evil=evil)
                synack = client.wait(lambda p: p["flags"] & (SYN | ACK) == SYN | ACK,
                                     timeout=1.0)
        arrived = [p for p in server.packets if p["dst"] == dst and p["flags"] == SYN]
        results[(cls, evil)] = (bool(synack), [p["evil"] for p in arrived])
    assert results[("clean", True)] == (True, [True])       # the bit survives a clean path
    assert results[("evilbit-drop", True)] == (False, [])   # dropped before the server
    assert results[("evilbit-drop", False)] == (True, [False])


def test_ipv6_to_evilbit_class_is_untouched(lab):
    assert lab.call_in_client(try_connect, target("evilbit-drop", 6, HOST["evil"]), 2.0) == "ok"


# --- UDP zero checksum -----------------------------------------------------------------------

def dns_over_udp(dst, zero_checksum, timeout=1.0):
    """A DNS query to ``dst``:53, optionally with UDP checksum 0; "answer" or "timeout"."""
    family = 6 if ":" in dst else 4
    with socket.socket(AF[family], socket.SOCK_DGRAM) as sock:
        if zero_checksum and family == 4:
            sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        elif zero_checksum:
            sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_TX, 1)
        sock.settimeout(timeout)
        sock.sendto(dns.message.make_query("www.lab.test", "A").to_wire(), (dst, 53))
        try:
            dns.message.from_wire(sock.recv(4096))
            return "answer"
        except socket.timeout:
            return "timeout"


@pytest.mark.parametrize("family", FAMILIES)
def test_udp_zero_checksum_is_dropped_checksummed_udp_passes(lab, family):
    seen = {}
    for cls in ("clean", "udp-zero-drop"):
        dst = target(cls, family, HOST["udpzero"])
        for zero in (True, False):
            with Capture(lab.client_netns, f"udp and dst host {dst} and dst port 53") as sent, \
                    Capture(lab.server_netns, f"udp and dst host {dst} and dst port 53") as got:
                outcome = lab.call_in_client(dns_over_udp, dst, zero)
                sent.wait()
            seen[(cls, zero)] = (outcome, [p["checksum"] for p in sent.packets],
                                 [p["checksum"] for p in got.packets])
    for cls in ("clean", "udp-zero-drop"):
        outcome, on_wire, arrived = seen[(cls, False)]
        assert outcome == "answer" and on_wire[0] != 0 and arrived == on_wire
    outcome, on_wire, arrived = seen[("udp-zero-drop", True)]
    assert outcome == "timeout" and on_wire == [0] and arrived == []
    outcome, on_wire, arrived = seen[("clean", True)]
    assert on_wire == [0] and arrived == [0]
    # IPv4 allows checksum 0 ("none"), so the server answers; IPv6 forbids it: no answer.
    assert outcome == ("answer" if family == 4 else "timeout")


# --- MSS rewriting ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_mss_is_rewritten_in_syn_and_synack(lab, family):
    natural = 1460 if family == 4 else 1440
    seen = {}
    for cls in ("clean", "mss-rewrite"):
        dst = target(cls, family, HOST["mss"])
        with Capture(lab.client_netns, f"tcp and host {dst}") as at_client, \
                Capture(lab.server_netns, f"tcp and host {dst}") as at_server:
            assert lab.call_in_client(try_connect, dst, 2.0) == "ok"
            at_server.wait(lambda p: p["flags"] & (SYN | ACK) == SYN | ACK)
            at_client.wait(lambda p: p["flags"] & (SYN | ACK) == SYN | ACK)

        def syn_mss(pkts, flags):
            return [mss(p) for p in pkts if p["flags"] & (SYN | ACK) == flags]
        seen[cls] = (syn_mss(at_client.packets, SYN), syn_mss(at_server.packets, SYN),
                     syn_mss(at_server.packets, SYN | ACK), syn_mss(at_client.packets, SYN | ACK))
    assert seen["clean"] == ([natural],) * 4
    rewritten = plan.REWRITTEN_MSS
    # SYN leaves the client unchanged and reaches the server rewritten; SYN-ACK likewise back.
    assert seen["mss-rewrite"] == ([natural], [rewritten], [natural], [rewritten])


# --- servers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_http_answers_on_every_class_address_that_passes(lab, family):
    for cls in ("clean", "clean2", "ecn-bleach", "dscp-bleach", "tfo-strip", "evilbit-drop",
                "udp-zero-drop", "mss-rewrite", "ecn-syn-drop"):
        addr = target(cls, family, HOST["http"])
        status, body = lab.call_in_client(probe.http_get, addr)
        assert status == 200
        assert f"target {addr} class {cls}".encode() in body


def test_http_server_serves_a_burst_of_connections(lab):
    def burst(n=300):
        ok = 0
        for i in range(n):
            status, _ = probe.http_get(target("clean", 4 if i % 2 else 6, 1 + i % 200),
                                       timeout=2.0)
            ok += status == 200
        return ok
    assert lab.call_in_client(burst) == 300


@pytest.mark.parametrize("server", [plan.DNS_V4, plan.DNS_V6])
@pytest.mark.parametrize("tcp", [False, True])
def test_dns_answers_lab_names(lab, server, tcp):
    def ask(qname, rdtype):
        resp = probe.dns_query(server, qname, rdtype, tcp=tcp)
        return resp.rcode(), probe.dns_addresses(resp)
    assert lab.call_in_client(ask, "t17.ecn-syn-drop.lab.test", "A") == (0, ["198.18.66.17"])
    assert lab.call_in_client(ask, "t17.ecn-syn-drop.lab.test", "AAAA") == \
        (0, ["2001:db8:100:2000::17"])
    assert lab.call_in_client(ask, "nosuch.lab.test", "A") == (3, [])      # NXDOMAIN
    assert lab.call_in_client(ask, "example.com", "A") == (5, [])          # REFUSED


def test_client_resolver_points_at_the_lab_dns(lab):
    done = lab.exec_in_client(["getent", "ahostsv4", "t3.blackhole.lab.test"],
                              capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and done.stdout.split()[0] == "198.18.71.3"


def test_client_has_no_route_out_of_the_lab(lab):
    assert lab.call_in_client(try_connect, "192.0.2.1", 1.0) == "ENETUNREACH"
    assert lab.call_in_client(try_connect, "2001:4860::1", 1.0) == "ENETUNREACH"


def test_exec_in_client_runs_in_the_client_namespace(lab):
    done = lab.exec_in_client(["ip", "-o", "addr", "show", "dev", lab.client_interface],
                              capture_output=True, text=True)
    assert done.returncode == 0 and str(plan.CLIENT_V4) in done.stdout
    assert lab.exec_in_client(["sh", "-c", "exit 7"]).returncode == 7


# --- path delay and loss ---------------------------------------------------------------------

def connect_ms(dst):
    start = time.monotonic()
    assert try_connect(dst, 3.0) == "ok"
    return (time.monotonic() - start) * 1000


@pytest.mark.parametrize("family", FAMILIES)
def test_delay_and_loss_on_the_path(lab_netem, family):
    lab = lab_netem
    dst = target("clean", family, HOST["netem"])
    assert lab.call_in_client(connect_ms, dst) < 20
    lab.set_netem(delay_ms=40)
    assert lab.status()["path"]["delay_ms"] == 40
    assert lab.call_in_client(connect_ms, dst) >= 80  # one SYN/SYN-ACK round trip
    status, _ = lab.call_in_client(probe.http_get, dst)
    assert status == 200
    lab.set_netem(loss_pct=100)
    assert lab.call_in_client(try_connect, dst, 1.0) == "timeout"
    lab.clear_netem()
    assert lab.status()["path"] == {}
    assert lab.call_in_client(connect_ms, dst) < 20


def test_bad_netem_values_are_refused(lab_netem):
    from pathspider.lab import LabError
    with pytest.raises(LabError, match="loss_pct"):
        lab_netem.set_netem(loss_pct=120)
    assert lab_netem.status()["path"] == {}
