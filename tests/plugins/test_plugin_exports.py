"""The three 1.0 plugins keep their 1.0 names: classes, records and re-exported chain functions,
and they are found by the plugin loader."""
import pathspider.observer.dscp as dscp_chain
import pathspider.observer.ecn as ecn_chain
import pathspider.observer.tcp as tcp_chain
import pathspider.observer.tfo as tfo_chain
from pathspider.base import DesynchronizedSpider, PluggableSpider, SynchronizedSpider
from pathspider.engine.discovery import load_plugins


def test_ecn_names():
    from pathspider.plugins.ecn import ECN, SpiderRecord, USER_AGENT, ecn_code, ecn_setup
    assert issubclass(ECN, SynchronizedSpider) and issubclass(ECN, PluggableSpider)
    assert (ecn_setup, ecn_code) == (ecn_chain.ecn_setup, ecn_chain.ecn_code)
    assert SpiderRecord._fields[:9] == ("ip", "rport", "port", "rank", "host", "config",
                                        "connstate", "tstart", "tstop")
    assert USER_AGENT == "pathspider"


def test_dscp_names():
    from pathspider.plugins.dscp import DSCP, SpiderRecord, dscp_extract, dscp_setup
    assert issubclass(DSCP, SynchronizedSpider) and issubclass(DSCP, PluggableSpider)
    assert (dscp_setup, dscp_extract) == (dscp_chain.dscp_setup, dscp_chain.dscp_extract)
    assert SpiderRecord._fields[:6] == ("ip", "rport", "port", "host", "config", "connstate")


def test_tfo_names():
    from pathspider.plugins import tfo
    assert issubclass(tfo.TFO, DesynchronizedSpider) and issubclass(tfo.TFO, PluggableSpider)
    assert (tfo._tfosetup, tfo._tfopacket, tfo._tfocookie) == (
        tfo_chain._tfosetup, tfo_chain._tfopacket, tfo_chain._tfocookie)
    assert tfo._tcpoptions is tcp_chain._tcpoptions
    assert (tfo.TO_FASTOPEN, tfo.TO_EXPA, tfo.TO_EXPB, tfo.TO_EXP_FASTOPEN) == (
        34, 254, 255, (0xF9, 0x89))
    assert tfo.TFOSpiderRecord._fields[:9] == ("ip", "rport", "port", "host", "config", "c0t",
                                               "c1t", "connstate", "rank")


def test_plugins_are_discovered():
    plugins, errors = load_plugins()
    names = {plugin.__name__ for plugin in plugins}
    assert {"ECN", "TFO", "DSCP"} <= names
    assert not [e for e in errors if "ecn" in str(e) or "tfo" in str(e) or "dscp" in str(e)]


def test_observer_names_of_1_0_plugins():
    """1.0's plugins imported the Observer, the basic and the TCP chain functions."""
    from pathspider.observer import Observer, basic_count, basic_flow
    from pathspider.plugins import dscp, ecn, tfo
    expected = (Observer, basic_flow, basic_count, tcp_chain.tcp_setup, tcp_chain.tcp_handshake,
                tcp_chain.tcp_complete)
    for module in (ecn, dscp, tfo):
        assert (module.Observer, module.basic_flow, module.basic_count, module.tcp_setup,
                module.tcp_handshake, module.tcp_complete) == expected, module.__name__
