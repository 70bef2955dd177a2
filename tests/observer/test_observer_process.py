"""The Observer in its own process on a real interface: flows of real TCP connections, prompt
shutdown on a quiet interface, clear start-up errors, fork and spawn.

Each live test creates its own network namespace (``psobs-<pid>-<n>``), captures on that
namespace's loopback and removes the namespace afterwards, also when the test fails.
"""
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from pathspider.observer import (SHUTDOWN_SENTINEL, Observer, PacketSourceError, basic_count,
                                 basic_flow)
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup

_counter = itertools.count()

# Run inside the namespace: a TCP echo server on 127.0.0.1 and ::1 and a few clients; prints
# the clients' (address, source port) pairs as JSON.
TRAFFIC = r"""
import json, socket, sys, threading
PORT, N = int(sys.argv[1]), int(sys.argv[2])
servers = []
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, PORT)); s.listen(16); s.settimeout(10)
    servers.append(s)
def serve(s, n):
    for _ in range(n):
        c, _ = s.accept()
        c.settimeout(10)
        c.sendall(c.recv(100))
        c.close()
threads = [threading.Thread(target=serve, args=(s, N)) for s in servers]
for t in threads: t.start()
out = []
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    for _ in range(N):
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect((addr, PORT))
        out.append((addr, c.getsockname()[1]))
        c.sendall(b"hello pathspider")
        assert c.recv(100) == b"hello pathspider"
        c.close()
for t in threads: t.join(10)
print(json.dumps(out))
"""


@pytest.fixture
def netns():
    """A fresh network namespace with loopback up; removed afterwards."""
    name = "psobs-%d-%d" % (os.getpid(), next(_counter))
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def observer_child(ns, observer, flowqueue, irqueue, status):
    """Observer process body: join the namespace, then the engine's calls in order."""
    from pyroute2 import netns as pr_netns
    pr_netns.setns(ns, flags=0)
    try:
        observer.start_capture()
    except Exception as err:
        status.put(("error", str(err)))
        return
    status.put(("ready", None))
    observer.run_flow_batches(flowqueue, irqueue)     # what the engine calls
    status.put(("stats", observer.stats()))


class Child:
    """An observer child process in namespace ``ns`` with the engine's queues."""

    def __init__(self, ns, observer, method="fork"):
        ctx = multiprocessing.get_context(method)
        self.flowqueue = ctx.Queue(1000)
        self.irqueue = ctx.Queue()
        self.status = ctx.Queue()
        self.proc = ctx.Process(target=observer_child,
                                args=(ns, observer, self.flowqueue, self.irqueue, self.status),
                                daemon=True)
        self.proc.start()

    def wait_ready(self):
        kind, payload = self.status.get(timeout=30)
        return kind, payload

    def stop(self):
        """Request shutdown; return (flows, seconds until the sentinel, stats)."""
        t = time.monotonic()
        self.irqueue.put(True)
        flows = []
        while True:
            item = self.flowqueue.get(timeout=10)
            if item == SHUTDOWN_SENTINEL:
                break
            flows.extend(item if isinstance(item, list) else [item])
        took = time.monotonic() - t
        kind, stats = self.status.get(timeout=10)
        assert kind == "stats"
        self.proc.join(10)
        return flows, took, stats

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def tcp_observer(uri):
    return Observer(uri, new_flow_chain=[basic_flow, tcp_setup], ip4_chain=[basic_count],
                    ip6_chain=[basic_count], tcp_chain=[tcp_handshake, tcp_complete])


@pytest.mark.root
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_live_capture_of_real_tcp_connections(netns, method):
    child = Child(netns, tcp_observer("int:lo"), method)
    try:
        assert child.wait_ready() == ("ready", None)
        port, n = 8080, 3
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", TRAFFIC,
                              str(port), str(n)], check=True, capture_output=True, text=True,
                             timeout=60)
        clients = [tuple(c) for c in json.loads(out.stdout)]
        flows, took, stats = child.stop()
    finally:
        child.kill()
    assert len(clients) == 2 * n
    by_client = {(f["sip"], f["sp"]): f for f in flows if f["dp"] == port}
    assert sorted(by_client) == sorted(clients)
    for flow in by_client.values():
        assert flow["proto"] == 6 and flow["dip"] in ("127.0.0.1", "::1")
        assert flow["tcp_connected"] is True
        assert flow["fwd_syn_flags"] & 0x02 and flow["rev_syn_flags"] & 0x12 == 0x12
        assert flow["fwd_fin"] and flow["rev_fin"]        # the last FINs were drained
        assert flow["pkt_fwd"] >= 4 and flow["pkt_rev"] >= 3
        assert flow["oct_fwd"] > 0 and flow["first"] <= flow["last"]
        assert not [k for k in flow if k.startswith("_")]
    assert stats["packets"] >= sum(f["pkt_fwd"] + f["pkt_rev"] for f in by_client.values())
    assert stats["dropped"] == 0 and stats["flows"] >= 2 * n
    assert took < 5


@pytest.mark.root
def test_shutdown_is_prompt_on_a_quiet_interface(netns):
    child = Child(netns, tcp_observer("int:lo"))
    try:
        assert child.wait_ready() == ("ready", None)
        flows, took, stats = child.stop()
    finally:
        child.kill()
    assert flows == [] and stats["packets"] == 0
    assert took < 1.0, "shutdown took %.2f s on a quiet interface" % took


@pytest.mark.root
def test_start_capture_failure_is_one_clear_error(netns):
    child = Child(netns, tcp_observer("int:psobs-missing0"))
    try:
        kind, message = child.wait_ready()
    finally:
        child.kill()
    assert kind == "error"
    assert "psobs-missing0" in message and "no such device" in message


@pytest.mark.root
def test_engine_runner_reports_a_failing_observer():
    """The engine's ObserverRunner (lead's module) surfaces start_capture's message."""
    runner_mod = pytest.importorskip("pathspider.engine.handoff")
    runner = runner_mod.ObserverRunner(tcp_observer("int:psobs-missing1"),
                                       deliver=lambda item: None, on_failure=lambda err: None)
    with pytest.raises(runner_mod.ObserverError, match="psobs-missing1.*no such device"):
        runner.start(timeout=30)


def test_start_capture_in_process_raises_packet_source_error():
    with pytest.raises(PacketSourceError):
        tcp_observer("pcap:/nonexistent/psobs.pcap").start_capture()


@pytest.mark.root
def test_live_timers_follow_the_wall_clock_on_a_quiet_interface(netns):
    """Completed flows come out after expiry_timeout even if no packet follows them."""
    obs = Observer("int:lo", new_flow_chain=[basic_flow, tcp_setup], ip4_chain=[basic_count],
                   ip6_chain=[basic_count], tcp_chain=[tcp_handshake, tcp_complete],
                   idle_timeout=30, expiry_timeout=1)
    child = Child(netns, obs)
    try:
        assert child.wait_ready() == ("ready", None)
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", TRAFFIC, "8081",
                        "1"], check=True, capture_output=True, timeout=60)
        t = time.monotonic()
        early = child.flowqueue.get(timeout=10)      # before any shutdown request
        waited = time.monotonic() - t
        flows, took, stats = child.stop()
    finally:
        child.kill()
    assert isinstance(early, list) and early and all(f["dp"] == 8081 for f in early)
    assert all(f["fwd_fin"] and f["rev_fin"] for f in early)
    assert waited < 5
    assert len(early) + len([f for f in flows if f["dp"] == 8081]) == 2
