"""The pathspider version (kept out of the namespace ``__init__`` files on purpose)."""

__version__ = "1.1.0.dev0"
