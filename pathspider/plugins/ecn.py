"""``ecn``: does asking for Explicit Congestion Notification (RFC 3168) break the path?

Each target gets two connections: the baseline (configuration 0, ``net.ipv4.tcp_ecn=2``: do
not ask for ECN) and the experiment (configuration 1, ``net.ipv4.tcp_ecn=1``: send an ECN-setup
SYN with ECE and CWR). The Observer records the TCP flags of the handshake (was ECN
negotiated?), the IP ECN codepoints seen in each direction (did ECT marks survive the path?),
ICMP unreachables, and how many SYNs were sent with which flags.

Differences from PATHspider 1.0, each documented in ``docs/plugins/ecn.md``:

* ``--connect http`` (the default) sends ``GET /`` and reads the reply: only data segments carry
  ECT marks, so with 1.0's bare handshake (``--connect tcp``) the mark fields stay empty.
* Since Linux 4.1 the kernel retries an unanswered ECN-setup SYN without ECE/CWR
  (``net.ipv4.tcp_ecn_fallback``), so a path that drops ECN SYNs looks like "connects, ECN not
  negotiated". The Observer now records the first forward SYN's flags and the number of forward
  SYNs, and every record says whether the fallback was used (``ecn_fallback``). With
  ``--no-ecn-fallback`` the kernel's fallback is switched off for the run and such paths fail.
* The connection is split: ``connect`` only sends the SYN (non-blocking, while the
  configuration is in force); ``post_connect`` waits for the handshake and the reply outside the
  lock-step, so a silent target does not hold the configuration for its whole timeout.
* Results carry the real local port on success, refusal and timeout, the local address
  (``sip``, also on unobserved records), the connection state in full (``spdr_state``), the
  HTTP status and the time the handshake took.
* Changed sysctls are put back when the run ends, however it ends (see
  :mod:`pathspider.client.sysstate`).
"""
import collections
import logging

from pathspider.client import sysstate
from pathspider.base import Conn, PluggableSpider, SynchronizedSpider
from pathspider.observer import Observer, basic_count, basic_flow
from pathspider.observer.ecn import ecn_code, ecn_setup  # noqa: F401  (1.0 location)
from pathspider.observer.icmp import icmp6_unreachable, icmp_setup, icmp_unreachable
from pathspider.observer.tcp import (TCP_ACK, TCP_CWR, TCP_ECE, TCP_SAE, TCP_SAEC, TCP_SYN,
                                     tcp_complete, tcp_handshake, tcp_setup)
from pathspider.client import reactor, tcpclient
from pathspider.client.pluginkit import add_timeout_option, merged_record
from pathspider.client.tcpclient import job_host, job_rank, utc_now_text

log = logging.getLogger("pathspider.plugins.ecn")

USER_AGENT = tcpclient.USER_AGENT

#: ``net.ipv4.tcp_ecn`` values: 2 = accept ECN but do not ask for it, 1 = ask for it.
ECN_OFF = 2
ECN_ON = 1

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT = "http"

#: 1.0's record (first nine fields), plus the fields added here.
SpiderRecord = collections.namedtuple(
    "SpiderRecord",
    ["ip", "rport", "port", "rank", "host", "config", "connstate", "tstart", "tstop",
     "spdr_state", "sip", "http_status", "connect_time"],
    defaults=(None, None, None, None))

#: Result fields each record carries (besides the flow's).
RESULT_FIELDS = ("rank", "host", "connstate", "config", "tstart", "tstop", "spdr_state",
                 "http_status", "connect_time")

_ECN_SETUP = TCP_ECE | TCP_CWR


# ---- chain functions: evidence of the kernel's ECN fallback ------------------------------------

def ecn_syn_setup(rec, ip):
    """new_flow: ``fwd_syn_first_flags`` (None) and ``fwd_syn_count`` (0); never vetoes."""
    rec['fwd_syn_first_flags'] = None
    rec['fwd_syn_count'] = 0
    return True


def ecn_syn_track(rec, tcp, rev):
    """tcp: flags of the first forward SYN, and how many forward SYNs were sent."""
    if not rev:
        flags = tcp.flags
        if flags & TCP_SYN and not flags & TCP_ACK:
            if not rec['fwd_syn_count']:
                rec['fwd_syn_first_flags'] = flags
            rec['fwd_syn_count'] += 1
    return True


def fallback_seen(flow):
    """True if the flow's first SYN asked for ECN and a later one did not (kernel fallback)."""
    first = flow.get('fwd_syn_first_flags')
    last = flow.get('fwd_syn_flags')
    return (first is not None and last is not None and first & _ECN_SETUP == _ECN_SETUP
            and not last & _ECN_SETUP and flow.get('fwd_syn_count', 0) > 1)


# ---- interpretation (used by pathspider.cli.summary and the tests) ----------------------------

def connectivity(baseline, experiment):
    """2.0's connectivity condition from the two records' ``connstate``.

    A path on which the experiment only connected through the kernel's fallback is ``broken``:
    the ECN-setup SYN was lost and the connection succeeded only without ECN.
    """
    ok0 = bool(baseline and baseline.get('connstate'))
    ok1 = bool(experiment and experiment.get('connstate'))
    if ok1 and experiment.get('ecn_fallback'):
        ok1 = False
    if ok0 and ok1:
        return 'ecn.connectivity.works'
    if ok0:
        return 'ecn.connectivity.broken'
    if ok1:
        return 'ecn.connectivity.transient'
    return 'ecn.connectivity.offline'


def conditions(baseline, experiment):
    """2.0-style conditions for one target from its baseline and experiment records.

    ``ecn.connectivity.*`` (see :func:`connectivity`); ``ecn.fallback.seen`` when the kernel
    retried the experiment's SYN without ECN; when the experiment's flow was observed and
    connected, ``ecn.negotiation.succeeded|reflected|failed`` and
    ``ecn.ipmark.{ect0,ect1,ce}.seen|not_seen`` for the marks received from the target;
    ``pathspider.not_observed`` if either flow was not observed.
    """
    conds = [connectivity(baseline, experiment)]
    if experiment and experiment.get('ecn_fallback'):
        conds.append('ecn.fallback.seen')
    if any(rec is not None and not rec.get('observed') for rec in (baseline, experiment)):
        conds.append('pathspider.not_observed')
    if experiment and experiment.get('observed') and experiment.get('tcp_connected'):
        flags = (experiment.get('rev_syn_flags') or 0) & TCP_SAEC
        if flags == TCP_SAE:
            conds.append('ecn.negotiation.succeeded')
        elif flags == TCP_SAEC:
            conds.append('ecn.negotiation.reflected')
        else:
            conds.append('ecn.negotiation.failed')
        for name, field in (('ect0', 'rev_ez'), ('ect1', 'rev_eo'), ('ce', 'rev_ce')):
            seen = 'seen' if experiment.get(field) else 'not_seen'
            conds.append(f'ecn.ipmark.{name}.{seen}')
    return conds


# ---- the plugin ----------------------------------------------------------------------------------

class ECN(SynchronizedSpider, PluggableSpider):
    """A/B test of ECN negotiation: baseline without, experiment with an ECN-setup SYN."""

    #: post_connect only waits for the reactor, which finishes every connection by itself.
    post_connect_overlaps = True

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        self.connect_mode = getattr(args, "connect", DEFAULT_CONNECT) or DEFAULT_CONNECT
        tcpclient.raise_fd_limit()
        self.system_state = sysstate.SystemState(track=True)
        self.tcp_ecn = self.system_state.sysctl("net.ipv4.tcp_ecn")
        if getattr(args, "no_ecn_fallback", False):
            self.system_state.sysctl("net.ipv4.tcp_ecn_fallback").set(0)

    def config_zero(self):
        """Baseline: accept ECN but do not ask for it (``net.ipv4.tcp_ecn=2``)."""
        self.tcp_ecn.set(ECN_OFF)

    def config_one(self):
        """Experiment: ask for ECN on outgoing connections (``net.ipv4.tcp_ecn=1``)."""
        self.tcp_ecn.set(ECN_ON)

    def restore_system_state(self):
        """Put ``net.ipv4.tcp_ecn`` (and ``tcp_ecn_fallback``) back to their original values."""
        self.system_state.restore()

    def connect(self, job, pcs, config):
        """Send the SYN (non-blocking); the ECN decision is taken by the kernel right here."""
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
        return SpiderRecord(job[0], job[1], attempt.port, job_rank(job), job_host(job), config,
                            state == Conn.OK, attempt.tstart, utc_now_text(), state.value,
                            attempt.sip, status, round(attempt.connect_time or 0.0, 6))

    def create_observer(self):
        """Observer with the basic, TCP, ECN, ICMP and SYN-evidence chains."""
        return Observer(self.libtrace_uri,
                        new_flow_chain=[basic_flow, tcp_setup, ecn_setup, ecn_syn_setup,
                                        icmp_setup],
                        ip4_chain=[basic_count, ecn_code],
                        ip6_chain=[basic_count, ecn_code],
                        icmp4_chain=[icmp_unreachable],
                        icmp6_chain=[icmp6_unreachable],
                        tcp_chain=[ecn_syn_track, tcp_handshake, tcp_complete])

    def merge(self, flow, res):
        """1.0's merge, plus ``sip`` on unobserved records and the fallback evidence."""
        record = merged_record(flow, res, RESULT_FIELDS)
        record["ecn_fallback"] = fallback_seen(record) if record["observed"] else None
        self.outqueue.put(record)

    @staticmethod
    def register_args(subparsers):
        parser = subparsers.add_parser(
            "ecn", help="Explicit Congestion Notification (RFC 3168): connectivity and "
                        "negotiation with and without an ECN-setup SYN",
            description="Connects to every target twice, without (net.ipv4.tcp_ecn=2) and "
                        "with (=1) asking for ECN, and records whether the connection "
                        "worked, whether ECN was negotiated and which ECN marks came back.")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        parser.add_argument("--connect", choices=["http", "tcp"], default=DEFAULT_CONNECT,
                            help="http: send GET / and read the reply, so ECN marks on data "
                                 "are seen (default); tcp: handshake only, as 1.0")
        parser.add_argument("--no-ecn-fallback", action="store_true",
                            help="switch the kernel's ECN fallback off for the run "
                                 "(net.ipv4.tcp_ecn_fallback=0): an ECN SYN that goes "
                                 "unanswered then fails instead of being retried without ECN")
        parser.set_defaults(spider=ECN)
        return parser

