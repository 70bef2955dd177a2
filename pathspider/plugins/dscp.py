"""``dscp``: does a non-zero DiffServ codepoint (RFC 2474) break the path, and what comes back?

Each target gets two connections: the baseline (configuration 0) unmarked, the experiment
(configuration 1) with every packet marked with ``--codepoint``. The Observer records the
codepoints of the SYNs and of the first data packets in both directions, so the output shows
what was sent and what the target (or the path) sent back.

How the marking works: the plugin creates its own nftables table, ``inet pathspider_dscp``,
and nothing else. The first packet of every new connection (conntrack entry) jumps to the
``toggle`` chain, which records the configuration in force in the connection's conntrack mark:
bit :data:`CT_SEEN` always, bit :data:`CT_MARK` in configuration 1. Every outgoing IPv4 and IPv6
packet of a connection with :data:`CT_MARK` gets the codepoint. A configuration switch replaces
the one rule of ``toggle`` (one atomic ``nft`` transaction). So every packet of a connection
opened during configuration 1 is marked for the connection's whole life (SYN, retransmissions,
the HTTP request, ACKs, FIN), even when configuration 0 is back in force by then, and no packet
of a baseline connection is, not even a SYN retransmitted while configuration 1 is in force.
The table is deleted when the run ends, however it ends.

Differences from PATHspider 1.0 (see ``docs/plugins/dscp.md``):

* 1.0 flushed the whole ``mangle`` table (deleting unrelated rules) and marked only TCP to port
  80; here only the plugin's own table is touched, and all outgoing traffic of the experiment's
  connections is marked, IPv4 and IPv6, any port.
* ``--codepoint`` (default 48, CS6, as 2.0.1), ``--timeout`` and ``--connect http|tcp``
  (http by default, so that data packets, and their reply marks, exist).
* The connection is split like the ECN plugin's: ``connect`` only sends the SYN.
"""
import collections
import logging

from pathspider.client import sysstate
from pathspider.base import Conn, PluggableSpider, SynchronizedSpider
from pathspider.observer import Observer, basic_count, basic_flow  # noqa: F401  (1.0 names)
from pathspider.observer.dscp import dscp_extract, dscp_setup  # noqa: F401  (1.0 location)
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup  # noqa: F401
from pathspider.client.pluginkit import (DEFAULT_CONNECT, DEFAULT_TIMEOUT, EVIDENCE_COLUMNS,
                                         ReactorPlugin, add_command, add_connect_option,
                                         add_timeout_option, combine_pair, connected,
                                         connection_ok, connectivity, connectivity_columns,
                                         tcp_observer)
from pathspider.client.locatekit import CHANGED, LocatePlugin, add_locate_options, broken, syn
from pathspider.client.tcpclient import job_host, job_rank, utc_now_text

log = logging.getLogger("pathspider.plugins.dscp")

DEFAULT_CODEPOINT = 48

TABLE = "pathspider_dscp"
#: Conntrack mark bit: the connection was opened during configuration 1, mark its packets.
CT_MARK = 0x00400000
#: Conntrack mark bit: the configuration of the connection has been recorded.
CT_SEEN = 0x00800000

#: 1.0's record (first six fields), plus the fields added here.
SpiderRecord = collections.namedtuple(
    "SpiderRecord",
    ["ip", "rport", "port", "host", "config", "connstate",
     "rank", "tstart", "tstop", "spdr_state", "sip", "http_status", "codepoint"],
    defaults=(None,) * 7)

#: Result fields each record carries (besides the flow's).
RESULT_FIELDS = ("connstate", "config", "host", "rank", "tstart", "tstop", "spdr_state",
                 "http_status", "codepoint")


def table_definition(codepoint):
    """Chains of the plugin's table (see the module docstring); ``toggle`` starts empty and
    gets its rule from the first configuration applied."""
    return (
        "chain output {\n"
        "  type filter hook output priority mangle; policy accept;\n"
        f"  ct mark and {CT_SEEN:#x} == 0 jump toggle\n"
        f"  ct mark and {CT_MARK:#x} == {CT_MARK:#x} ip dscp set {codepoint}\n"
        f"  ct mark and {CT_MARK:#x} == {CT_MARK:#x} ip6 dscp set {codepoint}\n"
        "}\n"
        "chain toggle {\n"
        "}")


def toggle_script(on):
    """nft commands (one transaction) recording configuration 1 (``on``) or 0 in the conntrack
    mark of connections opened from now on."""
    bits = CT_SEEN | (CT_MARK if on else 0)
    return (f"flush chain inet {TABLE} toggle\n"
            f"add rule inet {TABLE} toggle ct mark set ct mark or {bits:#x}\n")


def conditions(baseline, experiment):
    """2.0-style conditions: ``dscp.<cp>.connectivity.*`` and ``dscp.<cp>.replymark:<n>``.

    ``<cp>`` is the codepoint the experiment's SYN (or, if that was 0 or not seen, its first
    marked data packet) carried as captured when it left; the reply marks are the reverse
    SYN's codepoint (or the first marked reverse data packet's). A baseline whose packets were
    all unmarked reads 0, never ``None`` (2.0.1 wrote ``dscp.None.replymark:0``, its issue
    #214). Unobserved flows add ``pathspider.not_observed`` instead of hiding the rest.
    """
    def mark(rec, direction):
        if not rec or not rec.get('observed'):
            return None
        syn = rec.get(f'{direction}_syn_dscp')
        data = rec.get(f'{direction}_data_dscp')
        return syn if syn or data is None else data

    state = connectivity(connected(baseline), connected(experiment))
    sent = mark(experiment, 'fwd')
    if sent is None and experiment:
        sent = experiment.get('codepoint')
    conds = [f'dscp.{sent}.connectivity.{state}']
    for rec in (baseline, experiment):
        reply = mark(rec, 'rev')
        if reply is not None:
            conds.append(f'dscp.{mark(rec, "fwd")}.replymark:{reply}')
    if any(rec is not None and not rec.get('observed') for rec in (baseline, experiment)):
        conds.append('pathspider.not_observed')
    return conds


def _mark_sent(conds, baseline, experiment):
    """The experiment's SYN left with the codepoint applied."""
    return bool(experiment and experiment.get('observed')
                and experiment.get('fwd_syn_dscp') == experiment.get('codepoint'))


def _mark_back(conds, baseline, experiment):
    """The target's SYN-ACK to the experiment carried the (non-zero) codepoint."""
    return bool(experiment and experiment.get('observed') and experiment.get('rev_syn_dscp')
                and experiment.get('rev_syn_dscp') == experiment.get('codepoint'))


def _zero_back(conds, baseline, experiment):
    """The target's SYN-ACK to the experiment carried codepoint 0."""
    return bool(experiment and experiment.get('observed')
                and experiment.get('rev_syn_dscp') == 0)


#: The columns of ``pathspider summary --plugin dscp``: (header, predicate(conditions,
#: baseline, experiment)).
SUMMARY_COLUMNS = (
    ("unmarked ok", connection_ok(0)),
    ("marked ok", connection_ok(1)),
    *connectivity_columns('works', 'broken', 'offline'),
    ("mark sent", _mark_sent),
    ("mark back", _mark_back),
    ("0 back", _zero_back),
    *EVIDENCE_COLUMNS,
)
#: Printed under the summary table.
SUMMARY_LEGEND = ("mark sent: the experiment's SYN left with the codepoint; mark back / 0 back: "
                  "the target's SYN-ACK carried the codepoint / 0.")


class DSCP(LocatePlugin, ReactorPlugin, SynchronizedSpider, PluggableSpider):
    """A/B test of DiffServ marking: baseline unmarked, experiment marked with a codepoint.

    Connections go through :class:`~pathspider.client.pluginkit.ReactorPlugin` (``connect``
    only sends the SYN; conntrack remembers the configuration it left in); this class adds the
    nftables marking, the record and the Observer's chains.
    """

    command_name = "dscp"
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)
    #: PATHspider 2.0's hook (``--format jobs``): :func:`conditions` of the job's two records.
    combine_flows = combine_pair(conditions)

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        codepoint = getattr(args, "codepoint", DEFAULT_CODEPOINT)
        self.codepoint = DEFAULT_CODEPOINT if codepoint is None else codepoint
        self.dscp = self.codepoint  # 1.0 attribute name
        self.system_state = sysstate.SystemState(track=True)
        self.table = self.system_state.nft_table(TABLE, table_definition(self.codepoint))
        self._marking = None

    #: ``--locate``: the quoted DSCP of the experiment's SYN.
    locate_fields = ("dscp",)

    def locate_effect(self, conditions, flows):
        """``dropped`` when only the marked connection fails; ``changed`` when the target's
        SYN-ACK to the experiment reflects another codepoint than the one sent (the lab's
        servers reflect what arrives, ``tcp_reflect_tos``)."""
        if broken(conditions):
            return "dropped"
        experiment = flows[1] if len(flows) > 1 else None
        if experiment and experiment.get("observed") and experiment.get("tcp_connected") \
                and experiment.get("rev_syn_dscp") not in (None, self.codepoint):
            return CHANGED
        return None

    def locate_probes(self, job):
        """A: an unmarked SYN; B: a SYN marked with ``--codepoint``."""
        return {"A": syn(job), "B": syn(job, tos=self.codepoint << 2)}

    def _mark_new_connections(self, on):
        if self._marking is not on:
            self.table.apply(toggle_script(on))
            self._marking = on

    def config_zero(self):
        """Baseline: new connections are not marked."""
        self._mark_new_connections(False)

    def config_one(self):
        """Experiment: every packet of connections opened now carries the codepoint."""
        self._mark_new_connections(True)

    def restore_system_state(self):
        """Delete the plugin's nftables table."""
        self.system_state.restore()

    #: What :meth:`merge` copies from the record :meth:`build_record` returns.
    result_fields = RESULT_FIELDS

    def build_record(self, job, config, attempt, state, http_status):
        """1.0's record, plus ``rank``, times, the state in full, ``sip``, HTTP status and the
        codepoint applied (0 for the baseline)."""
        return SpiderRecord(job[0], job[1], attempt.port, job_host(job), config,
                            state == Conn.OK, job_rank(job), attempt.tstart, utc_now_text(),
                            state.value, attempt.sip, http_status, self.codepoint if config else 0)

    def create_observer(self):
        """Observer with the basic, TCP, DSCP and ICMP chains."""
        return tcp_observer(self.libtrace_uri, new_flow=[dscp_setup], ip=[dscp_extract])

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, DSCP,
            help="DiffServ codepoints (RFC 2474): connectivity with a marked "
                 "connection, and the marks that come back",
            description="Connects to every target twice, unmarked and with every packet "
                        "marked with --codepoint (through the plugin's own nftables table "
                        "inet pathspider_dscp), and records the codepoints seen both ways.")
        parser.add_argument("--codepoint", "-c", type=_codepoint, default=DEFAULT_CODEPOINT,
                            help="DSCP value 0-63 for the experiment (default %(default)s, "
                                 "CS6; 46 is EF)")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        add_connect_option(parser, DEFAULT_CONNECT)
        add_locate_options(parser)
        return parser


def _codepoint(text):
    value = int(text, 0)
    if not 0 <= value <= 63:
        raise ValueError(text)
    return value

