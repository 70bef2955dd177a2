"""The tracer of --locate (pathspider.client.trace): for real on the lab, both IP versions.

Hop counts come from the lab (``status()["hops"]`` and per-class ``impairment_hop``); a lab
without them has one router (its middlebox, hop 1) and the server at TTL 2. Everything runs
in the lab's client namespace (``lab.call_in_client``: the tracer's threads are started
there, so its sockets live there)."""
import socket
import threading
import time

import pytest

from pathspider.client import hops, packets, trace
from pathspider.lab import plan
from pathspider.observer.dissector import parse_ip

V4, V6 = socket.AF_INET, socket.AF_INET6
FAMILIES = [pytest.param(V4, id="ipv4"), pytest.param(V6, id="ipv6")]
QUERY = packets.dns_query("t1.clean.lab.test")
ECN_SETUP = 0xC2
ECT0 = 0x02


def target(cls, host, family):
    return str(plan.target_address(cls, host, 4 if family == V4 else 6))


def lab_path(lab):
    """(routers: list of {hop, address4, address6, silent}, class -> impairment hop)."""
    status = lab.status()
    routers = status.get("hops") or [{"hop": 1, "address4": "198.18.0.1",
                                      "address6": "2001:db8:0:1::1", "silent": False}]
    classes = status.get("classes") or {}
    where = {name: (info or {}).get("impairment_hop", 1) for name, info in classes.items()}
    return routers, where


def impairment_hop(lab, cls):
    return lab_path(lab)[1].get(cls, 1)


def run_traces(lab, jobs, **tracer_args):
    """Trace ``jobs`` [(family, dst, probes)] in the client namespace, all submitted at
    once; returns the results in job order."""
    def body():
        with trace.Tracer(**tracer_args) as tracer:
            results = [None] * len(jobs)
            for i, (family, dst, probes) in enumerate(jobs):
                tracer.submit(family, dst, probes,
                              lambda res, i=i: results.__setitem__(i, res))
            assert tracer.drain(60)
            return results, dict(tracer.stats)
    return lab.call_in_client(body)


def comparable(fields):
    return {k: v for k, v in fields.items() if k not in ("proto", "sport", "dport")}


# ---- no lab: encoding and limits ------------------------------------------------------------

def test_the_ttl_travels_in_seq_ident_flow_label_and_dns_id():
    src4, dst4 = socket.inet_pton(V4, "198.18.0.2"), socket.inet_pton(V4, "198.18.64.1")
    src6 = socket.inet_pton(V6, "2001:db8:0:1::2")
    dst6 = socket.inet_pton(V6, "2001:db8:100::1")
    syn = packets.TCPSyn(80, flags=ECN_SETUP, tos=ECT0)
    ip = parse_ip(pkt := trace.build_probe(syn, V4, src4, dst4, 4000, 7, 0xAB), 0, len(pkt))
    assert ip.ttl == 7 and ip.ident == 0xAB07 and ip.ecn == ECT0
    assert ip.tcp.seq_nbr == (trace.MAGIC << 16) | 0xAB07 and ip.tcp.flags == ECN_SETUP
    ip = parse_ip(pkt := trace.build_probe(syn, V6, src6, dst6, 4000, 9, 0xAB), 0, len(pkt))
    assert ip.hop_limit == 9 and ip.flow_label == 0 and ip.tcp.seq_nbr & 0xFFFF == 0xAB09
    dns = packets.UDPDatagram(53, QUERY, zero_checksum=True)
    ip = parse_ip(pkt := trace.build_probe(dns, V6, src6, dst6, 4000, 3, 0x12), 0, len(pkt))
    assert ip.flow_label == 0x1203 and ip.udp.checksum == 0
    assert bytes(ip.udp.payload)[:2] == b"\x12\x03" and bytes(ip.udp.payload)[2:] == QUERY[2:]
    ip = parse_ip(pkt := trace.build_probe(dns, V4, src4, dst4, 4000, 3, 0x12), 0, len(pkt))
    assert ip.ident == 0x1203
    # the probe itself is not changed, and its own packets keep a random sequence number
    assert packets.TCPSyn(80).seq is None and packets.TCPSyn(80).flags == 0x02


def test_limits_are_refused():
    with pytest.raises(ValueError):
        trace.Tracer(max_ttl=65)
    with trace.Tracer() as tracer:
        too_many = {str(i): packets.TCPSyn(80) for i in range(trace.MAX_PROBES + 1)}
        with pytest.raises(ValueError):
            tracer.submit(V4, "198.18.64.1", too_many, print)
        with pytest.raises(ValueError):
            tracer.submit(V6, "198.18.64.1", {"B": packets.TCPSyn(80)}, print)
        with pytest.raises(ValueError):
            tracer.submit(V4, "198.18.64.1", {}, print)
    with pytest.raises(RuntimeError):
        tracer.submit(V4, "198.18.64.1", {"B": packets.TCPSyn(80)}, print)


# ---- on the lab -------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_clean_path_tcp_and_dns(lab, family):
    routers, _ = lab_path(lab)
    server_ttl = len(routers) + 1
    key = "address4" if family == V4 else "address6"
    dst = target("clean", 1, family)
    jobs = [(family, dst, {"A": packets.TCPSyn(80)}),
            (family, dst, {"A": packets.UDPDatagram(53, QUERY)})]
    (tcp, udp), stats = run_traces(lab, jobs, timeout=1.0)
    for res in (tcp, udp):
        assert not res.aborted and res.errors == []
        replies, sent = res.replies["A"], comparable(res.probes["A"])
        first = replies[1]
        assert first.kind == "time-exceeded"
        assert first.address == ("198.18.0.1" if family == V4 else "2001:db8:0:1::1")
        assert first.fields == sent and first.fields["full"] is True
        assert first.quote_len == sent["quote_len"]
        for router in routers:
            hop = router["hop"]
            if router["silent"]:
                assert hop not in replies
            else:
                assert replies[hop].address == router[key]
                assert replies[hop].fields == dict(sent, **replies[hop].sent)
        assert res.destination["A"]["reached"] is True
        assert res.destination["A"]["ttl"] == server_ttl
        assert replies[server_ttl].kind == "destination" and replies[server_ttl].address == dst
    assert tcp.replies["A"][server_ttl].fields["tcp_flags"] == 0x12     # the SYN-ACK
    assert tcp.rounds == 1 and tcp.packets_sent == 8
    assert stats["traced"] == 2


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_ecn_bleach_is_located(lab, family):
    hop = impairment_hop(lab, "ecn-bleach")
    probes = {"A": packets.TCPSyn(80), "B": packets.TCPSyn(80, tos=ECT0)}
    (res,), _ = run_traces(lab, [(family, target("ecn-bleach", 2, family), probes)])
    loc = hops.analyse(res, ("ecn",))
    assert loc["changed_at"] == {"ecn": hop}, loc
    assert loc["dropped_at"] is None and loc["destination"]["b_reached"]
    assert res.probes["B"]["ecn"] == ECT0


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_ecn_syn_drop_is_located(lab, family):
    hop = impairment_hop(lab, "ecn-syn-drop")
    probes = {"A": packets.TCPSyn(80), "B": packets.TCPSyn(80, flags=ECN_SETUP)}
    (res,), _ = run_traces(lab, [(family, target("ecn-syn-drop", 3, family), probes)])
    loc = hops.analyse(res, ("tcp_flags",))
    assert loc["dropped_at"] == hop, loc
    assert loc["first_silent"] == hop + 1 and loc["last_forwarded"] == (hop - 1 or None)
    assert loc["destination"] == {"a": len(lab_path(lab)[0]) + 1, "b": None,
                                  "a_reached": True, "b_reached": False}


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_udp_zero_checksum_drop_is_located(lab, family):
    hop = impairment_hop(lab, "udp-zero-drop")
    probes = {"A": packets.UDPDatagram(53, QUERY),
              "B": packets.UDPDatagram(53, QUERY, zero_checksum=True)}
    (res,), _ = run_traces(lab, [(family, target("udp-zero-drop", 4, family), probes)])
    loc = hops.analyse(res, ("udp_checksum",))
    assert loc["dropped_at"] == hop, loc
    assert loc["changed_at"] == {"udp_checksum": None} and res.probes["B"]["udp_checksum"] == 0
    assert res.destination["A"]["reached"] and not res.destination["B"]["reached"]


@pytest.mark.root
def test_200_traces_at_concurrency_50_all_call_back_without_cross_talk(lab):
    classes = ("clean", "ecn-bleach", "ecn-syn-drop", "blackhole")
    jobs = []
    for i in range(200):
        family = V4 if i % 2 else V6
        dst = target(classes[i % 4], 1 + i // 8, family)
        jobs.append((family, dst, {"A": packets.TCPSyn(80),
                                   "B": packets.TCPSyn(80, flags=ECN_SETUP, tos=ECT0)}))
    started = time.monotonic()
    results, stats = run_traces(lab, jobs, concurrency=50, timeout=1.0)
    elapsed = time.monotonic() - started
    assert all(res is not None and not res.aborted for res in results)
    assert stats["traced"] == 200 and stats.get("aborted", 0) == 0
    for (family, dst, _), res in zip(jobs, results):
        assert res.dst == dst and res.family == family
        for name, by_ttl in res.replies.items():
            for ttl, reply in by_ttl.items():
                assert reply.ttl == ttl
                if reply.kind == "destination":
                    assert reply.address == dst
        if plan.class_of(dst) == "clean":
            assert res.destination["A"]["reached"] and res.destination["B"]["reached"]
        if plan.class_of(dst) == "blackhole":
            assert not res.destination["A"]["reached"]
    assert elapsed < 30


@pytest.mark.root
def test_blackhole_ends_within_the_timeout(lab):
    probes = {"A": packets.TCPSyn(80)}
    (res,), _ = run_traces(lab, [(V4, target("blackhole", 5, V4), probes)], timeout=0.5)
    assert not res.destination["A"]["reached"] and res.rounds == 1
    assert res.duration < 0.5 + 0.5


class SwallowingSender:
    """A sender whose packets go nowhere: nothing ever answers (the tracer's timeout is
    what ends the round)."""

    def __init__(self):
        self.count = 0

    def send(self, family, packet, dst):
        self.count += 1

    def close(self):
        pass


@pytest.mark.root
def test_a_target_that_never_answers_ends_at_the_timeout(lab):
    def body():
        sender = SwallowingSender()
        with trace.Tracer(timeout=0.4, sender=sender) as tracer:
            res = tracer.trace(V4, "198.18.64.1", {"B": packets.TCPSyn(80)}, timeout=10)
        return res, sender.count
    res, count = lab.call_in_client(body)
    assert res.rounds == 1 and count == res.packets_sent == 8
    assert 0.4 <= res.duration < 0.9
    assert res.replies["B"] == {} and not res.aborted


@pytest.mark.root
def test_close_calls_back_every_pending_trace_as_aborted(lab):
    def body():
        tracer = trace.Tracer(timeout=5.0, concurrency=2, sender=SwallowingSender())
        results, lock = [], threading.Lock()
        for i in range(30):
            tracer.submit(V4, target("clean", 1 + i, V4), {"B": packets.TCPSyn(80)},
                          lambda res: (lock.acquire(), results.append(res), lock.release()))
        started = time.monotonic()
        tracer.close()
        return results, time.monotonic() - started, tracer.drain(0)
    results, seconds, drained = lab.call_in_client(body)
    assert len(results) == 30 and all(res.aborted for res in results)
    assert drained and seconds < 5


@pytest.mark.root
def test_a_failing_callback_does_not_stop_the_tracer(lab):
    def body():
        done = []
        with trace.Tracer(timeout=0.5) as tracer:
            tracer.submit(V4, target("clean", 9, V4), {"A": packets.TCPSyn(80)},
                          lambda res: 1 / 0)
            tracer.submit(V4, target("clean", 10, V4), {"A": packets.TCPSyn(80)},
                          done.append)
            assert tracer.drain(10)
        return done
    done = lab.call_in_client(body)
    assert len(done) == 1 and done[0].destination["A"]["reached"]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_hostile_icmp_and_tcp_packets_are_counted_never_raised(family):
    """Time-exceeded messages quoting a probe, with random bytes changed or cut short (what
    a hostile or broken router may send): each is dropped and counted, none raises in the
    receiver's handlers."""
    import random
    tracer = trace.Tracer()
    if family == socket.AF_INET:
        src, dst, router = (socket.inet_pton(family, a) for a in
                            ("198.18.0.2", "198.18.66.1", "198.18.0.1"))
        probe = packets.build(packets.TCPSyn(80), src, dst, 40000)
        icmp = bytes([11, 0, 0, 0, 0, 0, 0, 0]) + probe
        message = packets.ip4_header(router, src, 1, len(icmp)) + icmp
    else:
        src, dst = (socket.inet_pton(family, a) for a in
                    ("2001:db8:0:1::2", "2001:db8:100:2000::1"))
        probe = packets.build(packets.UDPDatagram(53, bytes(20), zero_checksum=True),
                              src, dst, 40000)
        message = bytes([3, 0, 0, 0, 0, 0, 0, 0]) + probe    # raw ICMPv6: no IP header
    rnd = random.Random(family)
    count = 5000
    for _ in range(count):
        mutated = bytearray(message)
        for _ in range(rnd.randint(1, 6)):
            mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            mutated = mutated[:rnd.randrange(len(mutated))]
        tracer._on_icmp(family, bytes(mutated), "198.18.0.1" if family == socket.AF_INET
                        else "2001:db8:0:1::1")
        tracer._on_tcp(family, bytes(mutated), "198.18.66.1" if family == socket.AF_INET
                       else "2001:db8:100:2000::1")
    assert tracer.stats["unmatched"] == 2 * count
