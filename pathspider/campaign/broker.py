"""Where the broker is and how to talk to it: the URL, its password, and the Celery app.

The URL comes from ``--broker`` or ``$PATHSPIDER_BROKER`` (``redis://`` or ``rediss://`` for
TLS). Its password is in the URL (``redis://:PASSWORD@host:6379/0``) or in a file named by
``--broker-password-file`` / ``$PATHSPIDER_BROKER_PASSWORD_FILE`` (first line; keeps it out of
the process list and shell history). The URL is never logged with its password:
:func:`redact` replaces it with ``***``.

The Celery app (:func:`make_app`) serialises JSON only — a message from the broker is data and
can never make an agent run code (pickle could) — acknowledges a task only after it ran
(``task_acks_late``), gives a chunk whose worker died back to the queue
(``task_reject_on_worker_lost``, and the Redis transport's ``visibility_timeout`` for a worker
killed outright), and lets a worker hold one task at a time (``worker_prefetch_multiplier=1``).
"""
import logging
import os
import urllib.parse

log = logging.getLogger("pathspider.campaign.broker")

BROKER_ENV = "PATHSPIDER_BROKER"
PASSWORD_FILE_ENV = "PATHSPIDER_BROKER_PASSWORD_FILE"
SCHEMES = ("redis", "rediss")
#: Seconds a task may stay unacknowledged before Redis hands it to a worker again. It must
#: exceed the longest chunk (docs/campaign.md#failure-semantics).
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
#: Seconds the backend keeps a chunk's result: long enough to resume a campaign.
DEFAULT_RESULT_EXPIRES = 7 * 24 * 3600


class BrokerError(ValueError):
    """A broker URL or password file that cannot be used (one line for the user)."""


def broker_url(url=None, password_file=None, environ=None):
    """The broker URL: ``url`` or ``$PATHSPIDER_BROKER``, with the password of
    ``password_file`` (or ``$PATHSPIDER_BROKER_PASSWORD_FILE``) put in when given."""
    environ = os.environ if environ is None else environ
    url = url or environ.get(BROKER_ENV)
    if not url:
        raise BrokerError(f"no broker: give --broker redis://... or set ${BROKER_ENV}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise BrokerError(f"broker URL must be redis:// or rediss:// (got {parts.scheme}://)")
    if not parts.hostname:
        raise BrokerError("broker URL names no host")
    password_file = password_file or environ.get(PASSWORD_FILE_ENV)
    if password_file:
        url = with_password(url, read_password(password_file))
    return url


def read_password(path):
    """The first line of ``path`` (the broker's password)."""
    try:
        with open(path, encoding="utf-8") as stream:
            password = stream.readline().rstrip("\r\n")
    except OSError as exc:
        raise BrokerError(f"cannot read the broker password file {path}: "
                          f"{exc.strerror}") from None
    if not password:
        raise BrokerError(f"the broker password file {path} is empty")
    return password


def with_password(url, password):
    """``url`` with ``password`` as its password (user kept; ``:`` and ``@`` quoted)."""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.quote(urllib.parse.unquote(parts.username or ""), safe="")
    host = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def redact(url):
    """``url`` with its password replaced by ``***`` (for logs and the journal)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def make_app(url, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT,
             result_expires=DEFAULT_RESULT_EXPIRES):
    """A Celery app on broker and backend ``url`` with the campaign's settings (see the module
    docstring). Imports Celery only here, so that the rest of pathspider runs without it."""
    try:
        from celery import Celery
    except ImportError:
        raise BrokerError("campaigns need Celery with Redis support: pip install "
                          "'celery[redis]' (scripts/install.sh installs it)") from None
    app = Celery("pathspider.campaign", broker=url, backend=url, set_as_current=False)
    transport = {"visibility_timeout": float(visibility_timeout),
                 # sweep for chunks of vanished workers every few seconds (kombu's default
                 # sweeps every 10 s x 10 = 100 s, whatever the visibility timeout)
                 "unacked_restore_interval": restore_interval(visibility_timeout),
                 "unacked_restore_throttle": 1}
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_accept_content=["json"], event_serializer="json",
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_track_started=True, result_expires=int(result_expires),
        broker_transport_options=transport, result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
        worker_send_task_events=False, task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        redis_backend_health_check_interval=30,
    )
    return app


def restore_interval(visibility_timeout):
    """Seconds between two sweeps of an agent for expired unacknowledged chunks: a quarter of
    the visibility timeout, 1 to 10 s."""
    return int(min(10, max(1, float(visibility_timeout) / 4)))


def ping(url, timeout=3.0):
    """Raise :class:`BrokerError` unless the Redis at ``url`` answers (with this password)."""
    import redis
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout)
        client.ping()
        client.close()
    except redis.exceptions.RedisError as exc:
        raise BrokerError(f"broker {redact(url)} does not answer: {exc}") from None
