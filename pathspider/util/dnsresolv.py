"""PATHspider 1.0's path of the ``dnsresolv`` utility; it lives in
:mod:`pathspider.cli.dnsresolv`."""

from pathspider.cli.dnsresolv import (RateLimiter, Resolution, Writer, main, names_for,
                                      parse_nameserver, read_entries, register_args,
                                      resolve_entry, run, www_name)

__all__ = ["RateLimiter", "Resolution", "Writer", "main", "names_for", "parse_nameserver",
           "read_entries", "register_args", "resolve_entry", "run", "www_name"]
