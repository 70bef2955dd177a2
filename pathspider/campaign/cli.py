"""pathspider campaign: run a measurement from several vantages (docs/campaign.md).

Sub-commands: ``agent`` (a vantage's worker), ``run`` (shard, submit, collect), ``resume``,
``status`` and ``analyse``. Exit statuses: 0 done, 1 failed (one line says why), 2 bad usage,
128+N stopped by signal N (the campaign can be resumed).
"""
import argparse
import datetime
import hashlib
import json
import logging
import os
import sys
import uuid

from pathspider.campaign import broker as brokers
from pathspider.campaign import names, sharding
from pathspider.campaign.messages import MessageError, check_options, check_run_options
from pathspider.campaign.store import CampaignDir, StoreError, chunk_name
from pathspider.engine.targets import INPUT_FORMATS

log = logging.getLogger("pathspider.campaign")

EXIT_OK, EXIT_FAILURE = 0, 1
_USER_ERRORS = (brokers.BrokerError, names.VantageNameError, MessageError, StoreError,
                sharding.ShardingError)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- agent ---------------------------------------------------------------------------------

def agent_main(args):
    """``campaign agent``: serve one vantage's queue until stopped."""
    from pathspider.campaign.agent import run_agent
    from pathspider.campaign.runner import AgentSettings
    url = brokers.broker_url(args.broker, args.broker_password_file)
    scope = ["--allow"] if args.allow else []
    for flag, files in (("--blocklist", args.blocklist), ("--allowlist", args.allowlist)):
        for path in files or ():
            scope += [flag, os.path.abspath(path)]
    settings = AgentSettings(vantage=names.check_vantage(args.vantage),
                             interface=args.agent_interface, workers=args.agent_workers,
                             netns=args.netns, scope_options=scope, timeout=args.chunk_timeout)
    return run_agent(url, settings, args.visibility_timeout,
                     "DEBUG" if args.verbose else "INFO")


# ---- run and resume -------------------------------------------------------------------------

def _run_options(args):
    options = []
    if args.c_input_format != "auto":
        options += ["--input-format", args.c_input_format]
    if args.c_format != "flows":
        options += ["--format", args.c_format]
    if args.c_rate is not None:
        options += ["--rate", str(args.c_rate)]
    return options


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_journal(args, url, vantages, fmt, chunks, plugin_cls):
    """The journal of a new campaign (see :mod:`pathspider.campaign.store`)."""
    from pathspider.cli.results import connections_per_target
    run_options = _run_options(args)
    if fmt != "csv" and "--input-format" not in run_options:
        run_options += ["--input-format", fmt]
    return {
        "pathspider_campaign": 1, "id": uuid.uuid4().hex[:16], "created": _now(),
        "plugin": args.plugin, "options": list(args.options), "run_options": run_options,
        "input": {"path": os.path.abspath(args.campaign_input),
                  "sha256": _sha256(args.campaign_input)},
        "input_format": fmt, "chunk_size": args.chunk_size, "chunk_count": len(chunks),
        "targets": sum(text.count("\n") for text in chunks),
        "records_per_target": connections_per_target(plugin_cls),
        "vantages": vantages, "broker": brokers.redact(url), "status": "new",
        "chunks": {v: {chunk_name(i): {"state": "new", "task_ids": []}
                       for i in range(len(chunks))} for v in vantages},
    }


def run_main(args):
    """``campaign run``: create the campaign directory, then submit and collect."""
    from pathspider.campaign.plugins import check_plugin_options
    url = brokers.broker_url(args.broker, args.broker_password_file)
    vantages = names.parse_vantages(args.vantages)
    check_options(list(args.options))
    plugin_cls = check_plugin_options(args.plugin, list(args.options))
    check_run_options(_run_options(args))
    fmt, chunks = sharding.read_chunks(args.campaign_input, args.chunk_size,
                                       args.c_input_format)
    brokers.ping(url)
    cdir = CampaignDir(args.dir)
    cdir.create(new_journal(args, url, vantages, fmt, chunks, plugin_cls), chunks)
    log.info("campaign %s in %s: %s over %d targets in %d chunks, from %s", cdir.journal["id"],
             cdir.path, args.plugin, cdir.journal["targets"], len(chunks), ", ".join(vantages))
    return _submit(cdir, url, args)


def resume_main(args):
    """``campaign resume``: continue the campaign of a directory."""
    cdir = CampaignDir(args.dir)
    journal = cdir.open()
    url = args.broker or os.environ.get(brokers.BROKER_ENV)
    if not url and "***" not in journal.get("broker", "***"):
        url = journal["broker"]
    url = brokers.broker_url(url, args.broker_password_file)
    brokers.ping(url)
    return _submit(cdir, url, args)


def _submit(cdir, url, args):
    from pathspider.campaign.submit import Submitter
    app = brokers.make_app(url, result_expires=args.result_expires)
    submitter = Submitter(cdir, app, url, progress=args.progress,
                          progress_interval=args.progress_interval)
    return submitter.run()


# ---- status and analyse ---------------------------------------------------------------------

def status_main(args):
    """``campaign status``: print what the campaign has done."""
    from pathspider.campaign.status import format_text, live_agents, summarise
    journal = CampaignDir(args.dir).open()
    live = None
    if args.broker or os.environ.get(brokers.BROKER_ENV):
        url = brokers.broker_url(args.broker, args.broker_password_file)
        live = live_agents(brokers.make_app(url), timeout=args.timeout)
    summary = summarise(journal, live)
    print(json.dumps(summary, indent=1) if args.json else format_text(summary))
    return EXIT_OK


def analyse_main(args):
    """``campaign analyse``: attribution records (ndjson) and an optional HTML report."""
    from pathspider.campaign.analyse import analyse
    from pathspider.cli.results import read_files, summary_plugins
    from pathspider.engine.discovery import load_plugins
    cdir = CampaignDir(args.dir)
    journal = cdir.open()
    plugin = summary_plugins(load_plugins).get(journal["plugin"])
    if plugin is None:
        raise StoreError(f"the {journal['plugin']} plugin declares no conditions to analyse")
    class_of = None
    if args.group == "lab":
        from pathspider.lab.plan import class_of
    record_sets = {v: read_files(cdir.record_files(v)) for v in journal["vantages"]}
    rows = list(analyse(record_sets, plugin, journal["vantages"], class_of))
    _write_rows(rows, args.analyse_output)
    if args.report:
        from pathspider.campaign.report import render
        from pathspider.campaign.store import write_atomic
        page = render(journal, rows, _now())
        write_atomic(os.path.abspath(args.report), page.encode("utf-8"))
    counts = {}
    for row in rows:
        counts[row["attribution"]] = counts.get(row["attribution"], 0) + 1
    log.info("analysed %d target conditions: %s", len(rows),
             ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    return EXIT_OK


def _write_rows(rows, path):
    text = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from pathspider.campaign.store import write_atomic
        write_atomic(os.path.abspath(path), text.encode("utf-8"))


# ---- the parser -----------------------------------------------------------------------------

def _guarded(main):
    """Run ``main(args)``; a user error is one line and status 1."""
    def run(args):
        try:
            return main(args)
        except _USER_ERRORS as exc:
            log.error("campaign: %s", exc)
            return EXIT_FAILURE
    return run


def _broker_options(parser):
    parser.add_argument("--broker", metavar="URL",
                        help="Redis broker and result backend: redis://[:PASSWORD@]HOST:PORT/DB "
                             "or rediss:// for TLS (default: $PATHSPIDER_BROKER); the password "
                             "is never logged")
    parser.add_argument("--broker-password-file", metavar="FILE",
                        help="read the broker's password from the first line of FILE (default: "
                             "$PATHSPIDER_BROKER_PASSWORD_FILE)")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
        return value
    return parse


def _submit_options(parser):
    parser.add_argument("--result-expires", type=_positive(int),
                        default=brokers.DEFAULT_RESULT_EXPIRES, metavar="SECONDS",
                        help="how long the backend keeps a chunk's result, so that a campaign "
                             "can be resumed (default: %(default)s, 7 days)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="log per-vantage progress (chunks and records stored of the total)")
    parser.add_argument("--progress-interval", type=_positive(float), default=10.0,
                        metavar="SECONDS", help="seconds between progress lines "
                                                "(default: %(default)g)")


def _agent_parser(sub):
    parser = sub.add_parser("agent", help="serve one vantage: a Celery worker on its queue",
                            description="A vantage agent: consumes only the queue "
                                        "pathspider.vantage.NAME and measures each chunk with a "
                                        "local pathspider run (one chunk at a time).")
    parser.add_argument("--vantage", required=True, help="this vantage's name ([a-z0-9-])")
    parser.add_argument("--netns", help="run the measurements inside this network namespace "
                                        "(ip netns exec)")
    parser.add_argument("-i", "--interface", dest="agent_interface", default="eth0",
                        help="capture interface of the runs (default: %(default)s)")
    parser.add_argument("-w", "--workers", dest="agent_workers", type=_positive(int),
                        default=100, help="connect workers per run (default: %(default)s)")
    parser.add_argument("--visibility-timeout", type=_positive(float),
                        default=brokers.DEFAULT_VISIBILITY_TIMEOUT, metavar="SECONDS",
                        help="seconds before the broker hands a chunk whose worker vanished to "
                             "a worker again; must exceed the longest chunk (default: "
                             "%(default)g)")
    parser.add_argument("--chunk-timeout", type=_positive(float), metavar="SECONDS",
                        help="stop a run that takes longer (default: no limit)")
    parser.add_argument("--allow", action="store_true",
                        help="let the runs measure special-use addresses (this agent's "
                             "decision, never the campaign's)")
    parser.add_argument("--blocklist", action="append", metavar="FILE",
                        help="never measure these networks (as a run's --blocklist)")
    parser.add_argument("--allowlist", action="append", metavar="FILE",
                        help="measure only these networks (as a run's --allowlist)")
    _broker_options(parser)
    parser.set_defaults(func=_guarded(agent_main))


def _run_parser(sub):
    parser = sub.add_parser("run", help="measure a target list from several vantages",
                            description="Shard the target list into chunks, send every chunk to "
                                        "every vantage's queue, and store the records as they "
                                        "come back in DIR.")
    parser.add_argument("--dir", required=True, help="campaign directory (created)")
    parser.add_argument("--vantages", required=True, metavar="V1,V2,...",
                        help="vantages that measure the whole list")
    parser.add_argument("--chunk-size", type=_positive(int),
                        default=sharding.DEFAULT_CHUNK_SIZE, metavar="N",
                        help="targets per chunk (default: %(default)s)")
    parser.add_argument("--input", dest="campaign_input", required=True, metavar="TARGETS",
                        help="target list (CSV or ndjson, as a local run reads)")
    parser.add_argument("--input-format", dest="c_input_format", choices=INPUT_FORMATS,
                        default="auto", help="as a local run's --input-format")
    parser.add_argument("--format", dest="c_format", choices=("flows", "jobs"),
                        default="flows", help="records per connection or per job (as a local "
                                              "run's --format)")
    parser.add_argument("--rate", dest="c_rate", type=_positive(float), metavar="JOBS_PER_S",
                        help="each run starts at most this many jobs per second")
    _broker_options(parser)
    _submit_options(parser)
    parser.add_argument("plugin", metavar="PLUGIN", help="the measurement plugin")
    parser.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                        help="the plugin's options")
    parser.set_defaults(func=_guarded(run_main))


def register_args(subparsers):
    """Add ``campaign`` and its sub-commands (for the ``pathspider`` CLI)."""
    parser = subparsers.add_parser("campaign", help="measure from several vantages at once "
                                   "(Celery + Redis)", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(title="campaign actions", dest="campaign_action",
                                metavar="ACTION", required=True)
    _agent_parser(sub)
    _run_parser(sub)
    resume = sub.add_parser("resume", help="continue an interrupted campaign")
    resume.add_argument("dir", metavar="DIR")
    _broker_options(resume)
    _submit_options(resume)
    resume.set_defaults(func=_guarded(resume_main))
    status = sub.add_parser("status", help="chunks stored and pending per vantage, agents")
    status.add_argument("dir", metavar="DIR")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--timeout", type=_positive(float), default=1.0,
                        help="seconds to wait for agents' answers (with a broker)")
    _broker_options(status)
    status.set_defaults(func=_guarded(status_main))
    analyse = sub.add_parser("analyse", help="attribute each condition to the target or to "
                                             "a vantage")
    analyse.add_argument("dir", metavar="DIR")
    analyse.add_argument("--output", dest="analyse_output", help="ndjson records (default: stdout)")
    analyse.add_argument("--report", metavar="FILE.html", help="also write an HTML report")
    analyse.add_argument("--group", choices=("lab", "none"), default="none",
                         help="lab: add each target's lab impairment class")
    analyse.set_defaults(func=_guarded(analyse_main))
    return parser
