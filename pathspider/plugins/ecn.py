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
import logging

from pathspider.client import sysstate
from pathspider.base import PluggableSpider, SynchronizedSpider
from pathspider.observer import Observer, basic_count, basic_flow  # noqa: F401  (1.0 names)
from pathspider.observer.ecn import ecn_code, ecn_setup  # noqa: F401  (1.0 location)
from pathspider.observer.tcp import (TCP_ACK, TCP_CWR, TCP_ECE, TCP_SAE,  # noqa: F401
                                     TCP_SAEC, TCP_SYN, tcp_complete, tcp_handshake, tcp_setup)
from pathspider.client import tcpclient
from pathspider.client.locatekit import (CHANGED, ECN_SETUP_FLAGS, ECT0, LocatePlugin,
                                         add_locate_options, broken, syn)
from pathspider.client.pluginkit import (CONNECTION_FIELDS, DEFAULT_CONNECT, DEFAULT_TIMEOUT,
                                         EVIDENCE_COLUMNS, ConnectionRecord,
                                         ReactorPlugin, add_command, add_connect_option,
                                         add_timeout_option, combine_pair, connected,
                                         connection_ok,
                                         connectivity as connectivity_state,
                                         connectivity_columns, has_condition, tcp_observer)

log = logging.getLogger("pathspider.plugins.ecn")

USER_AGENT = tcpclient.USER_AGENT

#: ``net.ipv4.tcp_ecn`` values: 2 = accept ECN but do not ask for it, 1 = ask for it.
ECN_OFF = 2
ECN_ON = 1

#: 1.0's record (first nine fields), plus the fields added here (the toolkit's record).
SpiderRecord = ConnectionRecord

#: Result fields each record carries (besides the flow's).
RESULT_FIELDS = CONNECTION_FIELDS

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
    ok1 = connected(experiment) and not experiment.get('ecn_fallback')
    return f'ecn.connectivity.{connectivity_state(connected(baseline), ok1)}'


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


def _ecn_ok(conds, baseline, experiment):
    """The experiment connected with its ECN-setup SYN (not only after the kernel's fallback)."""
    return connected(experiment) and 'ecn.fallback.seen' not in conds


def _fallback(conds, baseline, experiment):
    """The experiment connected only after the kernel retried without ECN."""
    return 'ecn.fallback.seen' in conds and connected(experiment)


#: The columns of ``pathspider summary --plugin ecn``: (header, predicate(conditions,
#: baseline, experiment)).
SUMMARY_COLUMNS = (
    ("no ECN ok", connection_ok(0)),
    ("ECN ok", _ecn_ok),
    *connectivity_columns('works', 'broken'),
    ("fallback", _fallback),
    *connectivity_columns('transient', 'offline'),
    ("negotiated", has_condition('ecn.negotiation.succeeded')),
    ("ECT seen", has_condition('ecn.ipmark.ect0.seen', 'ecn.ipmark.ect1.seen')),
    ("CE seen", has_condition('ecn.ipmark.ce.seen')),
    *EVIDENCE_COLUMNS,
)
#: Printed under the summary table.
SUMMARY_LEGEND = (
    "no ECN ok / ECN ok: the connection without / with an ECN-setup SYN worked (a connection "
    "that only worked after the kernel retried without ECN does not count); "
    "works/broken/transient/offline: both / only without / only with / neither; fallback: the "
    "ECN SYN went unanswered and the kernel retried without ECN; negotiated: SYN-ACK with ECE; "
    "ECT/CE seen: marks on packets from the target.")


# ---- the plugin ----------------------------------------------------------------------------------

class ECN(LocatePlugin, ReactorPlugin, SynchronizedSpider, PluggableSpider):
    """A/B test of ECN negotiation: baseline without, experiment with an ECN-setup SYN.

    Connections go through :class:`~pathspider.client.pluginkit.ReactorPlugin` (``connect``
    only sends the SYN, so the kernel takes the ECN decision under the configuration in
    force); this class adds the sysctl switch, the record and the Observer's chains.
    """

    command_name = "ecn"
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)
    #: PATHspider 2.0's hook (``--format jobs``): :func:`conditions` of the job's two records.
    combine_flows = combine_pair(conditions)

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.system_state = sysstate.SystemState(track=True)
        self.tcp_ecn = self.system_state.sysctl("net.ipv4.tcp_ecn")
        if getattr(args, "no_ecn_fallback", False):
            self.system_state.sysctl("net.ipv4.tcp_ecn_fallback").set(0)

    #: ``--locate``: the quoted IP ECN field of the experiment's SYN (sent as ECT(0)).
    locate_fields = ("ecn",)

    def locate_effect(self, conditions, flows):
        """``dropped`` when only the ECN SYN fails (``ecn.connectivity.broken``);
        ``changed`` when ECN was negotiated but no ECT or CE mark came back (bleached)."""
        if broken(conditions):
            return "dropped"
        marks = [f"ecn.ipmark.{m}.not_seen" for m in ("ect0", "ect1", "ce")]
        if "ecn.negotiation.succeeded" in conditions and all(m in conditions for m in marks):
            return CHANGED
        return None

    def locate_probes(self, job):
        """A: a plain SYN; B: an ECN-setup SYN (ECE, CWR) marked ECT(0), so both a middlebox
        that drops ECN SYNs and one that bleaches the IP ECN field show in the quotes."""
        return {"A": syn(job), "B": syn(job, flags=ECN_SETUP_FLAGS, tos=ECT0)}

    def config_zero(self):
        """Baseline: accept ECN but do not ask for it (``net.ipv4.tcp_ecn=2``)."""
        self.tcp_ecn.set(ECN_OFF)

    def config_one(self):
        """Experiment: ask for ECN on outgoing connections (``net.ipv4.tcp_ecn=1``)."""
        self.tcp_ecn.set(ECN_ON)

    def restore_system_state(self):
        """Put ``net.ipv4.tcp_ecn`` (and ``tcp_ecn_fallback``) back to their original values."""
        self.system_state.restore()

    #: What :meth:`merge` copies from the record :meth:`build_record` returns.
    result_fields = RESULT_FIELDS

    def create_observer(self):
        """Observer with the basic, TCP, ECN, ICMP and SYN-evidence chains."""
        return tcp_observer(self.libtrace_uri, new_flow=[ecn_setup, ecn_syn_setup],
                            ip=[ecn_code], tcp=[ecn_syn_track])

    def amend_record(self, record):
        """The fallback evidence (``ecn_fallback``; None when the flow was not observed)."""
        record["ecn_fallback"] = fallback_seen(record) if record["observed"] else None

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, ECN,
            help="Explicit Congestion Notification (RFC 3168): connectivity and "
                 "negotiation with and without an ECN-setup SYN",
            description="Connects to every target twice, without (net.ipv4.tcp_ecn=2) and "
                        "with (=1) asking for ECN, and records whether the connection "
                        "worked, whether ECN was negotiated and which ECN marks came back.")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        add_connect_option(parser, DEFAULT_CONNECT,
                           http_purpose=", so ECN marks on data are seen")
        parser.add_argument("--no-ecn-fallback", action="store_true",
                            help="switch the kernel's ECN fallback off for the run "
                                 "(net.ipv4.tcp_ecn_fallback=0): an ECN SYN that goes "
                                 "unanswered then fails instead of being retried without ECN")
        add_locate_options(parser)
        return parser
