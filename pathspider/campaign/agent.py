"""A vantage agent: a Celery worker bound to one vantage's queue, measuring chunk after chunk.

``pathspider campaign agent --vantage NAME`` consumes only ``pathspider.vantage.NAME``, one
task at a time (the solo pool: two runs in one network namespace would fight over its system
state), and runs each chunk with :func:`pathspider.campaign.runner.run_chunk`. A message is
validated before anything runs (:mod:`.messages`, then the plugin's own parser); a refused
message fails its task at once, a run that fails is retried twice (5 s apart: e.g. a run of a
killed worker still restoring the namespace's state) and then fails the task. The task is
acknowledged only after it returned (``task_acks_late``), so a worker killed mid-chunk leaves
its chunk to be delivered again (docs/campaign.md#failure-semantics).
"""
import logging
import socket
import time

from pathspider.campaign import messages, names, runner
from pathspider.campaign.broker import make_app, redact
from pathspider.campaign.plugins import check_plugin_options, measurement_plugins

log = logging.getLogger("pathspider.campaign.agent")

#: Retries of a chunk whose run failed, and the seconds between them.
RUN_RETRIES = 2
RETRY_COUNTDOWN = 5


def check_message(message, plugins):
    """Validate ``message`` for this agent (fields, then the plugin's parser); raise
    :class:`~pathspider.campaign.messages.MessageError`."""
    messages.validate(message, plugins)
    check_plugin_options(message["plugin"], message["options"])
    return message


def register_task(app, settings):
    """Register the chunk task on ``app``; runs use ``settings`` (an AgentSettings)."""
    plugins = set(measurement_plugins())
    hostname = socket.gethostname()

    @app.task(name=names.TASK_NAME, bind=True, max_retries=RUN_RETRIES)
    def measure_chunk(self, message):
        """Measure one chunk of targets for this vantage; return its records and metadata."""
        check_message(message, plugins)
        if message["vantage"] != settings.vantage:
            raise messages.MessageError(f"chunk for vantage {message['vantage']!r} reached "
                                        f"the agent of {settings.vantage!r}")
        started = time.monotonic()
        try:
            result = runner.run_chunk(settings, message)
        except runner.ChunkFailed as exc:
            log.warning("chunk %s: %s", message["chunk"], exc)
            raise self.retry(exc=exc, countdown=RETRY_COUNTDOWN)
        result.update(campaign=message["campaign"], chunk=message["chunk"],
                      vantage=settings.vantage, agent=f"{settings.vantage}@{hostname}",
                      elapsed=round(time.monotonic() - started, 3))
        log.info("chunk %s done: %d records in %.1f s", message["chunk"],
                 len(result["records"]), result["elapsed"])
        return result

    return measure_chunk


def run_agent(url, settings, visibility_timeout, loglevel="INFO"):
    """Run the worker until it is stopped (SIGTERM/SIGINT: after the current chunk; a second
    SIGINT or SIGQUIT at once, the chunk then delivered again); returns its exit status."""
    app = make_app(url, visibility_timeout=visibility_timeout)
    register_task(app, settings)
    queue = names.queue_of(settings.vantage)
    log.info("agent of vantage %s: queue %s on %s%s", settings.vantage, queue, redact(url),
             f", runs in network namespace {settings.netns}" if settings.netns else "")
    argv = ["worker", "--queues", queue, "--pool", "solo", "--loglevel", loglevel,
            "--hostname", f"{settings.vantage}@{socket.gethostname()}",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    # Celery logs every result at INFO (a chunk's records!); this module logs one line.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0
