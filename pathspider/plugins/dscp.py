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
from pathspider.observer import Observer, basic_count, basic_flow
from pathspider.observer.dscp import dscp_extract, dscp_setup  # noqa: F401  (1.0 location)
from pathspider.observer.icmp import icmp6_unreachable, icmp_setup, icmp_unreachable
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup
from pathspider.client import reactor, tcpclient
from pathspider.client.pluginkit import add_timeout_option, merged_record
from pathspider.client.tcpclient import job_host, job_rank, utc_now_text

log = logging.getLogger("pathspider.plugins.dscp")

DEFAULT_CODEPOINT = 48
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT = "http"

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

    ``<cp>`` is the codepoint the experiment's SYN (or first data packet) carried as captured
    when it left; the reply marks are the reverse SYN's codepoint (or the first reverse data
    codepoint). Unobserved flows add ``pathspider.not_observed`` instead of hiding the rest.
    """
    def mark(rec, direction):
        if not rec or not rec.get('observed'):
            return None
        syn = rec.get(f'{direction}_syn_dscp')
        return syn if syn else rec.get(f'{direction}_data_dscp', syn)

    ok0 = bool(baseline and baseline.get('connstate'))
    ok1 = bool(experiment and experiment.get('connstate'))
    state = {(True, True): 'works', (True, False): 'broken', (False, True): 'transient',
             (False, False): 'offline'}[(ok0, ok1)]
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


class DSCP(SynchronizedSpider, PluggableSpider):
    """A/B test of DiffServ marking: baseline unmarked, experiment marked with a codepoint."""

    #: post_connect only waits for the reactor, which finishes every connection by itself.
    post_connect_overlaps = True

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        self.connect_mode = getattr(args, "connect", DEFAULT_CONNECT) or DEFAULT_CONNECT
        codepoint = getattr(args, "codepoint", DEFAULT_CODEPOINT)
        self.codepoint = DEFAULT_CODEPOINT if codepoint is None else codepoint
        self.dscp = self.codepoint  # 1.0 attribute name
        tcpclient.raise_fd_limit()
        self.system_state = sysstate.SystemState(track=True)
        self.table = self.system_state.nft_table(TABLE, table_definition(self.codepoint))
        self._marking = None

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

    def connect(self, job, pcs, config):
        """Send the SYN (non-blocking); conntrack remembers the configuration it left in."""
        request = None
        if self.connect_mode == "http":
            request = tcpclient.http_request(job_host(job), job[0])
        return reactor.shared().start(job[0], job[1], self.conn_timeout, request)

    def post_connect(self, job, conn, pcs, config):
        """Wait until the reactor has finished the connection (handshake, HTTP exchange if
        asked, close), then build the record."""
        conn.wait()
        attempt, status = conn.attempt, conn.http_status
        state = attempt.state or Conn.TIMEOUT
        return SpiderRecord(job[0], job[1], attempt.port, job_host(job), config,
                            state == Conn.OK, job_rank(job), attempt.tstart, utc_now_text(),
                            state.value, attempt.sip, status, self.codepoint if config else 0)

    def create_observer(self):
        """Observer with the basic, TCP, DSCP and ICMP chains."""
        return Observer(self.libtrace_uri,
                        new_flow_chain=[basic_flow, tcp_setup, dscp_setup, icmp_setup],
                        ip4_chain=[basic_count, dscp_extract],
                        ip6_chain=[basic_count, dscp_extract],
                        icmp4_chain=[icmp_unreachable],
                        icmp6_chain=[icmp6_unreachable],
                        tcp_chain=[tcp_handshake, tcp_complete])

    def merge(self, flow, res):
        """1.0's merge, plus ``sip``, ``rank``, times and the codepoint applied."""
        self.outqueue.put(merged_record(flow, res, RESULT_FIELDS))

    @staticmethod
    def register_args(subparsers):
        parser = subparsers.add_parser(
            "dscp", help="DiffServ codepoints (RFC 2474): connectivity with a marked "
                         "connection, and the marks that come back",
            description="Connects to every target twice, unmarked and with every packet "
                        "marked with --codepoint (through the plugin's own nftables table "
                        "inet pathspider_dscp), and records the codepoints seen both ways.")
        parser.add_argument("--codepoint", "-c", type=_codepoint, default=DEFAULT_CODEPOINT,
                            help="DSCP value 0-63 for the experiment (default %(default)s, "
                                 "CS6; 46 is EF)")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        parser.add_argument("--connect", choices=["http", "tcp"], default=DEFAULT_CONNECT,
                            help="http: send GET / and read the reply (default); tcp: "
                                 "handshake only, as 1.0")
        parser.set_defaults(spider=DSCP)
        return parser


def _codepoint(text):
    value = int(text, 0)
    if not 0 <= value <= 63:
        raise ValueError(text)
    return value

