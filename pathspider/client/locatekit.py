"""The plugin side of ``--locate``: which targets to trace, with which packets, and what the
trace means for the plugin's conditions.

``--locate`` (issue 14, docs/plugins/locate.md) sends, for a target whose result shows a
path-dependent effect, the experiment's packet (B) and the baseline's (A, the control) with
TTL / hop limit 1..N and reads the routers' time-exceeded quotations
(:mod:`pathspider.client.trace`, :mod:`pathspider.client.hops`). The engine
(:mod:`pathspider.engine.locating`) does the bookkeeping; a plugin says three things, as the
methods of :class:`LocatePlugin` (a mixin, placed before the engine's spider class):

* :meth:`LocatePlugin.locate_effect` ``(conditions, flows)``: ``"dropped"`` (the path loses
  the experiment's packet), ``"changed"`` (it rewrites a field of it) or None (nothing to
  locate: a clean or an offline target is never traced);
* :attr:`LocatePlugin.locate_fields`: the quoted fields compared with what was sent
  (names of :func:`pathspider.client.hops.packet_fields`: ``ecn``, ``dscp``, ``tfo``,
  ``tcp_options``, ``mss``, ``evil``, ``udp_checksum``);
* :meth:`LocatePlugin.locate_probes` ``(job)``: ``{"A": probe, "B": probe}`` (or only
  ``"B"``), :mod:`pathspider.client.packets` probes without addresses or source port.

:func:`path_conditions` turns a trace's ``locate`` object into the conditions of
``--format jobs`` (``<plugin>.path.dropped_at:<hop>`` ...).
"""
import argparse

from pathspider.client import packets

#: ``--locate-max-ttl`` default: the highest TTL / hop limit a trace goes to.
DEFAULT_MAX_TTL = 16
#: ``--locate-timeout`` default: seconds a round of probes waits for its answers.
DEFAULT_TIMEOUT = 1.0
#: ``--locate-workers`` default: traces in flight at once.
DEFAULT_WORKERS = 100
#: Most traces in flight (each holds two reserved ports and a round of probes).
MAX_WORKERS = 1000

#: TCP flags of an ECN-setup SYN (RFC 3168: SYN, ECE, CWR).
ECN_SETUP_FLAGS = 0xC2
#: The IP ECN field's ECT(0) codepoint.
ECT0 = 0x02
#: A TCP Fast Open cookie request (RFC 7413: kind 34, length 2), NOP-padded, after Linux's
#: usual SYN options.
TFO_REQUEST_OPTIONS = packets.LINUX_SYN_OPTIONS + b"\x22\x02\x01\x01"

DROPPED = "dropped"
CHANGED = "changed"
#: The condition suffix that says the experiment's packet is lost where the baseline's passes.
_BROKEN = ".connectivity.broken"


def ttl_count(text):
    """argparse type of ``--locate-max-ttl``: an integer from 1 to 64."""
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be from 1 to 64, got {value}")
    return value


def worker_count(text):
    """argparse type of ``--locate-workers``: 1..:data:`MAX_WORKERS`."""
    value = int(text)
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WORKERS}, got {value}")
    return value


def round_seconds(text):
    """argparse type of ``--locate-timeout``: seconds, more than 0 and at most 30."""
    value = float(text)
    if not 0 < value <= 30:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 30, got {text}")
    return value


def add_locate_options(parser):
    """``--locate`` and its knobs, for a plugin that is a :class:`LocatePlugin`."""
    group = parser.add_argument_group(
        "locating the impairment (docs/plugins/locate.md)")
    group.add_argument("--locate", action="store_true",
                       help="for every target whose result shows a path-dependent effect "
                            "(the experiment fails where the baseline works, or a field "
                            "arrives changed), send the experiment's packet and the "
                            "baseline's with TTL / hop limit 1..N and name the hop that "
                            "drops or rewrites it from the routers' ICMP time-exceeded "
                            "quotations; adds a 'locate' object to that target's records")
    group.add_argument("--locate-max-ttl", type=ttl_count, default=DEFAULT_MAX_TTL,
                       metavar="N", help="highest TTL / hop limit probed, sent in rounds of "
                                         "8 while the path goes on (default %(default)s)")
    group.add_argument("--locate-timeout", type=round_seconds, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS",
                       help="how long a round of probes waits for answers; a round ends "
                            "sooner once every probe is answered or the answers stop "
                            "(default %(default)s)")
    group.add_argument("--locate-workers", type=worker_count, default=DEFAULT_WORKERS,
                       metavar="N", help="traces in flight at once (default %(default)s)")


def broken(conditions):
    """Whether ``conditions`` say the experiment failed where the baseline worked."""
    return any(c.endswith(_BROKEN) for c in conditions or ())


def syn(job, flags=None, tos=0, options=packets.LINUX_SYN_OPTIONS, evil=False):
    """A TCP SYN probe to the job's port (``flags`` None: a plain SYN)."""
    kwargs = {} if flags is None else {"flags": flags}
    return packets.TCPSyn(int(job[1]), options=options, tos=tos, evil=evil, **kwargs)


class LocatePlugin:
    """What a plugin defines to support ``--locate`` (see the module docstring). The
    defaults: the experiment's packet is B, the baseline's A; a dropped experiment
    (``*.connectivity.broken``) is located, nothing else."""

    #: Quoted fields compared with what was sent (the plugin's experiment).
    locate_fields = ()

    def locate_effect(self, conditions, flows):
        """``"dropped"``, ``"changed"`` or None for one job (its conditions and records)."""
        return DROPPED if broken(conditions) else None

    def locate_probes(self, job):
        """``{"A": probe, "B": probe}``: the baseline's and the experiment's packets."""
        raise NotImplementedError


def path_conditions(name, effect, locate):
    """``--format jobs`` conditions of a trace: ``<name>.path.dropped_at:<hop>`` or
    ``<name>.path.changed_at:<hop>`` when the trace names the hop, else
    ``<name>.path.unknown`` (the trace could not tell; ``aborted`` when it was cut short)."""
    if locate.get("aborted"):
        return [f"{name}.path.aborted"]
    key = "dropped_at" if effect == DROPPED else "changed_at"
    hop = locate.get(key)
    if hop is None:
        return [f"{name}.path.unknown"]
    return [f"{name}.path.{key}:{hop}"]
