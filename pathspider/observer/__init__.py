"""The Observer: captured packets in, one flow record per flow out.

This package holds the packet side of pathspider, and it imports nothing from the engine,
the client, the command line, the lab or the plugins:

* :mod:`~pathspider.observer.source`: packet sources behind libtrace-style URIs (libpcap);
* :mod:`~pathspider.observer.dissector`: header views with python-libtrace's names;
* :mod:`~pathspider.observer.flowtable`: flows, chains and packet-clock timers;
* :mod:`~pathspider.observer.meter`: the :class:`Observer` class that drives them;
* :mod:`~pathspider.observer.process`: the Observer's side of running in its own process;
* :mod:`~pathspider.observer.build`: whether the meter runs compiled (:func:`meter_mode`);
* the chain library, one module per protocol (:mod:`~pathspider.observer.basic`,
  ``tcp``, ``icmp``, ``ecn``, ``dscp``, ``tfo``, ``mss``, ``evil``, ``udp``, ``dns``) and its
  registry, :mod:`~pathspider.observer.chains`.

This module keeps PATHspider 1.0's import path: ``from pathspider.observer import Observer,
basic_flow, basic_count, simple_observer``.
"""

from pathspider.constants import SHUTDOWN_SENTINEL
from pathspider.observer.basic import basic_count, basic_flow, extract_ports
from pathspider.observer.build import meter_mode
from pathspider.observer.meter import Observer, simple_observer
from pathspider.observer.source import PacketSourceError

__all__ = ["Observer", "PacketSourceError", "basic_flow", "basic_count", "extract_ports",
           "simple_observer", "meter_mode", "SHUTDOWN_SENTINEL"]
