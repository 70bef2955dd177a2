"""The engine: runs a measurement from target list to result records.

* :mod:`~pathspider.engine.spider`: the :class:`Spider` lifecycle shared by every model
  (workers, completers, merger thread, Observer hand-off, shutdown);
* :mod:`~pathspider.engine.sync`, :mod:`~pathspider.engine.desync`: the spider models;
* :mod:`~pathspider.engine.completer`: the pool that runs ``post_connect``;
* :mod:`~pathspider.engine.merger`: matching flows with results;
* :mod:`~pathspider.engine.handoff`: starting the Observer process and pumping its flows;
* :mod:`~pathspider.engine.targets`, :mod:`~pathspider.engine.output`: reading targets,
  writing records;
* :mod:`~pathspider.engine.discovery`: finding plugins;
* :mod:`~pathspider.engine.interfaces`: checking the capture interface;
* :mod:`~pathspider.engine.coordinator`: one run from parsed arguments to exit status.

The engine imports the Observer and the client toolkit, never a plugin (except through
discovery), the lab or the command line. Plugins import its public names from
:mod:`pathspider.base`.
"""
