"""``mss``: does the path change the TCP Maximum Segment Size option (RFC 9293, 3.7.1)?

One connection per target (PATHspider 2.0's single-connection model, :class:`SingleSpider`):
the Observer records the MSS option of the client's SYN as it left (``mss_value_fwd``) and of
the SYN+ACK as it arrived (``mss_value_rev``). A middlebox that clamps the MSS (common on
tunnels and PPPoE links) makes the value that comes back smaller than a clean path would; the
conditions compare the two values, as 2.0.1 did.

Connections go through :class:`~pathspider.client.pluginkit.ReactorPlugin` (``connect`` only
starts the connection; the shared reactor finishes it), with ``--connect tcp`` (handshake
only, 2.0.1's default) or ``http`` (``GET /`` after the handshake). Nothing in the system is
changed.

Differences from PATHspider 2.0.1 (see ``docs/plugins/mss.md``): an unobserved connection
adds ``pathspider.not_observed`` to its connectivity (from the connection's own outcome)
instead of replacing every other condition; a malformed MSS option (not two bytes) has no
value and is not compared; the record has the 1.0 shape of the other plugins' (``connstate``,
``spdr_state``, the real local port also after a failure, ``sip``, ``tstart``/``tstop``).
"""
import logging

from pathspider.base import PluggableSpider, SingleSpider
from pathspider.client.pluginkit import (CONNECTION_FIELDS, DEFAULT_TIMEOUT, EVIDENCE_COLUMNS,
                                         ConnectionRecord, ReactorPlugin,
                                         add_command, add_connect_option, add_timeout_option,
                                         connected, has_condition, tcp_observer)
from pathspider.client.locatekit import CHANGED, LocatePlugin, add_locate_options, syn
from pathspider.observer.mss import mss_extract, mss_setup

log = logging.getLogger("pathspider.plugins.mss")

#: ``--connect`` default: the handshake alone carries the MSS options (2.0.1's default).
DEFAULT_CONNECT = "tcp"

#: The result of one connection: the toolkit's record, as the other bundled plugins'.
SpiderRecord = ConnectionRecord

#: Result fields each record carries (besides the flow's).
RESULT_FIELDS = CONNECTION_FIELDS


def received(local, remote):
    """``deflated``, ``unchanged`` or ``inflated``: the MSS that came back against the one
    sent."""
    if remote < local:
        return "deflated"
    return "inflated" if remote > local else "unchanged"


def conditions(record, unused=None):
    """2.0.1's conditions for one target from its record (``unused``: the second argument of
    the two-record plugins, so that ``pathspider summary`` can call every plugin alike).

    ``mss.connectivity.online|offline`` (the handshake was observed; for an unobserved
    connection, whether it connected); when online, ``mss.option.local.value:<n>`` (sent),
    ``mss.option.remote.value:<n>`` and ``mss.option.received.deflated|unchanged|inflated``
    if the SYN+ACK had an MSS option, else ``mss.option.received.absent``;
    ``pathspider.not_observed`` if no flow was captured.
    """
    if not record:
        return []
    observed = bool(record.get('observed'))
    online = record.get('tcp_connected') if observed else connected(record)
    conds = [f"mss.connectivity.{'online' if online else 'offline'}"]
    if observed and online:
        local, remote = record.get('mss_value_fwd'), record.get('mss_value_rev')
        if local is not None:
            conds.append(f'mss.option.local.value:{local}')
        if remote is None:
            conds.append('mss.option.received.absent')
        else:
            conds.append(f'mss.option.remote.value:{remote}')
            if local is not None:
                conds.append(f'mss.option.received.{received(local, remote)}')
    if not observed:
        conds.append('pathspider.not_observed')
    return conds


def combine_flows(flows):
    """PATHspider 2.0's hook (``--format jobs``): :func:`conditions` of the job's one record."""
    return conditions(flows[0] if flows else None)


def _remote_value(value):
    """Column predicate: the MSS that came back was ``value``."""
    return has_condition(f'mss.option.remote.value:{value}')


#: The columns of ``pathspider summary --plugin mss``: (header, predicate(conditions,
#: record, None)).
SUMMARY_COLUMNS = (
    ("online", has_condition('mss.connectivity.online')),
    ("offline", has_condition('mss.connectivity.offline')),
    ("unchanged", has_condition('mss.option.received.unchanged')),
    ("deflated", has_condition('mss.option.received.deflated')),
    ("inflated", has_condition('mss.option.received.inflated')),
    ("absent", has_condition('mss.option.received.absent')),
    ("536 back", _remote_value(536)),
    *EVIDENCE_COLUMNS,
)
#: Printed under the summary table.
SUMMARY_LEGEND = ("online/offline: the handshake was seen / not; unchanged/deflated/inflated: "
                  "the SYN+ACK's MSS option against the one the SYN left with; absent: the "
                  "SYN+ACK had none; 536 back: the SYN+ACK's MSS was 536 (the lab's "
                  "mss-rewrite class).")


class MSS(LocatePlugin, ReactorPlugin, SingleSpider, PluggableSpider):
    """One connection per target; the Observer compares the MSS options sent and received."""

    command_name = "mss"
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)
    combine_flows = staticmethod(combine_flows)

    #: ``--locate``: the quoted MSS option of the SYN.
    locate_fields = ("mss",)
    #: Conditions that say the MSS came back other than it left.
    locate_when = ('mss.option.received.deflated', 'mss.option.received.inflated',
                   'mss.option.received.absent')

    def locate_effect(self, conditions, flows):
        """``changed`` when the SYN+ACK's MSS differs from the SYN's, or is missing."""
        return CHANGED if any(c in conditions for c in self.locate_when) else None

    def locate_probes(self, job):
        """One connection, so no control: B is a SYN with Linux's options (MSS 1460)."""
        return {"B": syn(job)}
    default_connect = DEFAULT_CONNECT
    #: What :meth:`merge` copies from the record :meth:`build_record` returns.
    result_fields = RESULT_FIELDS

    def create_observer(self):
        """Observer with the basic, TCP, MSS and ICMP chains."""
        return tcp_observer(self.libtrace_uri, new_flow=[mss_setup], tcp=[mss_extract])

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, MSS,
            help="TCP Maximum Segment Size: is the MSS option changed on the path",
            description="Connects to every target once and records the MSS option of the "
                        "SYN as it left and of the SYN+ACK as it came back.")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        add_connect_option(parser, DEFAULT_CONNECT)
        add_locate_options(parser)
        return parser
