"""Network interface checks: is the capture interface there and up?

(1.0's ``pathspider.network.interface_up`` is re-exported from here.)
"""

import logging
import socket

log = logging.getLogger("pathspider.engine.interfaces")

IFF_UP = 0x1


def interface_up(ifname):
    """True if the interface ``ifname`` exists and is up.

    1.0 required operstate ``UP``, which rejected tun devices and loopback (their operstate is
    ``UNKNOWN``); here an administratively up interface whose operstate is ``UP`` or ``UNKNOWN``
    counts as up.
    """
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        return False
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.get_links(index)
    if not links:
        return False
    link = links[0]
    operstate = link.get_attr("IFLA_OPERSTATE")
    return bool(link["flags"] & IFF_UP) and operstate in ("UP", "UNKNOWN")
