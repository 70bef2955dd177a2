"""The import paths plugins were written against keep working after the move to packages.

PATHspider 1.0's modules (``pathspider.base``, ``.observer`` with ``.tcp``, ``.icmp`` and
``.dummy``, ``.network``, ``.run``, ``.standalone``, ``.util.dnsresolv``) and the helper paths
earlier releases of this project documented (``pathspider.sysstate``, ``pathspider.util.reactor``,
``.tcpclient``, ``.pluginkit``) must offer the same objects as the modules that now hold them.
"""
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pathspider"

#: old path -> (new home, names that must be the very same objects)
MOVED = {
    "pathspider.base": ("pathspider.engine.spider", ["Spider", "PluggableSpider"]),
    "pathspider.network": ("pathspider.engine.interfaces", ["interface_up"]),
    "pathspider.run": ("pathspider.cli.main", ["handle_args", "handle_args_wrapper"]),
    "pathspider.standalone": ("pathspider.engine.coordinator", ["run_standalone", "job_feeder"]),
    "pathspider.util.dnsresolv": ("pathspider.cli.dnsresolv", ["main", "register_args"]),
    "pathspider.sysstate": ("pathspider.client.sysstate",
                            ["SystemState", "Sysctl", "NftTable", "restore_all", "sysctl",
                             "nft_table", "SystemStateError"]),
    "pathspider.util.reactor": ("pathspider.client.reactor", ["Reactor", "Job", "shared"]),
    "pathspider.util.tcpclient": ("pathspider.client.tcpclient",
                                  ["start_connect", "finish_connect", "http_request", "http_get",
                                   "close", "job_host", "job_rank", "raise_fd_limit",
                                   "USER_AGENT"]),
    "pathspider.util.pluginkit": ("pathspider.client.pluginkit",
                                  ["merged_record", "add_timeout_option"]),
    "pathspider.observer": ("pathspider.observer.meter", ["Observer", "simple_observer"]),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_offers_the_same_objects(old):
    new, names = MOVED[old]
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), f"{old}.{name}"
    assert set(names) <= set(old_module.__all__)


def test_the_1_0_plugin_api():
    base = importlib.import_module("pathspider.base")
    for name in ("Spider", "SynchronizedSpider", "DesynchronizedSpider", "PluggableSpider",
                 "Conn", "Connection", "NO_FLOW", "NO_RESULT", "SHUTDOWN_SENTINEL",
                 "SemaphoreN", "QUEUE_SIZE", "QUEUE_SLEEP"):
        assert hasattr(base, name), name
    assert base.SHUTDOWN_SENTINEL == "SHUTDOWN_SENTINEL"
    assert [c.value for c in base.Conn] == [0, 1, 2, 3]
    for cls in ("Spider", "SynchronizedSpider", "DesynchronizedSpider"):
        for method in ("config_zero", "config_one", "pre_connect", "connect", "post_connect",
                       "create_observer", "merge", "tcp_connect", "start", "shutdown",
                       "terminate", "add_job"):
            assert callable(getattr(getattr(base, cls), method)), f"{cls}.{method}"


def test_the_1_0_observer_api():
    observer = importlib.import_module("pathspider.observer")
    for name in ("Observer", "basic_flow", "basic_count", "simple_observer"):
        assert callable(getattr(observer, name)), name
    tcp = importlib.import_module("pathspider.observer.tcp")
    assert (tcp.TCP_SYN, tcp.TCP_ACK, tcp.TCP_ECE, tcp.TCP_CWR, tcp.TCP_SAEC) == (
        0x02, 0x10, 0x40, 0x80, 0x02 | 0x10 | 0x40 | 0x80)
    for name in ("tcp_setup", "tcp_handshake", "tcp_complete"):
        assert callable(getattr(tcp, name))
    icmp = importlib.import_module("pathspider.observer.icmp")
    assert callable(icmp.icmp_setup) and callable(icmp.icmp_unreachable)
    assert icmp.ICMP_UNREACHABLE == 3
    dummy = importlib.import_module("pathspider.observer.dummy")
    assert callable(dummy.Observer().run_flow_enqueuer)


def test_the_observer_names_one_end_of_stream_marker():
    from pathspider.constants import SHUTDOWN_SENTINEL
    from pathspider.observer import SHUTDOWN_SENTINEL as observer_marker
    from pathspider.observer import meter
    assert observer_marker is SHUTDOWN_SENTINEL
    assert meter.SHUTDOWN_SENTINEL is SHUTDOWN_SENTINEL


@pytest.mark.parametrize("init", ["__init__.py", "plugins/__init__.py"])
def test_namespace_init_files_hold_only_extend_path(init):
    lines = [line for line in (PACKAGE / init).read_text().splitlines() if line.strip()]
    assert lines == ["from pkgutil import extend_path",
                     "__path__ = extend_path(__path__, __name__)"]
