"""One check for host names that come from input data (target lists, domain lists).

A host name read from a file ends up in protocol lines: the HTTP ``Host`` header, DNS queries.
:func:`dns_name` is the single gate: it accepts only what can be a DNS host name and returns
its ASCII (IDNA A-label), lower-case form, so a name with CR/LF, spaces, ``:``, ``/`` or ``@``
can never be written into a request. Labels are letters, digits, hyphens and underscores
(underscores occur in real names), 1-63 characters, not starting or ending with a hyphen; the
whole name is at most 253 characters; one trailing dot is dropped. Unicode names are converted
with Python's own ``idna`` codec (IDNA 2003), always, so that a target list is read the same
way wherever it runs (the optional ``idna`` package would make the result depend on what
happens to be installed: it rejects underscores and maps ``ß`` differently).
"""
import re

MAX_NAME = 253
MAX_LABEL = 63

# 1-63 of [a-z0-9_-], not starting or ending with "-" (lookarounds: twice as fast in ``re``
# as the equivalent "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", which backtracks on every label)
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def dns_name(text):
    """The ASCII, lower-case form of the host name ``text``; ``ValueError`` if it is not one."""
    if not isinstance(text, str):
        raise ValueError("not a text string")
    name = text if text.isascii() else _to_ascii(text)
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if len(name) > MAX_NAME:
        raise ValueError(f"longer than {MAX_NAME} characters")
    if not _NAME.fullmatch(name):
        raise ValueError(_why_not(name))
    if "xn--" in name:
        _check_a_labels(name)
    return name


def _to_ascii(text):
    """IDNA-encode a Unicode name (may still contain junk: the caller checks the result)."""
    if len(text) > 4 * MAX_NAME:  # Punycode takes quadratic time: refuse huge text first
        raise ValueError(f"longer than {MAX_NAME} characters")
    try:
        return text.encode("idna").decode("ascii")
    except (UnicodeError, ValueError) as exc:
        raise ValueError(f"not a valid internationalised name ({_reason(exc)})") from None


def _check_a_labels(name):
    """``xn--`` labels must be valid Punycode that round-trips (no made-up A-labels)."""
    for label in name.split("."):
        if not label.startswith("xn--"):
            continue
        try:
            if label.encode("ascii").decode("idna").encode("idna").decode("ascii") != label:
                raise UnicodeError("does not round-trip")
        except UnicodeError as exc:
            raise ValueError(f"bad A-label {label!r} ({_reason(exc)})") from None


def _reason(exc):
    """A short reason from a codec error (their messages can be long)."""
    return str(exc).split(":")[-1].strip()[:60] or exc.__class__.__name__


def _why_not(name):
    """Why ``name`` (ASCII, lower case) fails the label rules, in a few words."""
    if not name:
        return "empty name"
    for char in name:
        if ord(char) < 32 or ord(char) == 127:
            return f"contains a control character ({char!r})"
        if char == " ":
            return "contains a space"
        if not (char.isalnum() or char in "-_."):
            return f"contains {char!r}"
    for label in name.split("."):
        if not label:
            return "empty label"
        if len(label) > MAX_LABEL:
            return f"label longer than {MAX_LABEL} characters"
        if label[0] == "-" or label[-1] == "-":
            return f"label {label!r} starts or ends with a hyphen"
    return "not a host name"
