"""The plugin kit: the connectivity table, the summary column predicates, the Observer the
bundled plugins build, and the reactor base (on loopback, no root needed)."""
import argparse
import collections
import http.server
import socket
import threading
import types

import pytest

from pathspider.base import NO_FLOW, Conn, PluggableSpider, SynchronizedSpider
from pathspider.client import pluginkit
from pathspider.observer import basic_count, basic_flow
from pathspider.observer.dscp import dscp_extract, dscp_setup
from pathspider.observer.ecn import ecn_code, ecn_setup
from pathspider.observer.icmp import icmp6_unreachable, icmp_setup, icmp_unreachable
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup
from pathspider.observer.tfo import tfo_packet, tfo_setup
from pathspider.plugins import dscp, ecn, tfo

URI = "pcapfile:/dev/null"        # parsed, never opened: building an Observer opens nothing


# ---- the connectivity table ---------------------------------------------------------------------

@pytest.mark.parametrize("baseline_ok,experiment_ok,expected", [
    (True, True, "works"), (True, False, "broken"), (False, True, "transient"),
    (False, False, "offline"),
    (1, None, "broken"), ("", 1, "transient"),              # any truthy / falsy value
])
def test_connectivity_table(baseline_ok, experiment_ok, expected):
    assert pluginkit.connectivity(baseline_ok, experiment_ok) == expected


@pytest.mark.parametrize("record,expected", [
    (None, False), ({}, False), ({"connstate": False}, False), ({"connstate": True}, True),
])
def test_connected(record, expected):
    assert pluginkit.connected(record) is expected


def result(config, ok, **fields):
    return dict({"config": config, "observed": False, "connstate": ok,
                 "codepoint": 46 if config else 0}, **fields)


@pytest.mark.parametrize("plugin", [ecn, dscp, tfo])
@pytest.mark.parametrize("ok0,ok1,state", [
    (True, True, "works"), (True, False, "broken"), (False, True, "transient"),
    (False, False, "offline"),
])
def test_every_plugin_uses_the_same_table(plugin, ok0, ok1, state):
    conds = plugin.conditions(result(0, ok0), result(1, ok1))
    assert conds[0].endswith(f"connectivity.{state}"), conds


@pytest.mark.parametrize("plugin", [ecn, dscp, tfo])
def test_a_missing_experiment_counts_as_not_connected(plugin):
    assert plugin.conditions(result(0, True), None)[0].endswith("connectivity.broken")


@pytest.mark.parametrize("ok0,state", [(True, "broken"), (False, "offline")])
def test_ecn_fallback_counts_as_not_connected(ok0, state):
    experiment = result(1, True, ecn_fallback=True)
    assert ecn.connectivity(result(0, ok0), experiment) == f"ecn.connectivity.{state}"
    # the same pair without the fallback: the experiment connected
    experiment["ecn_fallback"] = False
    assert ecn.connectivity(result(0, ok0), experiment) == \
        f"ecn.connectivity.{'works' if ok0 else 'transient'}"


# ---- summary column predicates ------------------------------------------------------------------

def test_column_predicates():
    has = pluginkit.has_condition("a", "b")
    assert has(["x", "b"], None, None) and not has(["x"], None, None)
    ok0, ok1 = pluginkit.connection_ok(0), pluginkit.connection_ok(1)
    up, down = {"connstate": True}, {"connstate": False}
    assert ok0([], up, down) and not ok1([], up, down)
    assert ok1([], down, up) and not ok0([], down, up)
    assert not ok1([], up, None)
    icmp = pluginkit.icmp_unreachable_seen
    assert icmp([], None, {"icmp_unreachable": True}) and icmp([], {"icmp_unreachable": 1}, None)
    assert not icmp([], None, None) and not icmp([], {}, {"icmp_unreachable": False})


def test_connectivity_columns_and_evidence_columns():
    (works, is_works), (broken, is_broken) = pluginkit.connectivity_columns("works", "broken")
    assert (works, broken) == ("works", "broken")
    assert is_works(["ecn.connectivity.works"], None, None)
    assert is_works(["x", "dscp.46.connectivity.works"], None, None)
    assert not is_works(["ecn.connectivity.broken", "works"], None, None)
    assert is_broken(["tfo.connectivity.broken"], None, None)
    assert [h for h, _ in pluginkit.EVIDENCE_COLUMNS] == ["ICMP unreach", "unobserved"]
    unobserved = pluginkit.EVIDENCE_COLUMNS[1][1]
    assert unobserved(["pathspider.not_observed"], None, None) and not unobserved([], None, None)


@pytest.mark.parametrize("plugin", [ecn.ECN, dscp.DSCP, tfo.TFO])
def test_bundled_plugins_declare_their_summary(plugin):
    module = {"ECN": ecn, "DSCP": dscp, "TFO": tfo}[plugin.__name__]
    assert plugin.conditions is module.conditions
    assert plugin.summary_legend and len(plugin.summary_columns) >= 5
    assert all(isinstance(h, str) and callable(p) for h, p in plugin.summary_columns)
    # command_name is the sub-command the plugin registers
    parser = argparse.ArgumentParser()
    plugin.register_args(parser.add_subparsers())
    assert parser.parse_args([plugin.command_name]).spider is plugin


# ---- the Observer the plugins build -------------------------------------------------------------

def chains(plugin):
    observer = plugin.create_observer(types.SimpleNamespace(libtrace_uri=URI))
    return {name: list(chain) for name, chain in observer.chains.items() if chain}


ICMP = {"icmp4": [icmp_unreachable], "icmp6": [icmp6_unreachable]}


def test_ecn_observer_chains():
    assert chains(ecn.ECN) == dict(
        ICMP, new_flow=[basic_flow, tcp_setup, ecn_setup, ecn.ecn_syn_setup, icmp_setup],
        ip4=[basic_count, ecn_code], ip6=[basic_count, ecn_code],
        tcp=[ecn.ecn_syn_track, tcp_handshake, tcp_complete])


def test_dscp_observer_chains():
    assert chains(dscp.DSCP) == dict(
        ICMP, new_flow=[basic_flow, tcp_setup, dscp_setup, icmp_setup],
        ip4=[basic_count, dscp_extract], ip6=[basic_count, dscp_extract],
        tcp=[tcp_handshake, tcp_complete])


def test_tfo_observer_chains():
    assert chains(tfo.TFO) == dict(
        ICMP, new_flow=[basic_flow, tcp_setup, tfo_setup, icmp_setup],
        ip4=[basic_count], ip6=[basic_count],
        tcp=[tfo_packet, tcp_handshake, tcp_complete])


def test_tcp_observer_without_plugin_functions():
    observer = pluginkit.tcp_observer(URI)
    assert observer.lturi == URI
    assert observer.chains["new_flow"] == (basic_flow, tcp_setup, icmp_setup)
    assert observer.chains["tcp"] == (tcp_handshake, tcp_complete)
    assert observer.chains["udp"] == () and observer.chains["l4"] == ()


# ---- the reactor base ---------------------------------------------------------------------------

def plain_spider():
    return SynchronizedSpider(worker_count=1, libtrace_uri=URI, args=argparse.Namespace())


def test_reactor_base_names_cannot_clash():
    """No private helper a plugin could shadow; public names shared with the engine are only
    the hooks the base implements on purpose."""
    own = {name for name in vars(pluginkit.ReactorPlugin)
           if not (name.startswith("__") and name.endswith("__"))}
    assert [name for name in own if name.startswith("_")] == []
    engine = plain_spider()
    assert own & (set(dir(engine)) | set(vars(engine))) == {
        "connect", "post_connect", "merge", "post_connect_overlaps"}


def test_reactor_base_adds_one_instance_attribute():
    spider = KitPlugin(worker_count=3, libtrace_uri=URI, args=argparse.Namespace())
    assert set(vars(spider)) - set(vars(plain_spider())) == {"connect_mode"}
    # the engine's own timeout attribute, set from the arguments (defaults here)
    assert (spider.conn_timeout, spider.connect_mode) == (5.0, "http")
    assert (spider.worker_count, spider.libtrace_uri) == (3, URI)   # cooperative __init__


KitRecord = collections.namedtuple(
    "KitRecord", ["ip", "rport", "port", "sip", "config", "connstate", "spdr_state",
                  "http_status", "helper"])


def _shadow(self, *args, **kwargs):
    raise AssertionError("the reactor base called a helper the plugin defines for itself")


class KitPlugin(pluginkit.ReactorPlugin, SynchronizedSpider, PluggableSpider):
    """A plugin with private helpers of its own, named as a base (or the engine) might."""

    result_fields = ("config", "connstate", "spdr_state", "http_status", "helper")
    _request = _record = _wait = _start = _attempt = _merge = _state = _timeout = _shadow

    def _helper(self):
        return "the plugin's own"

    def _finish(self):
        _shadow(self)

    def build_record(self, job, config, attempt, state, http_status):
        return KitRecord(job[0], job[1], attempt.port, attempt.sip, config, state == Conn.OK,
                         state.value, http_status, self._helper())

    def amend_record(self, record):
        record["amended"] = record["observed"]


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /`` with an empty 200 and keeps the request line and headers."""

    def do_GET(self):
        self.server.requests.append((self.requestline, dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A loopback HTTP server on a free port (``.port``, ``.requests``)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.port, httpd.requests = httpd.server_address[1], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def run_one(spider, job, config):
    conn = spider.connect(job, None, config)
    record = spider.post_connect(job, conn, None, config)
    spider.merge(NO_FLOW, record)
    return record, spider.outqueue.get_nowait()


def test_plugin_with_its_own_helpers_connects_and_merges(server):
    spider = KitPlugin(1, URI, argparse.Namespace(timeout=2.0, connect="http"))
    job = ("127.0.0.1", server.port, "kit.example", 7)
    record, merged = run_one(spider, job, 1)
    assert record.helper == "the plugin's own" and record.port > 0
    assert (record.connstate, record.spdr_state, record.http_status) == (True, 0, 200)
    assert merged == {"sip": "127.0.0.1", "dip": "127.0.0.1", "sp": record.port,
                      "dp": server.port, "observed": False, "config": 1, "connstate": True,
                      "spdr_state": 0, "http_status": 200, "helper": "the plugin's own",
                      "amended": False}
    assert server.requests[0][0] == "GET / HTTP/1.1"
    assert server.requests[0][1]["Host"] == "kit.example"


def test_tcp_mode_sends_no_request(server):
    spider = KitPlugin(1, URI, argparse.Namespace(timeout=2.0, connect="tcp"))
    record, _ = run_one(spider, ("127.0.0.1", server.port, "", 1), 0)
    assert (record.connstate, record.http_status) == (True, None)
    assert server.requests == []


def test_refused_connection_still_builds_a_record():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]          # bound, not listening: refused
        spider = KitPlugin(1, URI, argparse.Namespace(timeout=2.0, connect="http"))
        record, merged = run_one(spider, ("127.0.0.1", port, "", 1), 0)
    assert (record.connstate, record.spdr_state, record.http_status) == (False, 1, None)
    assert merged["sp"] == record.port and merged["dp"] == port


# ---- merged records -------------------------------------------------------------------------------

MergeRes = collections.namedtuple("MergeRes", ["ip", "rport", "port", "sip", "a", "b", "c"])


@pytest.mark.parametrize("fields", [("a", "b", "c"), ["a", "b", "c"], ("c",), (), ["b"]])
def test_merged_record_copies_the_fields_in_order(fields):
    res = MergeRes("198.18.64.1", 80, 40000, "198.18.0.2", 1, "two", None)
    flow = {"dip": "198.18.64.1", "sp": 40000, "pkt_fwd": 5}
    record = pluginkit.merged_record(flow, res, fields)
    assert record is flow
    assert list(record) == ["dip", "sp", "pkt_fwd", "observed", *fields]
    assert all(record[name] == getattr(res, name) for name in fields)
    unobserved = pluginkit.merged_record(NO_FLOW, res, fields)
    assert list(unobserved) == ["sip", "dip", "sp", "dp", "observed", *fields]
    assert unobserved["observed"] is False and unobserved["sp"] == 40000


def test_merged_record_of_a_result_without_a_field_raises():
    res = MergeRes("198.18.64.1", 80, 40000, "198.18.0.2", 1, "two", None)
    with pytest.raises(AttributeError):
        pluginkit.merged_record({"dip": "x", "sp": 1}, res, ("a", "missing"))
