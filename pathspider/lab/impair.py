"""The routers' impairments: the nftables rulesets, their placement and their counters.

One rule per (class, address family, direction), each carrying a counter and a comment
``"<class> <ip|ip6> <to|from>"`` so that :func:`counters` can report per-rule packet counts.
"to" matches packets towards the class's targets (client to server), "from" the replies.

Every router (hop 1..``plan.ROUTERS``) has a table ``pathspider_lab`` whose ``impair`` chain
(forward hook) holds the rules of the classes placed at its hop (a placement maps class ->
hop, ``plan.IMPAIRMENT_HOPS`` by default; the counting rules of classes that impair nothing
sit at ``plan.COUNTING_HOP``). The forward hook runs after the kernel's TTL / hop-limit
check, so the router at hop h answers a packet that expires there before it impairs what it
forwards. :func:`place` moves classes between routers. The silent hop's table also has a
``silent`` chain (output hook) that drops the ICMP time-exceeded messages it would send.

Hop 1's table also holds an empty ``loss`` chain that :mod:`pathspider.lab.path` fills for
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
SILENT_CHAIN = "silent"
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


def rule_hop(cls, placement=None):
    """The hop whose router holds class ``cls``'s rules under ``placement`` (class -> hop;
    None: ``plan.IMPAIRMENT_HOPS``)."""
    placement = plan.IMPAIRMENT_HOPS if placement is None else placement
    return placement.get(cls) or plan.COUNTING_HOP


def class_rules(cls):
    """Class ``cls``'s rules as nft rule text."""
    return [_rule(cls, direction, family, cond, action)
            for direction, families, cond, action in RULES[cls] for family in families]


def rules(hop=None, placement=None):
    """The impairment rules of the router at ``hop`` under ``placement`` (see
    :func:`rule_hop`), in plan order, as nft rule text; ``hop`` None: every class's rules
    (what one router holding all of them would carry)."""
    return [rule for cls in plan.CLASS_NAMES
            if hop is None or rule_hop(cls, placement) == hop for rule in class_rules(cls)]


def _comment(rule):
    return rule.rsplit('comment "', 1)[1].rstrip('"')


def ruleset(hop=None, placement=None):
    """The complete nft script for the router at ``hop`` (None: one table with every rule, a
    loss chain and no silent chain): replaces the lab table atomically, leaves others alone."""
    body = "\n".join(f"    {r}" for r in rules(hop, placement))
    loss = (f"  chain {LOSS_CHAIN} {{\n"
            f"    type filter hook forward priority mangle - 10; policy accept;\n"
            f"  }}\n") if hop in (None, 1) else ""
    delayer = f'    iifname "{DELAYER_IFACE}" accept\n' if hop in (None, 1) else ""
    silent = (f"  chain {SILENT_CHAIN} {{\n"
              f"    type filter hook output priority filter; policy accept;\n"
              f'    icmp type time-exceeded counter drop comment "silent ip"\n'
              f'    icmpv6 type time-exceeded counter drop comment "silent ip6"\n'
              f"  }}\n") if hop == plan.SILENT_HOP else ""
    return (f"table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
            f"{loss}"
            f"  chain {CHAIN} {{\n"
            f"    type filter hook forward priority mangle; policy accept;\n"
            f"{delayer}"
            f"{body}\n"
            f"  }}\n"
            f"{silent}"
            f"}}\n")


def load(ns, hop=None, placement=None):
    """Load the ruleset of the router at ``hop`` (see :func:`ruleset`) into namespace ``ns``."""
    netns.run(ns, ["nft", "-f", "-"], input=ruleset(hop, placement))


def loaded(ns, hop=None, placement=None):
    """Whether namespace ``ns`` carries exactly the impairment rules of the router at ``hop``
    under ``placement`` (one counted rule each; ``hop`` None: every rule), and, at the silent
    hop, the silent chain."""
    try:
        have = sorted(f"{c['class']} {c['family']} {c['direction']}" for c in counters(ns))
        if hop == plan.SILENT_HOP and silenced(ns) is None:
            return False
    except (RuntimeError, ValueError):
        return False
    return have == sorted(_comment(r) for r in rules(hop, placement))


def _chain(ns, chain):
    """The rules of ``chain`` in the lab table of namespace ``ns`` (nft's JSON objects)."""
    done = netns.run(ns, ["nft", "-j", "list", "chain", "inet", TABLE, chain])
    return [item["rule"] for item in json.loads(done.stdout).get("nftables", [])
            if "rule" in item]


def _counter(rule):
    return next((e["counter"] for e in rule["expr"] if "counter" in e),
                {"packets": 0, "bytes": 0})


def counters(ns):
    """Per-rule counters of the router in namespace ``ns``: list of dicts ``{class, family,
    direction, packets, bytes}``."""
    out = []
    for rule in _chain(ns, CHAIN):
        if "comment" not in rule:
            continue
        cls, family, direction = rule["comment"].split()
        counter = _counter(rule)
        out.append({"class": cls, "family": family, "direction": direction,
                    "packets": counter["packets"], "bytes": counter["bytes"]})
    return out


def silenced(ns):
    """How many ICMP time-exceeded messages the silent router in ``ns`` dropped ({"ip": n,
    "ip6": n}), or None if ``ns`` has no silent chain."""
    try:
        chain = _chain(ns, SILENT_CHAIN)
    except RuntimeError:
        return None
    found = {rule["comment"].split()[1]: _counter(rule)["packets"] for rule in chain
             if rule.get("comment", "").startswith("silent ")}
    return found if set(found) == {"ip", "ip6"} else None


def place(routers, old, new):
    """Move classes between routers: ``routers`` maps hop -> namespace, ``old`` and ``new``
    are placements (class -> hop). Each router changes in one nft transaction (atomic there);
    every router that gains rules changes before any that loses some, so a moved class is
    never unimpaired (for an instant it is impaired at both hops). Rules of classes that stay
    keep their counters; a moved class's counters start at zero at its new hop."""
    moved = [c for c in plan.CLASS_NAMES if rule_hop(c, old) != rule_hop(c, new)]
    gains, losses = {}, {}
    for cls in moved:
        gains.setdefault(rule_hop(cls, new), []).append(cls)
        losses.setdefault(rule_hop(cls, old), []).append(cls)
    for hop, classes in gains.items():
        script = "".join(f"add rule inet {TABLE} {CHAIN} {rule}\n"
                         for cls in classes for rule in class_rules(cls))
        netns.run(routers[hop], ["nft", "-f", "-"], input=script)
    for hop, classes in losses.items():
        handles = [rule["handle"] for rule in _chain(routers[hop], CHAIN)
                   if rule.get("comment", "").split(" ")[0] in classes]
        script = "".join(f"delete rule inet {TABLE} {CHAIN} handle {h}\n" for h in handles)
        if script:
            netns.run(routers[hop], ["nft", "-f", "-"], input=script)
    if moved:
        log.info("impairments moved: %s", ", ".join(
            f"{c} hop {rule_hop(c, old)} -> {rule_hop(c, new)}" for c in moved))
    return moved


# -- vantage access links ----------------------------------------------------------------------
# A vantage in plan.VANTAGE_IMPAIRMENTS gets a chain of its own, ``vantage-<name>``, in hop 1's
# lab table (forward hook): one rule per family and direction matching the vantage's access
# link by interface (``iifname a<k>``: from the vantage, "out"; ``oifname a<k>``: to it, "in"),
# each with a counter and a comment ``"<vantage> <ip|ip6> <out|in>"``. It is added when the
# vantage is and deleted with it; the ``impair`` chain and its counters are not touched.

VANTAGE_CHAIN_PREFIX = "vantage-"


def vantage_chain(name):
    """The chain of vantage ``name``'s access-link impairment: ``vantage-<name>``."""
    return VANTAGE_CHAIN_PREFIX + plan.vantage_name(name)


def vantage_rules(name):
    """Vantage ``name``'s access-link rules as nft rule text ([] if its link impairs
    nothing)."""
    imp = plan.VANTAGE_IMPAIRMENTS.get(plan.vantage_name(name))
    if imp is None:
        return []
    iface = plan.mbox_vantage_iface(name)
    out = []
    for direction, match in (("out", "iifname"), ("in", "oifname")):
        for family in ("ip", "ip6"):
            out.append(f'{match} "{iface}" {imp.action.format(f=family)} counter '
                       f'comment "{plan.vantage_name(name)} {family} {direction}"')
    return out


def load_vantage(mbox, name):
    """Add vantage ``name``'s access-link chain to hop 1's table (namespace ``mbox``), in one
    transaction, replacing one left there; nothing if its link impairs nothing."""
    rules_ = vantage_rules(name)
    if not rules_:
        return
    chain = vantage_chain(name)
    script = (f"add chain inet {TABLE} {chain} "
              f"{{ type filter hook forward priority mangle; policy accept; }}\n"
              f"flush chain inet {TABLE} {chain}\n"
              + "".join(f"add rule inet {TABLE} {chain} {r}\n" for r in rules_))
    netns.run(mbox, ["nft", "-f", "-"], input=script)


def unload_vantage(mbox, name):
    """Delete vantage ``name``'s access-link chain from hop 1's table, if it is there."""
    if vantage_counters(mbox, name) is not None:
        netns.run(mbox, ["nft", "delete", "chain", "inet", TABLE, vantage_chain(name)])


def vantage_counters(mbox, name):
    """The counters of vantage ``name``'s access-link rules in hop 1 (namespace ``mbox``):
    a list of ``{family, direction, packets, bytes}``, or None if it has no chain there."""
    try:
        chain = _chain(mbox, vantage_chain(name))
    except RuntimeError:
        return None
    out = []
    for rule in chain:
        if "comment" not in rule:
            continue
        _, family, direction = rule["comment"].split()
        counter = _counter(rule)
        out.append({"family": family, "direction": direction,
                    "packets": counter["packets"], "bytes": counter["bytes"]})
    return out


def vantage_chains(mbox):
    """The vantage chains hop 1's lab table holds (names of their vantages)."""
    done = netns.run(mbox, ["nft", "-j", "list", "table", "inet", TABLE])
    chains = [item["chain"]["name"] for item in json.loads(done.stdout).get("nftables", [])
              if "chain" in item]
    return sorted(c[len(VANTAGE_CHAIN_PREFIX):] for c in chains
                  if c.startswith(VANTAGE_CHAIN_PREFIX))


def vantage_loaded(mbox, name):
    """Whether hop 1 carries exactly vantage ``name``'s access-link rules (none, and no chain,
    for a vantage whose link impairs nothing)."""
    have = vantage_counters(mbox, name)
    want = sorted(r.rsplit('comment "', 1)[1].rstrip('"') for r in vantage_rules(name))
    if not want:
        return have is None
    got = sorted(f"{plan.vantage_name(name)} {c['family']} {c['direction']}"
                 for c in have or [])
    return got == want
