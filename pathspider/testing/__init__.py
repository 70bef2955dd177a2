"""Helpers for testing pathspider plugins, in pathspider's tree or in your own.

- :mod:`pathspider.testing.pytest_plugin`: the pytest plugin the package registers (an
  entry point of the ``pytest11`` group named after the module), so that any source tree
  gets, without a conftest, the ``root`` marker and the lab fixtures ``lab``, ``lab_client_state`` and
  ``lab_netem`` (:mod:`pathspider.lab.fixtures`);
- :mod:`pathspider.testing.packets`: build IPv4/IPv6 TCP/UDP/ICMP packets, write them to a
  pcap file, and run an Observer with chosen chain functions over it.

Nothing else in pathspider imports this package: it is for tests only.
"""
