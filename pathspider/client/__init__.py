"""The active side that plugins use: what makes connections and changes system state.

* :mod:`~pathspider.client.tcpclient`: non-blocking TCP connects, HTTP requests, 1.0-style
  connection results;
* :mod:`~pathspider.client.reactor`: one epoll thread that drives many connections at once;
* :mod:`~pathspider.client.sysstate`: sysctls and nftables tables, put back when a run ends;
* :mod:`~pathspider.client.pluginkit`: pieces the bundled plugins share (merge skeleton,
  options, conditions, the reactor-connecting plugin base).

The client never imports the engine's internals.
"""
