"""The task message: what the submitter sends an agent for one chunk, and its validation.

A message is data, never a command line: ``{"campaign", "chunk", "vantage", "plugin",
"options", "run_options", "targets"}``. ``plugin`` must name a discovered measurement plugin,
``options`` is a list of strings handed to that plugin's own parser, ``run_options`` the few
global options a campaign may choose for every chunk (``--input-format``, ``--format``,
``--rate``), ``targets`` the chunk's target list as text. The agent validates every field
(:func:`validate`) before it builds the argv of the run itself (:mod:`.runner`); options
that the agent owns (capture interface, files, workers, scope: the vantage's operator decides
those) are refused, and nothing ever goes through a shell.
"""
from pathspider.campaign.names import check_vantage, VantageNameError

#: Message layout version.
VERSION = 1
#: Options the agent sets itself; refused in ``options`` (also as ``--opt=value``).
OWNED_OPTIONS = ("-i", "--interface", "-w", "--workers", "--input", "--output", "--metadata",
                 "--resume", "--progress", "--no-progress", "--progress-interval",
                 "--allow", "--blocklist", "--allowlist", "-s", "--standalone", "-v",
                 "--verbose", "--input-format", "--format", "--rate", "--version", "-h",
                 "--help")
#: Global options a campaign chooses for all its chunks, with their allowed values.
RUN_OPTIONS = {"--input-format": ("csv", "ndjson", "auto"), "--format": ("flows", "jobs"),
               "--rate": None}
MAX_OPTIONS = 64
MAX_OPTION_CHARS = 4096
MAX_TARGETS_CHARS = 64 * 1024 * 1024
MAX_PLUGIN_CHARS = 64


class MessageError(ValueError):
    """A task message that the agent refuses (the message says which field and why)."""


def make(campaign, chunk, vantage, plugin, options, run_options, targets):
    """A task message (validated the way the agent will)."""
    message = {"version": VERSION, "campaign": campaign, "chunk": chunk, "vantage": vantage,
               "plugin": plugin, "options": list(options), "run_options": list(run_options),
               "targets": targets}
    validate(message)
    return message


def validate(message, plugin_names=None):
    """Return ``message`` if every field is acceptable; raise :class:`MessageError`.

    ``plugin_names`` (a container) are the measurement plugins the agent has; None skips
    that check (the submitter checks plugins with its own parser).
    """
    if not isinstance(message, dict):
        raise MessageError("the message is not an object")
    if message.get("version") != VERSION:
        raise MessageError(f"unknown message version {message.get('version')!r}")
    _text(message, "campaign", 64)
    chunk = message.get("chunk")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk < 10**9:
        raise MessageError("chunk must be a number 0 to 10^9")
    try:
        check_vantage(message.get("vantage"))
    except VantageNameError as exc:
        raise MessageError(str(exc)) from None
    plugin = check_plugin_name(message.get("plugin"))
    if plugin_names is not None and plugin not in plugin_names:
        raise MessageError(f"no measurement plugin named {plugin!r} on this agent")
    check_options(message.get("options"))
    check_run_options(message.get("run_options"))
    targets = message.get("targets")
    if not isinstance(targets, str) or len(targets) > MAX_TARGETS_CHARS or "\0" in targets:
        raise MessageError("targets must be text without NUL, at most 64 MiB")
    return message


def _text(message, key, limit):
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise MessageError(f"{key} must be printable text of 1 to {limit} characters")
    return value


def check_plugin_name(name):
    """A plugin name: a short identifier (letters, digits, ``_``, ``-``), not an option."""
    if (not isinstance(name, str) or not name or len(name) > MAX_PLUGIN_CHARS
            or not name.replace("_", "a").replace("-", "a").isalnum() or not name.isascii()
            or name.startswith("-")):
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise MessageError(f"bad plugin name {shown!r}")
    return name


def check_options(options):
    """Plugin options: a list of at most 64 printable strings, none an option the agent owns."""
    if not isinstance(options, list) or len(options) > MAX_OPTIONS:
        raise MessageError(f"options must be a list of at most {MAX_OPTIONS} strings")
    for option in options:
        if (not isinstance(option, str) or len(option) > MAX_OPTION_CHARS
                or not option.isprintable()):
            raise MessageError("every option must be printable text of at most "
                               f"{MAX_OPTION_CHARS} characters")
        if option.split("=", 1)[0] in OWNED_OPTIONS or option == "--":
            raise MessageError(f"option {option[:40]!r} is the agent's to choose, not the "
                               "campaign's")
    return options


def check_run_options(options):
    """Global options of the campaign: pairs ``[name, value]`` of :data:`RUN_OPTIONS`."""
    if not isinstance(options, list) or len(options) % 2 or len(options) > 2 * len(RUN_OPTIONS):
        raise MessageError("run_options must be a list of option, value pairs")
    for name, value in zip(options[::2], options[1::2]):
        if name not in RUN_OPTIONS or not isinstance(value, str):
            raise MessageError(f"run option {str(name)[:40]!r} is not allowed")
        allowed = RUN_OPTIONS[name]
        if allowed is not None and value not in allowed:
            raise MessageError(f"{name} must be one of {', '.join(allowed)}")
        if allowed is None and not _positive_number(value):
            raise MessageError(f"{name} must be a positive number")
    return options


def _positive_number(text):
    try:
        return 0 < float(text) < float("inf")
    except ValueError:
        return False
