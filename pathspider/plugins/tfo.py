"""``tfo``: does TCP Fast Open (RFC 7413) work on the path?

Each target gets two connections, back to back (no system-wide switch, so the spider is
desynchronized):

* baseline (configuration 0): a Fast Open connection without a cookie. The SYN carries an
  empty Fast Open option (a cookie request); a server that supports TFO, on a path that lets
  the option through, answers with a cookie in its SYN+ACK, which the kernel caches. ``GET /``
  follows after the handshake.
* experiment (configuration 1): a Fast Open connection with the cookie just obtained. The SYN
  carries the cookie *and* the ``GET /`` request; the server acknowledges the data in its
  SYN+ACK. Skipped (no record) when the baseline failed, as in 1.0.

The Observer records the Fast Open option kind and cookie length on each SYN and SYN+ACK, the
SYN's sequence number and payload length, and the SYN+ACK's acknowledgement number
(:mod:`pathspider.observer.tfo`): data on SYN was accepted when
``tfo_ack == tfo_seq + tfo_dlen + 1``.

The client side of Fast Open must be enabled (bit 1 of ``net.ipv4.tcp_fastopen``); the plugin
sets it if needed and puts the original value back when the run ends.

Differences from PATHspider 1.0 (see ``docs/plugins/tfo.md``): 1.0's baseline was a plain
connection and its experiment made two Fast Open connections (an unmatched cookie request, then
data on SYN); here the cookie request is the baseline, so both connections are in the output.
Every connection has a timeout (1.0's Fast Open connects had none), the skip decision travels in
the per-job ``pcs`` instead of being appended to the job list, jobs need not have four columns,
and results carry the local port also after a failure, ``sip``, ``spdr_state`` and the HTTP
status.
"""
import collections
import logging
import time

from pathspider.client import sysstate
from pathspider.base import NO_RESULT, Conn, DesynchronizedSpider, PluggableSpider
from pathspider.observer import Observer, basic_count, basic_flow  # noqa: F401  (1.0 names)
from pathspider.observer.tcp import (TO_EOL, TO_EXPA, TO_EXPB, TO_FASTOPEN,  # noqa: F401
                                     TO_MPTCP, TO_MSS, TO_NOP, TO_SACK, TO_SACKOK, TO_TS,
                                     TO_WS, TO_EXP_FASTOPEN, _tcpoptions, tcp_complete,
                                     tcp_handshake, tcp_setup)
from pathspider.observer.tfo import (_tfocookie, _tfopacket, _tfosetup,  # noqa: F401
                                     tfo_packet, tfo_setup)
from pathspider.client import tcpclient
from pathspider.client.pluginkit import (DEFAULT_TIMEOUT, EVIDENCE_COLUMNS, add_command,
                                         add_timeout_option, combine_pair, connected,
                                         connection_ok, connectivity, connectivity_columns,
                                         has_condition, merged_record, tcp_observer)
from pathspider.client.locatekit import (CHANGED, TFO_REQUEST_OPTIONS, LocatePlugin,
                                         add_locate_options, broken, syn)
from pathspider.client.tcpclient import job_host, job_rank, utc_now_text

log = logging.getLogger("pathspider.plugins.tfo")

USER_AGENT = tcpclient.USER_AGENT
#: Bit of ``net.ipv4.tcp_fastopen`` that enables Fast Open on outgoing connections.
TFO_CLIENT_ENABLE = 0x1

#: 1.0's record (first nine fields), plus the fields added here.
TFOSpiderRecord = collections.namedtuple(
    "TFOSpiderRecord",
    ["ip", "rport", "port", "host", "config", "c0t", "c1t", "connstate", "rank",
     "spdr_state", "sip", "http_status", "tstart", "tstop"],
    defaults=(None,) * 5)

#: Result fields each record carries (besides the flow's); c0t/c1t are written as 1.0's
#: cookie0_time/cookie1_time.
RESULT_FIELDS = ("connstate", "host", "rank", "config", "c0t", "c1t", "spdr_state",
                 "http_status", "tstart", "tstop")

#: What ``connect`` hands to ``post_connect``: the finished attempt and its HTTP status.
TFOConnection = collections.namedtuple("TFOConnection", ["attempt", "state", "http_status",
                                                         "tstop"])


def conditions(baseline, experiment):
    """Conditions for one target, in the style of 2.0 (proposed for TFO in 1.0's issue #203).

    ``tfo.connectivity.works|broken|transient|offline`` (``skipped`` experiments count as
    failed); ``tfo.cookie.received|not_received`` from the baseline's SYN+ACK; and, as in
    PATHspider's master branch, when the experiment's SYN carried a cookie,
    ``tfo.syndata.acked`` (its SYN+ACK acknowledged the data on the SYN), ``not_acked`` (it
    acknowledged the SYN only) or ``failed`` (no SYN+ACK came back).
    """
    conds = [f'tfo.connectivity.{connectivity(connected(baseline), connected(experiment))}']
    if baseline and baseline.get('observed'):
        got = baseline.get('tfo_ackkind') and baseline.get('tfo_ackclen')
        conds.append('tfo.cookie.received' if got else 'tfo.cookie.not_received')
    if experiment and experiment.get('observed') and experiment.get('tfo_synclen'):
        if not experiment.get('tfo_ack'):
            conds.append('tfo.syndata.failed')
        elif syn_data_acked(experiment):
            conds.append('tfo.syndata.acked')
        else:
            conds.append('tfo.syndata.not_acked')
    if any(rec is not None and not rec.get('observed') for rec in (baseline, experiment)):
        conds.append('pathspider.not_observed')
    return conds


def syn_data_acked(flow):
    """True if the SYN+ACK acknowledged the data carried on the Fast Open SYN."""
    dlen = flow.get('tfo_dlen') or 0
    return bool(dlen) and flow.get('tfo_ack') == (flow.get('tfo_seq', 0) + dlen + 1) % 2**32


#: The columns of ``pathspider summary --plugin tfo``: (header, predicate(conditions,
#: baseline, experiment)).
SUMMARY_COLUMNS = (
    ("baseline ok", connection_ok(0)),
    ("TFO ok", connection_ok(1)),
    *connectivity_columns('works', 'broken', 'offline'),
    ("cookie", has_condition('tfo.cookie.received')),
    ("no cookie", has_condition('tfo.cookie.not_received')),
    ("SYN data acked", has_condition('tfo.syndata.acked')),
    *EVIDENCE_COLUMNS,
)
#: Printed under the summary table.
SUMMARY_LEGEND = ("cookie: the cookie request got a cookie; SYN data acked: the data sent on "
                  "the SYN with that cookie was acknowledged.")


class TFO(LocatePlugin, DesynchronizedSpider, PluggableSpider):
    """TCP Fast Open: cookie request (baseline), then data on SYN with the cookie."""

    command_name = "tfo"
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)
    #: PATHspider 2.0's hook (``--format jobs``): :func:`conditions` of the job's two records
    #: (the experiment is None when it was skipped).
    combine_flows = combine_pair(conditions)

    #: ``--locate``: the quoted TCP options of a cookie-requesting SYN.
    locate_fields = ("tfo",)

    def locate_effect(self, conditions, flows):
        """``changed`` when the baseline connected but no cookie came back (a path that
        strips the option; a server without Fast Open looks the same, and its trace then
        shows the option intact to the last hop); ``dropped`` when a cookie came back but
        the SYN with data failed."""
        baseline = flows[0] if flows else None
        if "tfo.cookie.not_received" in conditions and connected(baseline):
            return CHANGED
        if broken(conditions):
            return "dropped"
        return None

    def locate_probes(self, job):
        """A: a plain SYN; B: a SYN asking for a Fast Open cookie (option 34). The
        experiment's own SYN (cookie and data) cannot be replayed: the cookie is the
        kernel's."""
        return {"A": syn(job), "B": syn(job, options=TFO_REQUEST_OPTIONS)}

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        tcpclient.raise_fd_limit()
        self.system_state = sysstate.SystemState(track=True)
        fastopen = self.system_state.sysctl("net.ipv4.tcp_fastopen")
        value = int(fastopen.original)
        if not value & TFO_CLIENT_ENABLE:
            fastopen.set(value | TFO_CLIENT_ENABLE)
            log.info("enabled client-side TCP Fast Open (net.ipv4.tcp_fastopen=%d) for the run",
                     value | TFO_CLIENT_ENABLE)

    def restore_system_state(self):
        """Put ``net.ipv4.tcp_fastopen`` back to its original value."""
        self.system_state.restore()

    def pre_connect(self, job):
        """Per-job state shared by both connections (the baseline's outcome and timing)."""
        return {"baseline_ok": False, "c0t": None, "c1t": None}

    def connect(self, job, pcs, config):
        """Make one complete Fast Open connection (the experiment needs the baseline's cookie,
        so nothing is left for ``post_connect`` but building the record)."""
        if config == 1 and not pcs["baseline_ok"]:
            return TFOConnection(None, Conn.SKIPPED, None, None)
        request = tcpclient.http_request(job_host(job), job[0])
        attempt = tcpclient.start_connect(job[0], job[1], self.conn_timeout, data=request)
        status = None
        try:
            state = tcpclient.finish_connect(attempt)
            if state == Conn.OK:
                status = tcpclient.http_get(attempt, request, self.conn_timeout)
        finally:
            tcpclient.close(attempt)
        elapsed = round(time.monotonic() - attempt.started, 6)
        if config == 0:
            pcs["baseline_ok"] = state == Conn.OK
            pcs["c0t"] = elapsed
        else:
            pcs["c1t"] = elapsed
        return TFOConnection(attempt, state, status, utc_now_text())

    def post_connect(self, job, conn, pcs, config):
        """The record of one connection; ``NO_RESULT`` for a skipped experiment (as 1.0)."""
        if conn.state == Conn.SKIPPED:
            return NO_RESULT
        attempt = conn.attempt
        return TFOSpiderRecord(job[0], job[1], attempt.port, job_host(job), config, pcs["c0t"],
                               pcs["c1t"], conn.state == Conn.OK, job_rank(job),
                               conn.state.value, attempt.sip, conn.http_status, attempt.tstart,
                               conn.tstop)

    def create_observer(self):
        """Observer with the basic, TCP, TFO and ICMP chains."""
        return tcp_observer(self.libtrace_uri, new_flow=[tfo_setup], tcp=[tfo_packet])

    def merge(self, flow, res):
        """1.0's merge (``cookie0_time``/``cookie1_time``), plus ``sip`` and the new fields."""
        record = merged_record(flow, res, RESULT_FIELDS)
        record["cookie0_time"] = record.pop("c0t")
        record["cookie1_time"] = record.pop("c1t")
        self.outqueue.put(record)

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, TFO, help="TCP Fast Open (RFC 7413): cookie request, then data on SYN",
            description="Connects to every target twice with TCP Fast Open: first asking for "
                        "a cookie, then (if that worked) sending GET / on the SYN with the "
                        "cookie, and records what the SYNs and SYN+ACKs carried.")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        add_locate_options(parser)
        return parser

