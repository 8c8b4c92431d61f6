"""Request bodies are parsed as strict JSON: no NaN, Infinity or -Infinity (Python's parser takes
them), no number that overflows to infinity (1e400), no string with a lone UTF-16 surrogate
("\\ud800"). None of these is JSON a client can mean, and each one used to travel into a
validation error or a forwarded request that then failed to encode: a 500. Refused at parsing,
they get the same 422 as any malformed JSON."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# A surrogate escape in the raw text: only then is it worth walking the parsed strings.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CONSTANT = re.compile(r"-?Infinity|NaN")


class _Refused(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON: send a finite number")


def _number(text: str) -> float | int:
    """A JSON number with a fraction. One whose value is whole is the integer it equals (3.0 is
    3), as JSON Schema says: integer fields take it, number fields take any number."""
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is too large: send a finite number")
    if value.is_integer() and abs(value) < 2**53:  # exactly representable
        return int(value)
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # past Python's 4,300-digit limit
        raise _Refused(f"an integer of {len(text)} digits is too large") from None


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def loads(body: bytes) -> Any:
    """json.loads that refuses what is not JSON; a refusal is a json.JSONDecodeError saying what."""
    try:
        text = body.decode("utf-8-sig") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not UTF-8", "", exc.start) from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_number, parse_int=_int)
    except _Refused as exc:
        found = _CONSTANT.search(text)
        raise json.JSONDecodeError(str(exc), text, found.start() if found else 0) from None
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(value):
        raise json.JSONDecodeError(
            "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not "
            "Unicode text",
            text,
            0,
        )
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Every route of the API parses its JSON body with `loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
