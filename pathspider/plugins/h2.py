"""``h2``: does asking for HTTP/2 break the path, and does the target speak it?

PATHspider 2.0.1's ``h2`` measurement. Each target gets two connections, back to back (no
system-wide switch, so the spider is desynchronized), each one complete ``GET /``:

* baseline (configuration 0): HTTP/1.1 without asking for HTTP/2: a plain request
  (``--connect http``), or TLS offering only ``http/1.1`` in ALPN (``--connect https``);
* experiment (configuration 1): asking for HTTP/2: an h2c upgrade request (``Upgrade: h2c``,
  RFC 7540 section 3.2) over cleartext, or TLS offering ``h2`` and ``http/1.1`` in ALPN.

A connection works when an HTTP response arrived (any status). The experiment's record says
which protocol the response came in (``http_protocol``: ``h2`` after a ``101 Switching
Protocols`` or when ALPN chose ``h2``, else ``http/1.1``). Conditions (2.0.1's):
``h2.connectivity.works|broken|transient|offline`` and, when it works,
``h2.upgrade.success|failed``.

Differences from PATHspider 2.0.1, each documented in ``docs/plugins/h2.md``: no libcurl
(:mod:`pathspider.client.http` and :mod:`pathspider.client.tls`, with hyper-h2 for the
framing); ``--connect https`` really uses TLS (2.0.1 sent cleartext HTTP to port 443) and uses
the job's port as given; the baseline over https offers ``http/1.1`` in ALPN (not nothing),
so the two connections differ only in the ``h2`` offer; results carry the local port also
after a failure, so failed connections keep their flows; no Tor mode.
"""
import collections
import logging

from pathspider.base import Conn, DesynchronizedSpider, PluggableSpider
from pathspider.client import http, tcpclient, tls
from pathspider.client.pluginkit import (DEFAULT_TIMEOUT, EVIDENCE_COLUMNS, add_command,
                                         add_timeout_option, connected, connection_ok,
                                         connectivity, connectivity_columns, has_condition,
                                         merged_record, tcp_observer)
from pathspider.client.tcpclient import job_host, job_rank, utc_now_text

log = logging.getLogger("pathspider.plugins.h2")

#: ``--connect`` modes: cleartext with an h2c upgrade, or TLS with ALPN.
CONNECT_MODES = ("http", "https")

#: One connection's record: 1.0's first nine fields, then what this measurement adds.
H2Record = collections.namedtuple(
    "H2Record",
    ["ip", "rport", "port", "rank", "host", "config", "connstate", "tstart", "tstop",
     "spdr_state", "sip", "http_status", "http_protocol", "tls_alpn", "connect_time",
     "conn_error"])

#: Result fields each record carries (besides the flow's).
RESULT_FIELDS = ("rank", "host", "connstate", "config", "tstart", "tstop", "spdr_state",
                 "http_status", "http_protocol", "tls_alpn", "connect_time", "conn_error")

#: What ``connect`` hands to ``post_connect``: the finished request and its times.
H2Attempt = collections.namedtuple("H2Attempt", ["result", "tstart", "tstop"])


# ---- interpretation (pathspider summary, combine_flows, the tests) -------------------------------

def conditions(baseline, experiment):
    """2.0.1's conditions for one target from its baseline and experiment records.

    ``h2.connectivity.works|broken|transient|offline`` from whether each connection got an
    HTTP response; when it works, ``h2.upgrade.success`` if the experiment's response came
    over HTTP/2, else ``h2.upgrade.failed``; ``pathspider.not_observed`` if a record's flow
    was not observed (2.0.1 did not say).
    """
    state = connectivity(connected(baseline), connected(experiment))
    conds = [f"h2.connectivity.{state}"]
    if state == "works":
        upgraded = experiment.get("http_protocol") == "h2"
        conds.append("h2.upgrade.success" if upgraded else "h2.upgrade.failed")
    if any(rec is not None and not rec.get("observed") for rec in (baseline, experiment)):
        conds.append("pathspider.not_observed")
    return conds


#: The columns of ``pathspider summary --plugin h2``.
SUMMARY_COLUMNS = (
    ("no h2 ok", connection_ok(0)),
    ("h2 asked ok", connection_ok(1)),
    *connectivity_columns("works", "broken", "transient", "offline"),
    ("upgraded", has_condition("h2.upgrade.success")),
    ("not upgraded", has_condition("h2.upgrade.failed")),
    *EVIDENCE_COLUMNS,
)
#: Printed under the summary table.
SUMMARY_LEGEND = (
    "no h2 ok / h2 asked ok: an HTTP response came without / while asking for HTTP/2 (h2c "
    "upgrade, or ALPN h2); works/broken/transient/offline: both / only without / only with / "
    "neither; upgraded: the response to the request asking for HTTP/2 came over HTTP/2; not "
    "upgraded: over HTTP/1.1.")


# ---- the plugin ----------------------------------------------------------------------------------

class H2(DesynchronizedSpider, PluggableSpider):
    """A/B test of HTTP/2: ``GET /`` without, then asking for, HTTP/2 (h2c or ALPN)."""

    command_name = "h2"
    summary_columns = SUMMARY_COLUMNS
    summary_legend = SUMMARY_LEGEND
    conditions = staticmethod(conditions)

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        self.connect_mode = getattr(args, "connect", "http") or "http"
        self.ca_file = getattr(args, "ca_file", None)
        tcpclient.raise_fd_limit()

    def connect(self, job, pcs, config):
        """Nothing yet: the request is made in :meth:`post_connect`, which runs in the
        completer pool. A worker that made the request itself was held for the whole
        exchange — for the timeout, on a path that drops the answer — and with 100 workers
        the run crawled at ~200 jobs/s; the completers (10 per worker) overlap the waits."""
        return config

    def post_connect(self, job, conn, pcs, config):
        """Make one complete request (blocking): configuration 0 without asking for
        HTTP/2, configuration 1 asking for it; return its record."""
        attempt = self._request(job, config)
        res = attempt.result
        return H2Record(job[0], job[1], res.sp, job_rank(job), job_host(job), config,
                        res.state == Conn.OK, attempt.tstart, attempt.tstop, res.state.value,
                        res.sip, res.status, res.protocol, res.alpn, res.connect_time,
                        res.error)

    def _request(self, job, config):
        tstart = utc_now_text()
        ip, port, host = job[0], job[1], job_host(job)
        if self.connect_mode == "https":
            alpn = tls.ALPN_H2 if config else tls.ALPN_HTTP1
            result = tls.https_get(ip, port, host, self.conn_timeout, alpn, self.ca_file)
        else:
            result = http.http_get(ip, port, host, self.conn_timeout, h2c=bool(config))
        return H2Attempt(result, tstart, utc_now_text())

    def create_observer(self):
        """Observer with the basic, TCP and ICMP chains."""
        return tcp_observer(self.libtrace_uri)

    def merge(self, flow, res):
        """1.0's merge with this plugin's result fields."""
        self.outqueue.put(merged_record(flow, res, RESULT_FIELDS))

    def combine_flows(self, flows):
        """PATHspider 2.0's per-job hook: ``flows`` are the job's merged records in
        connection order (baseline, experiment); returns :func:`conditions`."""
        flows = list(flows)
        baseline = flows[0] if flows else None
        experiment = flows[1] if len(flows) > 1 else None
        return conditions(baseline, experiment)

    @staticmethod
    def register_args(subparsers):
        parser = add_command(
            subparsers, H2,
            help="HTTP/2: does asking for it (h2c upgrade, or ALPN h2) break connectivity, "
                 "and is it negotiated",
            description="Sends GET / to every target twice, without and while asking for "
                        "HTTP/2 (an h2c upgrade over http, ALPN h2 over https), and records "
                        "whether each got a response and in which protocol.")
        add_timeout_option(parser, DEFAULT_TIMEOUT)
        parser.add_argument("--connect", choices=CONNECT_MODES, default="http",
                            help="http: cleartext HTTP/1.1, asking to upgrade to h2c "
                                 "(default); https: TLS, offering h2 in ALPN. The job's port "
                                 "is used as given: https targets need port 443 rows")
        parser.add_argument("--ca-file", metavar="FILE",
                            help="https: verify certificates against this CA file (default: "
                                 "no checks; a measurement, not a browser)")
        return parser
