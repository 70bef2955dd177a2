"""Vantage names and the queue each vantage's agent consumes."""
import re

#: A vantage name: lower-case letters, digits and '-', 1 to 32 characters, not starting with '-'.
VANTAGE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: Prefix of a vantage's queue: ``pathspider.vantage.<name>``.
QUEUE_PREFIX = "pathspider.vantage."
#: The name of the task an agent runs.
TASK_NAME = "pathspider.campaign.measure_chunk"


class VantageNameError(ValueError):
    """A vantage name that is not allowed (the message says why)."""


def check_vantage(name):
    """``name`` if it is a valid vantage name, else raise :class:`VantageNameError`."""
    if not isinstance(name, str) or not VANTAGE_RE.fullmatch(name):
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise VantageNameError(f"bad vantage name {shown!r}: use 1 to 32 of a-z, 0-9 and '-', "
                         "starting with a letter or digit")
    return name


def parse_vantages(text):
    """``"v1,v2"`` -> ``["v1", "v2"]``: validated, in order, no duplicates, at least one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise VantageNameError("no vantage named (give --vantages v1,v2,...)")
    for name in names:
        check_vantage(name)
    if len(set(names)) != len(names):
        raise VantageNameError(f"a vantage is named twice in {text!r}")
    return names


def queue_of(vantage):
    """The queue of ``vantage``'s agent."""
    return QUEUE_PREFIX + check_vantage(vantage)


def vantage_of_queue(queue):
    """The vantage a queue name belongs to, or None for another queue."""
    if isinstance(queue, str) and queue.startswith(QUEUE_PREFIX):
        name = queue[len(QUEUE_PREFIX):]
        if VANTAGE_RE.fullmatch(name):
            return name
    return None
