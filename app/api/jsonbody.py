"""Strict JSON decoding of request bodies (shared by every JSON endpoint).

Python's ``json`` is lenient where a server must not be: it accepts ``NaN``/``Infinity``,
silently keeps the last of duplicate keys, and raises RecursionError on deep nesting. How deep
it goes depends on the stack it is called on, so whatever reads a decoded document must not
recurse over it (``app.core.bits.json_excerpt``, the OIP codec's walks).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


# A template token standing for a bit: a JSON 0 or 1, captured.
BIT = "BIT"
_TEMPLATE_TOKEN = re.compile(r'"[^"\\]*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')
_JSON_SPACE = rb"[ \t\n\r]*"  # JSON's whitespace, nothing else


def template_tokens(template: str) -> list[str]:
    """The JSON tokens of an :class:`ExactForm` template, in order."""
    return list(_TEMPLATE_TOKEN.findall(template))


@dataclass(frozen=True)
class ExactForm:
    """The JSON texts of a ``template`` with any JSON whitespace between and around its tokens:
    each ``BIT`` token a ``0`` or ``1``, each token named in ``choices`` one of its texts. A
    body of the form is the template's document (no escapes, no other spelling of a number, no
    duplicate key the template does not have), so the most common bodies can be read without
    the full parse; every other body takes the full parse."""

    template: str
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)
    pattern: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = []
        for token in template_tokens(self.template):
            if token == BIT:
                parts.append(rb"([01])")
            elif token in self.choices:
                texts = (re.escape(text.encode()) for text in self.choices[token])
                parts.append(b"(?:" + b"|".join(texts) + b")")
            else:
                parts.append(re.escape(token.encode()))
        pattern = re.compile(_JSON_SPACE + _JSON_SPACE.join(parts) + _JSON_SPACE)
        if pattern.groups != 2:
            raise ValueError(f"a form holds two BIT tokens: {self.template!r}")
        object.__setattr__(self, "pattern", pattern)

    def bits(self, body: bytes) -> tuple[int, int] | None:
        """The pair of bits of a body of this form; None for any other body."""
        found = self.pattern.fullmatch(body)
        return None if found is None else (int(found[1]), int(found[2]))
