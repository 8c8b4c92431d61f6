"""The refusals a service raises, each with a one-line message; the API maps each to a status
(api/errors.py: 404, 409, 422) and the console shows the message."""

from __future__ import annotations

import reprlib
from collections.abc import Iterable

EXCERPT_CHARS = 120  # of a client's value, in a message
MAX_NAMES = 5  # names listed in one message

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = EXCERPT_CHARS
_repr.maxlist = _repr.maxdict = _repr.maxtuple = MAX_NAMES
_repr.maxlevel = 2


class DomainError(Exception):
    """A refused operation; the message says why in one line."""


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    """The request is well-formed, but the state of what it names refuses it."""


class Invalid(DomainError):
    pass


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A client's value, cut to `limit` characters and safe to encode as UTF-8 (a lone surrogate
    is shown escaped)."""
    text = value if isinstance(value, str) else _repr.repr(value)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def names_excerpt(names: Iterable[str]) -> str:
    """`a, b, c` for a few names, `a, b, … (12 in all)` for many, each name itself bounded."""
    items = sorted(set(names))
    shown = ", ".join(excerpt(n, 60) for n in items[:MAX_NAMES])
    return shown if len(items) <= MAX_NAMES else f"{shown}, … ({len(items)} in all)"
