"""Former home of utilities and plugin helpers, kept for the import paths of PATHspider 1.0
(``pathspider.util.dnsresolv``) and of earlier plugin helpers (``reactor``, ``tcpclient``,
``pluginkit``). Each module here only re-exports: the utilities live in :mod:`pathspider.cli`,
the helpers in :mod:`pathspider.client`."""
