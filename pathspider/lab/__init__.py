"""The lab: a real, impaired Internet path built from Linux network namespaces.

``Lab(name).up()`` builds a client, a chain of five routers (hops 1..5; the first is the
``mbox``) and a server namespace joined by veth links, with one target subnet per impairment
class (see :mod:`pathspider.lab.plan`), HTTP and DNS servers, and nftables impairments each
placed in the router of its hop; ``down()`` removes it all. The command
``pathspider lab up|down|status|place|targets|exec`` does the same from a shell, and
:mod:`pathspider.lab.fixtures` offers it to pytest (through the plugin
:mod:`pathspider.testing.pytest_plugin`, which pytest loads by itself).
"""
from .lab import Lab, LabError, LabNameError
from .plan import CLASS_NAMES, CLASSES
from .targets import make_targets

__all__ = ["Lab", "LabError", "LabNameError", "CLASSES", "CLASS_NAMES", "make_targets"]
