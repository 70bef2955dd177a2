"""Which Linux capabilities this process holds, for one-line errors before anything fails.

A run captures packets (CAP_NET_RAW) and, for plugins that switch system state, writes sysctls
under ``net.`` and nftables tables (CAP_NET_ADMIN). Root has both; an unprivileged user can be
given just these two (see docs/engine.md, "Running without root").
"""

#: Linux capability numbers (linux/capability.h).
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}

#: What the one-line errors tell the user to do.
HINT = "run as root or grant the capability (see docs/engine.md, 'Running without root')"


def effective(status_path="/proc/self/status"):
    """The capability numbers this process holds (its ``CapEff`` set), or None if unknown."""
    try:
        with open(status_path, encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    bits = int(line.split()[1], 16)
                    return {n for n in range(64) if bits >> n & 1}
    except (OSError, ValueError, IndexError):
        pass
    return None


def has(number):
    """Whether this process holds capability ``number`` (True when that cannot be known)."""
    held = effective()
    return held is None or number in held


def missing(numbers):
    """Names of the capabilities in ``numbers`` this process does not hold."""
    return [NAMES.get(n, str(n)) for n in numbers if not has(n)]
