"""The ``pathspider`` command and its utilities.

* :mod:`~pathspider.cli.main`: the parser, plugin sub-commands and the console entry point;
* :mod:`~pathspider.cli.observe`: ``pathspider observe`` (run chains over a pcap or interface);
* :mod:`~pathspider.cli.summary`: ``pathspider summary`` (a table of a run's results);
* :mod:`~pathspider.cli.dnsresolv`: ``pathspider dnsresolv`` (domain list to target list).

The lab's command line stays with the lab (:mod:`pathspider.lab.cli`).
"""
