"""Strict JSON request bodies: what Python's json module would let through is a 400 here."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.jsonbody import decode_json
from app.errors import MalformedRequest


@pytest.mark.parametrize(
    ("body", "document"),
    [
        (b'{"inputs": [0, 1]}', {"inputs": [0, 1]}),
        (
            b' \n{"a": [1.5, -2, "x", null, true, false]}\t',
            {"a": [1.5, -2, "x", None, True, False]},
        ),
        ('{"caf\u00e9": "\u2603"}'.encode(), {"caf\u00e9": "\u2603"}),
        (b'{"a": 1, "b": {"a": 2}}', {"a": 1, "b": {"a": 2}}),  # one key at two levels
        (b"[]", []),
        (b"0", 0),
        (b'"text"', "text"),
        (b"null", None),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_valid_documents_are_decoded(body: bytes, document: Any) -> None:
    assert decode_json(body) == document


def test_nesting_within_the_interpreters_limit_is_decoded() -> None:
    nested = decode_json(b"[" * 200 + b"]" * 200)
    for _ in range(199):
        (nested,) = nested
    assert nested == []


# (body, the message after "request body is not valid ...")
MALFORMED: list[tuple[bytes, str]] = [
    (b'{"inputs": [NaN, 1]}', "JSON: NaN is not valid JSON"),
    (b'{"inputs": [Infinity, 1]}', "JSON: Infinity is not valid JSON"),
    (b'{"inputs": [-Infinity, 1]}', "JSON: -Infinity is not valid JSON"),
    (b'{"inputs": [0, 1], "inputs": [1, 1]}', "JSON: duplicate key 'inputs'"),
    (b'{"a": {"b": 1, "b": 2}}', "JSON: duplicate key 'b'"),
    (b'{"inputs": "\xff"}', "UTF-8 (byte 12: invalid start byte)"),
    (b'{"inputs": "\xc3"}', "UTF-8 (byte 12: invalid continuation byte)"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON: nested too deeply"),
    (b"", "JSON: Expecting value (line 1, column 1)"),
    (b'{"a": 1,\n}', "JSON: Expecting property name enclosed in double quotes (line 2, column 1)"),
    (b'{"a": 1} x', "JSON: Extra data (line 1, column 10)"),
    (b"{'a': 1}", "JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    # Python's limit on integer digits; its message's advice (sys.set_int_max_str_digits) is not
    # the client's to follow.
    (b"[" + b"9" * 5000 + b"]", "JSON: a number has more than 4300 digits"),
    (b"[-" + b"1" * 4301 + b"]", "JSON: a number has more than 4300 digits"),
]


@pytest.mark.parametrize(("body", "message"), MALFORMED, ids=lambda v: repr(v)[:30])
def test_malformed_bodies_are_400_saying_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(MalformedRequest) as raised:
        decode_json(body)
    assert (raised.value.status, raised.value.code) == (400, "malformed_request")
    assert raised.value.message.startswith(f"request body is not valid {message}")
    assert raised.value.__cause__ is not None  # chained to the decoder's own error
