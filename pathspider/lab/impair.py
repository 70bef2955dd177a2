"""The middlebox's impairments: the nftables ruleset and its counters.

One rule per (class, address family, direction), each carrying a counter and a comment
``"<class> <ip|ip6> <to|from>"`` so that :func:`counters` can report per-rule packet counts.
"to" matches packets towards the class's targets (client to server), "from" the replies.

The table also holds an empty ``loss`` chain that :mod:`pathspider.lab.path` fills for
random loss on the path. Packets coming back from the user-space delayer's TUN device have
been through both chains already and pass untouched.
"""
import json
import logging

from . import netns, plan

log = logging.getLogger("pathspider.lab")

TABLE = "pathspider_lab"
CHAIN = "impair"
LOSS_CHAIN = "loss"
DELAYER_IFACE = "dly0"

_SYN = "tcp flags & syn == syn"
#: A TCP segment from port 80 whose payload starts with "HTTP/1.1 101" (a protocol switch
#: answered: the h2c upgrade). ``@ih`` is the transport payload, whatever the TCP options.
_UPGRADE_ANSWER = (f"tcp sport {plan.HTTP_PORT} @ih,0,96 0x"
                   + b"HTTP/1.1 101".hex())

# class -> list of (direction, families, condition, action). Families: "ip" and/or "ip6";
# "{f}" in an action is replaced by the family keyword.
RULES = {
    "clean": [("to", ("ip", "ip6"), "", "")],
    "clean2": [("to", ("ip", "ip6"), "", "")],
    "ecn-syn-drop": [("to", ("ip", "ip6"),
                      "tcp flags & (syn|ack|ecn|cwr) == (syn|ecn|cwr)", "drop")],
    "ecn-bleach": [(d, ("ip", "ip6"), "", "{f} ecn set not-ect") for d in ("to", "from")],
    "dscp-bleach": [(d, ("ip", "ip6"), "", "{f} dscp set cs0") for d in ("to", "from")],
    "tfo-strip": [(d, ("ip", "ip6"), _SYN, "reset tcp option fastopen reset tcp option 254")
                  for d in ("to", "from")],
    "unreachable": [("to", ("ip", "ip6"), "", "reject with icmpx type host-unreachable")],
    "blackhole": [("to", ("ip", "ip6"), "", "drop")],
    "evilbit-drop": [("to", ("ip",), "ip frag-off & 0x8000 != 0", "drop")],
    "udp-zero-drop": [("to", ("ip", "ip6"), "udp checksum 0", "drop")],
    "mss-rewrite": [(d, ("ip", "ip6"), _SYN, f"tcp option maxseg size set {plan.REWRITTEN_MSS}")
                    for d in ("to", "from")],
    "h2-none": [("to", ("ip", "ip6"), "", "")],
    "h2c-drop": [("from", ("ip", "ip6"), _UPGRADE_ANSWER, "drop")],
}

_TERMINAL = ("drop", "reject")


def _rule(cls, direction, family, cond, action):
    net = plan.CLASSES[cls].net4 if family == "ip" else plan.CLASSES[cls].net6
    match = f"{family} {'daddr' if direction == 'to' else 'saddr'} {net}"
    action = action.format(f=family)
    if action.startswith(_TERMINAL):
        body = f"{cond} counter {action}"      # count what is dropped or rejected
    else:
        body = f"{cond} {action} counter"
    comment = f"{cls} {family} {direction}"
    return f'{match} {" ".join(body.split())} comment "{comment}"'


def rules():
    """All impairment rules, in plan order, as nft rule text."""
    out = []
    for cls in plan.CLASS_NAMES:
        for direction, families, cond, action in RULES[cls]:
            for family in families:
                out.append(_rule(cls, direction, family, cond, action))
    return out


def ruleset():
    """The complete nft script: replaces the lab table atomically, leaves others alone."""
    body = "\n".join(f"    {r}" for r in rules())
    return (f"table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
            f"  chain {LOSS_CHAIN} {{\n"
            f"    type filter hook forward priority mangle - 10; policy accept;\n"
            f"  }}\n"
            f"  chain {CHAIN} {{\n"
            f"    type filter hook forward priority mangle; policy accept;\n"
            f'    iifname "{DELAYER_IFACE}" accept\n'
            f"{body}\n"
            f"  }}\n"
            f"}}\n")


def load(mbox):
    """Load the impairments into the middlebox namespace ``mbox``."""
    netns.run(mbox, ["nft", "-f", "-"], input=ruleset())


def loaded(mbox):
    """Whether the middlebox carries the full impairment chain (one counter per rule)."""
    try:
        return len(counters(mbox)) == len(rules())
    except RuntimeError:
        return False


def counters(mbox):
    """Per-rule counters: list of dicts ``{class, family, direction, packets, bytes}``."""
    done = netns.run(mbox, ["nft", "-j", "list", "chain", "inet", TABLE, CHAIN])
    out = []
    for item in json.loads(done.stdout).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        cls, family, direction = rule["comment"].split()
        counter = next((e["counter"] for e in rule["expr"] if "counter" in e),
                       {"packets": 0, "bytes": 0})
        out.append({"class": cls, "family": family, "direction": direction,
                    "packets": counter["packets"], "bytes": counter["bytes"]})
    return out
