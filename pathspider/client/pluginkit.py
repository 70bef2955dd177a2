"""Pieces the bundled plugins share, so each plugin module holds only its measurement.

Records and options:

* :func:`merged_record`: 1.0's merge skeleton (the observed flow marked ``observed``, or a
  minimal record for a result no flow matched) plus the result fields a plugin names.
* :func:`add_command`: the plugin's sub-command (named by its ``command_name``);
  :func:`add_timeout_option`, :func:`add_connect_option`: the ``--timeout`` and
  ``--connect http|tcp`` options of the TCP-based plugins.

Connecting and observing:

* :class:`ReactorPlugin`: the connect/post_connect/merge half of a plugin whose connections
  the shared :mod:`~pathspider.client.reactor` finishes (``ecn``, ``dscp``); the plugin adds
  its configurations, its record (:meth:`ReactorPlugin.build_record`) and its Observer.
* :func:`tcp_observer`: an Observer with the basic, TCP and ICMP chains around the plugin's
  own chain functions (``ecn``, ``dscp``, ``tfo``).

Interpreting results (the plugins' ``conditions`` functions and summary columns, which
``pathspider summary`` asks the plugin classes for):

* :func:`connected` and :func:`connectivity`: the ``works|broken|transient|offline`` table
  from whether the baseline and the experiment connected.
* :func:`has_condition`, :func:`connection_ok`, :func:`icmp_unreachable_seen`: predicates for
  a plugin's ``summary_columns``; :func:`connectivity_columns` and :data:`EVIDENCE_COLUMNS`:
  columns every bundled plugin's summary has.

A plugin that wants a summary declares, as class attributes, ``command_name`` (its
sub-command, ``pathspider summary --plugin NAME``), ``summary_columns`` (a sequence of
``(header, predicate(conditions, baseline, experiment))``), ``summary_legend`` (one paragraph
printed under the table) and ``conditions`` (a staticmethod: ``(baseline, experiment)`` records,
either possibly ``None``, to a list of 2.0-style condition strings); ``combine_flows =
combine_pair(conditions)`` gives the same interpretation to ``--format jobs``.

This module is part of the client: it uses the Observer's chain library but never the engine,
so :class:`ReactorPlugin` is a mixin placed before the engine's spider class, not a subclass.
"""

import argparse
import collections
import functools
import math
import operator

from pathspider.client import reactor, tcpclient
from pathspider.client.tcpclient import job_host, job_rank
from pathspider.constants import NO_FLOW, Conn
from pathspider.observer import Observer, basic_count, basic_flow
from pathspider.observer.icmp import icmp6_unreachable, icmp_setup, icmp_unreachable
from pathspider.observer.tcp import tcp_complete, tcp_handshake, tcp_setup

#: Seconds to wait for a connection (and again for the HTTP reply) unless ``--timeout`` says.
DEFAULT_TIMEOUT = 5.0
#: ``--connect`` default: send ``GET /`` after the handshake, so that data packets exist.
DEFAULT_CONNECT = "http"


# ---- records and options -------------------------------------------------------------------------

#: The record of one connection made through :class:`ReactorPlugin`: 1.0's record (first nine
#: fields), plus the state in full, the local address, the HTTP status and the handshake time.
ConnectionRecord = collections.namedtuple(
    "ConnectionRecord",
    ["ip", "rport", "port", "rank", "host", "config", "connstate", "tstart", "tstop",
     "spdr_state", "sip", "http_status", "connect_time"],
    defaults=(None, None, None, None))

#: The :data:`ConnectionRecord` fields each merged record carries (besides the flow's).
CONNECTION_FIELDS = ("rank", "host", "connstate", "config", "tstart", "tstop", "spdr_state",
                     "http_status", "connect_time")


def merged_record(flow, res, fields):
    """The record for ``flow`` (or ``NO_FLOW``) and ``res``, with ``res``'s ``fields`` copied.

    An unobserved record still names both ends (``sip``, ``dip``) and both ports (``sp``,
    ``dp``), which 1.0 left out (its issue 96).
    """
    if flow is NO_FLOW:
        record = {"sip": res.sip, "dip": res.ip, "sp": res.port, "dp": res.rport,
                  "observed": False}
    else:
        record = flow
        record["observed"] = True
    if type(fields) is tuple and len(fields) > 1:
        getter = _FIELD_GETTERS.get(fields)
        if getter is None:
            getter = _FIELD_GETTERS[fields] = operator.attrgetter(*fields)
        record.update(zip(fields, getter(res)))
    else:
        for name in fields:
            record[name] = getattr(res, name)
    return record


#: ``operator.attrgetter`` for each tuple of result fields (one C call per record instead of
#: a ``getattr`` per field: the merger builds every record of a run, most of them at its end).
_FIELD_GETTERS = {}


#: Longest ``--timeout`` accepted (seconds): a connection that takes longer is not coming.
MAX_TIMEOUT = 600.0


def positive_seconds(text):
    """argparse type: a finite number of seconds, more than 0 and at most ``MAX_TIMEOUT``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds: {text!r}")
    return value


def add_command(subparsers, spider, help, description):
    """The sub-command of plugin class ``spider``: named by its ``command_name``, running it."""
    parser = subparsers.add_parser(spider.command_name, help=help, description=description)
    parser.set_defaults(spider=spider)
    return parser


def add_timeout_option(parser, default):
    """``--timeout/-t SECONDS``: how long to wait for a connection (and for an HTTP reply)."""
    parser.add_argument("--timeout", "-t", type=positive_seconds, default=default,
                        help="seconds to wait for a connection (and again for the HTTP "
                             "reply) (default %(default)s)")


def add_connect_option(parser, default=DEFAULT_CONNECT, http_purpose=""):
    """``--connect http|tcp``: what :class:`ReactorPlugin` does once the handshake is done.

    ``http_purpose`` completes the help text of ``http`` (why the plugin needs data packets,
    e.g. ``", so ECN marks on data are seen"``).
    """
    marks = {mode: " (default)" if mode == default else "" for mode in ("http", "tcp")}
    parser.add_argument("--connect", choices=["http", "tcp"], default=default,
                        help=f"http: send GET / and read the reply{http_purpose}"
                             f"{marks['http']}; tcp: handshake only, as 1.0{marks['tcp']}")


# ---- connecting through the reactor --------------------------------------------------------------

#: :func:`tcpclient.http_request`, remembered for the last targets: both connections of a job
#: send the same request, and ``connect`` runs while a configuration is in force.
_http_request = functools.lru_cache(maxsize=1024)(tcpclient.http_request)


class ReactorPlugin:
    """Mixin for a plugin whose connections the shared reactor finishes.

    Use it before the engine's spider class: ``class ECN(ReactorPlugin, SynchronizedSpider,
    PluggableSpider)``. It provides

    * ``__init__``: cooperative (calls the next class's ``__init__``), then sets
      ``conn_timeout`` (``--timeout``) and ``connect_mode`` (``--connect``) and raises the
      open-file limit, since every connection in flight holds a socket;
    * ``connect``: only sends the SYN (non-blocking), while the configuration is in force, and
      hands the connection to :func:`pathspider.client.reactor.shared`, which completes the
      handshake, the ``GET /`` exchange in ``http`` mode, and the close;
    * ``post_connect``: waits until the reactor has finished, then returns
      :meth:`build_record` (the plugin's record); the wait is outside the lock-step
      (``post_connect_overlaps``), so a silent target does not hold a configuration;
    * ``merge``: :func:`merged_record` with the plugin's ``result_fields``, then
      :meth:`amend_record`, then onto the output queue.

    The plugin implements :meth:`build_record` and sets ``result_fields``; it may override
    :meth:`amend_record`, ``default_timeout`` and ``default_connect``.

    Every name here is public and documented, and none is one of the engine's (the plugin
    tests check this), so a plugin's own ``_helper`` methods cannot shadow the mixin's and the
    mixin cannot shadow the engine's.
    """

    #: ``post_connect`` only waits for the reactor, which finishes every connection by itself.
    post_connect_overlaps = True
    #: Used when the arguments carry no ``timeout`` / ``connect`` (e.g. a spider built in code).
    default_timeout = DEFAULT_TIMEOUT
    default_connect = DEFAULT_CONNECT
    #: Attributes of the record returned by :meth:`build_record` copied into the output.
    result_fields = ()

    def __init__(self, worker_count, libtrace_uri, args):
        super().__init__(worker_count=worker_count, libtrace_uri=libtrace_uri, args=args)
        self.conn_timeout = getattr(args, "timeout", self.default_timeout) or \
            self.default_timeout
        self.connect_mode = getattr(args, "connect", self.default_connect) or \
            self.default_connect
        tcpclient.raise_fd_limit()

    def connect(self, job, pcs, config):
        """Send the SYN (non-blocking) now, while ``config`` is in force; the reactor does
        the rest (``GET /`` if ``connect_mode`` is ``http``)."""
        request = None
        if self.connect_mode == "http":
            request = _http_request(job_host(job), job[0])
        return reactor.shared().start(job[0], job[1], self.conn_timeout, request)

    def post_connect(self, job, conn, pcs, config):
        """Wait until the reactor has finished the connection (handshake, HTTP exchange if
        asked, close), then build the record."""
        conn.wait()
        attempt = conn.attempt
        return self.build_record(job, config, attempt, attempt.state or Conn.TIMEOUT,
                                 conn.http_status)

    def build_record(self, job, config, attempt, state, http_status):
        """The plugin's record of one finished connection: a :data:`ConnectionRecord` by
        default (with ``result_fields`` = :data:`CONNECTION_FIELDS`); override for another.

        ``attempt`` is the :class:`pathspider.client.tcpclient.Pending` (``port``, ``sip``,
        ``tstart``, ``connect_time``...), ``state`` its :class:`~pathspider.constants.Conn`
        outcome (``TIMEOUT`` if the reactor gave none), ``http_status`` the reply's status
        code or None. The record needs ``ip``, ``rport``, ``port``, ``sip`` (for
        :func:`merged_record`) and the ``result_fields``.
        """
        return ConnectionRecord(job[0], job[1], attempt.port, job_rank(job), job_host(job),
                                config, state == Conn.OK, attempt.tstart,
                                tcpclient.utc_now_text(), state.value, attempt.sip,
                                http_status, round(attempt.connect_time or 0.0, 6))

    def amend_record(self, record):
        """Add fields computed from the merged ``record`` (in place); none by default."""

    def merge(self, flow, res):
        """1.0's merge with the plugin's ``result_fields`` (see :func:`merged_record`)."""
        record = merged_record(flow, res, self.result_fields)
        self.amend_record(record)
        self.outqueue.put(record)


def tcp_observer(libtrace_uri, new_flow=(), ip=(), tcp=()):
    """An Observer on ``libtrace_uri`` with the basic, TCP and ICMP chains and the plugin's own
    chain functions, in the order the bundled plugins rely on:

    * new flow: ``basic_flow``, ``tcp_setup``, then ``new_flow``, then ``icmp_setup``;
    * IPv4 and IPv6 packets: ``basic_count``, then ``ip``;
    * TCP segments: ``tcp`` first, then ``tcp_handshake`` and ``tcp_complete`` (which end the
      flow on a close, so the plugin's functions still see the closing segments);
    * ICMP / ICMPv6: ``icmp_unreachable`` / ``icmp6_unreachable``.

    A function that returns a false value stops the functions after it in its chain.
    """
    return Observer(libtrace_uri,
                    new_flow_chain=[basic_flow, tcp_setup, *new_flow, icmp_setup],
                    ip4_chain=[basic_count, *ip],
                    ip6_chain=[basic_count, *ip],
                    icmp4_chain=[icmp_unreachable],
                    icmp6_chain=[icmp6_unreachable],
                    tcp_chain=[*tcp, tcp_handshake, tcp_complete])


# ---- interpreting results ------------------------------------------------------------------------

#: (baseline connected, experiment connected) -> 2.0's connectivity condition suffix.
CONNECTIVITY = {(True, True): "works", (True, False): "broken", (False, True): "transient",
                (False, False): "offline"}


def connected(record):
    """True if ``record`` (a result record, or None when it is missing) connected."""
    return bool(record and record.get("connstate"))


def connectivity(baseline_ok, experiment_ok):
    """``works`` (both connected), ``broken`` (only the baseline), ``transient`` (only the
    experiment) or ``offline`` (neither): what the experiment does to connectivity."""
    return CONNECTIVITY[bool(baseline_ok), bool(experiment_ok)]


def combine_pair(conditions):
    """PATHspider 2.0's ``combine_flows(flows)`` hook (``--format jobs``) for a plugin whose
    interpretation is ``conditions(baseline, experiment)``: ``flows`` holds a job's records in
    connection order, None for a connection without one. Use as a class attribute:
    ``combine_flows = combine_pair(conditions)``."""
    def combine_flows(flows):
        baseline, experiment = (list(flows) + [None, None])[:2]
        return conditions(baseline, experiment)
    return staticmethod(combine_flows)


def has_condition(*names):
    """Column predicate: one of the condition strings ``names`` holds for the target."""
    return lambda conds, baseline, experiment: any(name in conds for name in names)


def connection_ok(config):
    """Column predicate: the baseline (``config`` 0) or experiment (1) connection worked."""
    return lambda conds, baseline, experiment: connected(experiment if config else baseline)


def icmp_unreachable_seen(conds, baseline, experiment):
    """Column predicate: an ICMP unreachable came back for either connection."""
    return any((rec or {}).get("icmp_unreachable") for rec in (baseline, experiment))


def connectivity_columns(*states):
    """Summary columns ``(state, predicate)``: the target's ``<...>.connectivity.<state>``
    condition (see :func:`connectivity`) holds, for each of ``states``."""
    def column(state):
        suffix = f".connectivity.{state}"
        return state, lambda conds, baseline, experiment: any(c.endswith(suffix) for c in conds)
    return tuple(column(state) for state in states)


#: Summary columns of what the Observer saw beyond the plugin's own fields: an ICMP unreachable
#: for either connection, and targets with a connection no flow was captured for.
EVIDENCE_COLUMNS = (("ICMP unreach", icmp_unreachable_seen),
                    ("unobserved", has_condition("pathspider.not_observed")))
