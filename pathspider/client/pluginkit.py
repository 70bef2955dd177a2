"""Pieces the bundled plugins share, so each plugin module holds only its measurement.

* :func:`merged_record`: 1.0's merge skeleton (the observed flow marked ``observed``, or a
  minimal record for a result no flow matched) plus the result fields a plugin names.
* :func:`add_timeout_option`: the ``--timeout`` option of the TCP-based plugins.
"""

import argparse

from pathspider.constants import NO_FLOW


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
    for name in fields:
        record[name] = getattr(res, name)
    return record


def positive_seconds(text):
    """argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def add_timeout_option(parser, default):
    """``--timeout/-t SECONDS``: how long to wait for a connection (and for an HTTP reply)."""
    parser.add_argument("--timeout", "-t", type=positive_seconds, default=default,
                        help="seconds to wait for a connection (and again for the HTTP "
                             "reply) (default %(default)s)")
