"""Strict JSON decoding of request bodies (shared by every JSON endpoint).

Python's ``json`` is lenient where a server must not be: it accepts ``NaN``/``Infinity``,
silently keeps the last of duplicate keys, and raises RecursionError on deep nesting. How deep
it goes depends on the stack it is called on, so whatever reads a decoded document must not
recurse over it (``app.core.bits.json_excerpt``, the OIP codec's walks).
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from app.errors import MalformedRequest


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


# One decoder for every request: json.loads with these options builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def decode_json(body: bytes) -> Any:
    """The JSON document in a UTF-8 ``body``, or MalformedRequest saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"request body is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from exc
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise MalformedRequest("request body is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # NaN/Infinity, duplicate keys, integers with too many digits
        problem = str(exc)
        if "integer string conversion" in problem:  # the interpreter's advice is not the client's
            problem = f"a number has more than {sys.get_int_max_str_digits()} digits"
        raise MalformedRequest(f"request body is not valid JSON: {problem}") from exc
