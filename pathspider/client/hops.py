"""Where on the path a packet is dropped or rewritten: the analysis of a trace (no I/O).

:mod:`pathspider.client.trace` sends the experiment's packet (B) and the baseline's (A, the
control) with TTL / hop limit 1..N and collects, per probe name and TTL, the routers'
time-exceeded replies with the fields their quotation shows (:func:`packet_fields`), and the
destination's answers. :func:`analyse` turns that into the ``locate`` object of a record.

Hop numbers are counted as in the lab: hop ``k`` is the router that answers the probe sent
with TTL ``k`` (1 = the first router after the client). Hop 0 stands for "before the first
router": the client's own host or namespace.

What a reply proves
-------------------
A router checks the TTL *before* it forwards (and before anything the forwarding path does
to the packet, such as the lab's nftables impairments in the forward hook), so:

* hop ``k`` answering B's TTL=k probe proves the packet reached hop ``k``, not that hop ``k``
  forwarded it. A hop that drops B still answers B's probe that expires there.
* hop ``k`` is known to have *forwarded* B when a later hop (TTL > k) or the destination
  answered B: ``last_forwarded`` is the highest such ``k`` (None when no router is known to
  have forwarded B, e.g. only hop 1 answered).
* ``dropped_at`` = ``h`` when B was answered at hop ``h`` and, at TTL ``h + 1``, A was
  answered (by hop ``h + 1`` or by the destination) but B was not: adjacent evidence, the
  control shows the hop after ``h`` does answer. ``h`` is the last hop that saw B; the drop
  happened in its forwarding, on the link after it, or at hop ``h + 1``'s ingress before the
  TTL check (a trace cannot tell these apart). When the TTLs between the last B answer and
  the first A-only answer are silent for both, ``dropped_at`` is None and ``unknown`` says
  "between hop x and hop y (hop z silent)". ``dropped_at`` 0: not even hop 1 answered B.
  If B reached the destination there is no drop.
* ``first_silent`` is the lowest hop silent for B but answering A (or where the destination
  answered A).
* A quotation shows the packet as the quoting router *received* it. ``changed_at[f]`` = ``h``
  when hop ``h``'s quote (or the sent packet, for ``h`` = 0) shows field ``f`` as sent and
  hop ``h + 1``'s shows it changed: ``h`` is the last hop that saw it intact; the change
  happened in its forwarding, on the next link or at hop ``h + 1``'s ingress. With a silent
  hop, or a quote too short to show ``f`` (a 28-byte IPv4 quote holds no TCP options), between
  the last intact and the first changed quote, ``changed_at[f]`` is None and ``unknown`` says
  why. A change made in the client's own host shows in hop 1's quote: ``changed_at`` 0.

Quote lengths: RFC 792 asks only for the IP header and 8 bytes of the offending packet (28
bytes for IPv4: ports and sequence number, no TCP flags or options); RFC 1812 routers (and
Linux) quote as much as fits in 576 bytes, RFC 4884 at least 128; ICMPv6 (RFC 4443) as much
as fits in 1280 bytes, at least the 40-byte header and 8 bytes (48). :func:`packet_fields`
returns only the fields the quote really holds; the others are "unjudged".
"""
from pathspider.observer.dissector import PROTO_TCP, PROTO_UDP, parse_tcp_options

__all__ = ["packet_fields", "analyse", "FIELDS"]

#: Every field :func:`packet_fields` may return and :func:`analyse` can judge.
FIELDS = ("ecn", "dscp", "evil", "tcp_flags", "tcp_options", "mss", "tfo", "udp_checksum")

_TFO_KINDS = (34, 254)
_MSS = 2
#: Reply kinds that come from a router on the path (not from the destination).
_ROUTER_KINDS = ("time-exceeded", "unreachable")


# ---- fields of a packet or a quote ------------------------------------------------------------

def packet_fields(ip):
    """The fields an IP view (a sent packet, or a quotation's ``.quoted``) shows.

    Always ``ecn``, ``dscp``, ``quote_len`` (bytes of the IP packet present) and ``full``
    (the whole transport header is there, more than a minimal RFC 792 quote); ``evil`` on
    IPv4 only; ``tcp_flags`` when 14 TCP bytes are there, ``tcp_options`` (kinds, without
    NOP/EOL), ``mss`` (None if absent) and ``tfo`` only when the whole TCP header (by data
    offset) is; ``udp_checksum`` when the 8 UDP bytes are.
    """
    buf, l4, end = ip.buf, ip.l4, ip.end
    out = {"ecn": ip.ecn, "dscp": ip.dscp, "quote_len": end - ip.off}
    if ip.version == 4:
        out["evil"] = bool(ip.has_rf)
    have = end - l4 if l4 >= 0 else 0
    full = end - ip.off >= ip.size
    if ip.proto == PROTO_TCP and have >= 14:
        out["tcp_flags"] = buf[l4 + 13]
        hlen = (buf[l4 + 12] >> 4) << 2
        full = hlen >= 20 and have >= hlen
        if full:
            out.update(_tcp_option_fields(bytes(buf[l4 + 20:l4 + hlen])))
    elif ip.proto == PROTO_TCP:
        full = False
    elif ip.proto == PROTO_UDP:
        if have >= 8:
            out["udp_checksum"] = (buf[l4 + 6] << 8) | buf[l4 + 7]
        full = full or have > 8
    out["full"] = bool(full)
    return out


def _tcp_option_fields(raw):
    """``tcp_options`` / ``mss`` / ``tfo`` from the option bytes of a TCP header."""
    options = parse_tcp_options(raw)
    kinds = [kind for kind, _ in options]
    mss = next((int.from_bytes(value, "big") for kind, value in options
                if kind == _MSS and len(value) == 2), None)
    return {"tcp_options": kinds, "mss": mss,
            "tfo": any(kind in _TFO_KINDS for kind in kinds)}


# ---- the analysis -------------------------------------------------------------------------

def analyse(result, fields, experiment="B", control="A", expect=()):
    """The ``locate`` object (JSON-ready) of a :class:`pathspider.client.trace.TraceResult`.

    ``fields``: the fields the plugin cares about (names of :data:`FIELDS`); ``experiment``
    and ``control`` the probe names of B and A (A may be absent); ``expect``: fields the
    caller knows were changed on the path, for which "no quote shows a change" is reported
    in ``unknown`` (the change is then after the last quoting hop). See the module docstring
    for what every key means.
    """
    b = result.replies.get(experiment) or {}
    a = result.replies.get(control) if control in result.probes else None
    view = _View(result, b, a, experiment, control)
    unknown = []
    changed_at = {}
    for field in fields:
        changed_at[field] = _changed_at(view, field, field in expect, unknown)
    dropped_at = _dropped_at(view, unknown)
    return {
        "hops": [_hop_entry(view, k, fields) for k in range(1, view.routers + 1)],
        "destination": {"a": view.dest_ttl(control), "b": view.dest_ttl(experiment),
                        "a_reached": view.reached(control) if a is not None else None,
                        "b_reached": view.reached(experiment)},
        "last_forwarded": _last_forwarded(view),
        "first_silent": _first_silent(view),
        "dropped_at": dropped_at,
        "changed_at": changed_at,
        "unknown": unknown,
        "packets": result.packets_sent,
        "max_ttl": view.max_ttl,
        "rounds": result.rounds,
        "errors": list(getattr(result, "errors", ()) or ()),
    }


class _View:
    """The questions the analysis asks of one trace (which hop answered which probe)."""

    def __init__(self, result, b, a, experiment, control):
        self.result, self.b, self.a = result, b, a
        self.exp, self.ctl = experiment, control
        self.sent = (result.probes.get(experiment) or {})
        ttls = [t for replies in result.replies.values() for t in replies]
        self.max_ttl = max([getattr(result, "max_ttl_sent", 0) or 0] + ttls)
        known = [self.dest_ttl(name) for name in result.replies]
        known = [t for t in known if t is not None]
        if known:
            self.routers = min(known) - 1
        else:
            # routers up to the last time-exceeded, and the first TTL a router refused
            # (unreachable) after it: the TTLs above draw the same refusal
            expired = max((t for replies in result.replies.values()
                           for t, r in replies.items() if r.kind == "time-exceeded"),
                          default=0)
            refused = [t for replies in result.replies.values() for t, r in replies.items()
                       if r.kind in _ROUTER_KINDS and t > expired]
            self.routers = min(refused, default=expired)

    def dest(self, name):
        return (self.result.destination or {}).get(name) or {}

    def reached(self, name):
        return bool(self.dest(name).get("reached"))

    def dest_ttl(self, name):
        d = self.dest(name)
        return d.get("ttl") if d.get("reached") else None

    def b_router(self, k):
        """B's time-exceeded reply at TTL ``k``, or None."""
        r = self.b.get(k)
        return r if r is not None and r.kind == "time-exceeded" else None

    def passed(self, replies, k):
        """Whether the probe of TTL ``k`` drew a time-exceeded or the destination's answer
        (evidence that the packet travelled that far)."""
        r = replies.get(k) if replies is not None else None
        return r is not None and r.kind in ("time-exceeded", "destination")


def _state(reply):
    if reply is None:
        return "silent"
    return {"time-exceeded": "answered", "destination": "destination"}.get(reply.kind,
                                                                             reply.kind)


def _hop_entry(view, k, fields):
    """One element of ``hops``: who answered TTL ``k``, the quote, what changed in B's."""
    rb = view.b.get(k)
    ra = view.a.get(k) if view.a is not None else None
    shown = rb if rb is not None else ra
    entry = {"hop": k, "address": shown.address if shown is not None else None,
             "a": _state(ra) if view.a is not None else None, "b": _state(rb),
             "quote_len": shown.quote_len if shown is not None else None,
             "full_quote": bool((shown.fields or {}).get("full")) if shown is not None
             else None,
             "changed": [], "unjudged": []}
    if rb is not None and rb.kind == "time-exceeded":
        quoted = rb.fields or {}
        for field in fields:
            if field not in view.sent:
                continue
            if field not in quoted:
                entry["unjudged"].append(field)
            elif quoted[field] != _sent_value(view, rb, field):
                entry["changed"].append(field)
    return entry


def _last_forwarded(view):
    """The highest hop known to have forwarded B (a later hop or the destination answered
    it), or None."""
    if view.reached(view.exp):
        d = view.dest_ttl(view.exp)
        return (d - 1 if d is not None else view.routers) or None
    answered = [k for k, r in view.b.items() if r.kind == "time-exceeded"]
    top = max(answered, default=0)
    return top - 1 if top > 1 else None


def _first_silent(view):
    """The lowest TTL silent for B where A drew an answer, or None (no A probe, or none)."""
    if view.a is None:
        return None
    for k in range(1, view.max_ttl + 1):
        if view.b.get(k) is None and view.a.get(k) is not None:
            return k
    return None


def _dropped_at(view, unknown):
    """The hop after which B is lost while A goes on (module docstring), or None with a
    reason in ``unknown`` when the evidence is not adjacent."""
    if view.reached(view.exp):
        return None
    if view.a is None:
        unknown.append("drop: no control probe (A), a drop cannot be told from silent hops")
        return None
    last_b = max((k for k in view.b if view.passed(view.b, k)), default=0)
    a_only = [k for k in range(last_b + 1, view.max_ttl + 1)
              if view.passed(view.a, k) and not view.passed(view.b, k)]
    if not a_only:
        if not view.reached(view.ctl):
            unknown.append(f"drop: neither A nor B went beyond hop {last_b}")
        return None
    first = a_only[0]
    if first == last_b + 1:
        return last_b
    silent = list(range(last_b + 1, first))
    unknown.append(f"drop: between hop {last_b} and hop {first} "
                   f"(hop {_ranges(silent)} silent)")
    return None


def _changed_at(view, field, expected, unknown):
    """The last hop whose quote shows ``field`` as sent before one shows it changed."""
    if field not in view.sent:
        unknown.append(f"{field}: not a field of the sent packet")
        return None
    intact, gap = 0, []
    for k in range(1, view.routers + 1):
        reply = view.b_router(k)
        if reply is None:
            gap.append(f"hop {k} silent")
            continue
        quoted = reply.fields or {}
        if field not in quoted:
            gap.append(f"hop {k}'s {reply.quote_len}-byte quote does not show it")
            continue
        if quoted[field] == _sent_value(view, reply, field):
            intact, gap = k, []
            continue
        if not gap:
            return intact
        unknown.append(f"{field}: changed between hop {intact} and hop {k} "
                       f"({'; '.join(gap)})")
        return None
    if expected:
        unknown.append(f"{field}: no quote shows it changed (intact up to hop {intact}"
                       + (f"; {'; '.join(gap)}" if gap else "") + ")")
    return None


def _sent_value(view, reply, field):
    """What was sent of ``field`` in the probe ``reply`` answers (its own value when the
    field differs per TTL, see :class:`pathspider.client.trace.Reply`)."""
    sent = getattr(reply, "sent", None) or {}
    return sent[field] if field in sent else view.sent[field]


def _ranges(numbers):
    """``[3]`` -> "3", ``[3, 4, 5]`` -> "3-5" (a run of consecutive hops)."""
    if len(numbers) == 1:
        return str(numbers[0])
    return f"{numbers[0]}-{numbers[-1]}"
