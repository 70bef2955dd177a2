"""PATHspider 1.0's path of ``interface_up``; it lives in :mod:`pathspider.engine.interfaces`."""

from pathspider.engine.interfaces import interface_up

__all__ = ["interface_up"]
