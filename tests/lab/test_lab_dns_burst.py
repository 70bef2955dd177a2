"""The lab DNS server under a burst: 1,100 UDP queries from 100 concurrent clients, each
client sending all its queries at once, are every one answered, with no receive-buffer error
in the server namespace. A DNS server with a tiny receive buffer, started beside it, shows
that the check sees losses when there are some."""
import subprocess
import sys
import time

import pytest

from pathspider.lab import netns, plan, probe, procs

pytestmark = pytest.mark.root

BURST, CLIENTS = 1100, 100
#: The burst returns within its timeout after the last query; the whole test well within this.
LIMIT = 30.0
SERVERS = {
    "targets4": [plan.target_address("clean", host, 4) for host in plan.HOSTS],
    "targets6": [plan.target_address("clean", host, 6) for host in plan.HOSTS],
    "resolver": [plan.DNS_V4, plan.DNS_V6],
}


def rcvbuf_errors(lab):
    counters = lab.call_in_server(probe.udp_counters)
    return counters["RcvbufErrors"] + counters["Udp6RcvbufErrors"]


def burst(lab, servers, port=plan.DNS_PORT):
    """The burst's summary and the server namespace's new receive-buffer errors."""
    before = rcvbuf_errors(lab)
    start = time.monotonic()
    got = lab.call_in_client(probe.dns_burst, servers, BURST, CLIENTS, timeout=3.0, port=port)
    assert time.monotonic() - start < LIMIT
    return got, rcvbuf_errors(lab) - before


@pytest.mark.parametrize("to", sorted(SERVERS))
def test_a_burst_of_1100_queries_from_100_clients_is_answered_in_full(lab, to):
    got, errors = burst(lab, SERVERS[to])
    assert got["sent"] == BURST
    assert (got["answered"], got["lost"], got["wrong"], errors) == (BURST, 0, 0, 0), got


def test_the_burst_check_sees_a_server_that_drops(lab):
    port = 5353
    argv = [sys.executable, "-m", "pathspider.lab.dnsd", "--port", port, "--rcvbuf", 4096,
            "--no-cache"]
    proc = subprocess.Popen(netns.command(lab.server_netns, argv), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=procs.die_with_parent())
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                lab.call_in_client(probe.dns_query, plan.DNS_V4, "t1.clean.lab.test", "A",
                                   timeout=0.5, port=port)
                break
            except Exception:                   # not listening yet
                assert proc.poll() is None and time.monotonic() < deadline, "dnsd did not start"
        got, errors = burst(lab, SERVERS["targets4"], port=port)
        assert got["sent"] == BURST and got["wrong"] == 0
        assert got["lost"] > 0 and errors > 0, got
        assert got["answered"] + got["lost"] == BURST
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
