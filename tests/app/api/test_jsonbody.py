"""Strict JSON request bodies: what Python's json module would let through is a 400 here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.jsonbody import BIT, ExactForm, decode_json, template_tokens
from app.api.oip import routes as oip_routes
from app.api.service import predict
from app.api.tfserving import routes as tfserving_routes
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


# The forms the APIs read without the full parse, each with the choices of its tokens.
FORMS = {
    "predict": predict.ONE_PAIR_BODY,
    "tfserving": tfserving_routes.ONE_ROW_BODY,
    "oip": oip_routes.ONE_PAIR_BODY,
}
JSON_SPACE = " \t\n\r"


def spelled(form: ExactForm, values: list[str], gaps: list[str]) -> bytes:
    """The form's template with ``values`` for its BIT and choice tokens (in order) and
    ``gaps[i]`` before token i (one more gap after the last)."""
    texts = iter(values)
    tokens = [
        next(texts) if token == BIT or token in form.choices else token
        for token in template_tokens(form.template)
    ]
    return "".join(map(str.__add__, gaps, [*tokens, ""])).encode()


@st.composite
def form_bodies(draw: st.DrawFn, form: ExactForm) -> tuple[bytes, list[Any]]:
    """A body of the form and the values of its BIT and choice tokens."""
    tokens = template_tokens(form.template)
    values = [
        draw(st.sampled_from(["0", "1"] if token == BIT else list(form.choices[token])))
        for token in tokens
        if token == BIT or token in form.choices
    ]
    gaps = draw(st.lists(st.text(JSON_SPACE, max_size=3), min_size=len(tokens) + 1))
    return spelled(form, values, gaps[: len(tokens) + 1]), values


def the_document(form: ExactForm, values: list[str]) -> Any:
    return json.loads(spelled(form, values, [""] * (len(template_tokens(form.template)) + 1)))


@pytest.mark.parametrize("name", FORMS)
@given(data=st.data())
def test_every_spacing_of_a_form_is_read_as_its_document(name: str, data: st.DataObject) -> None:
    form = FORMS[name]
    body, values = data.draw(form_bodies(form))
    document = decode_json(body)  # the full parse
    assert document == the_document(form, values)
    bits = [int(value) for value in values if value in ("0", "1")]
    assert form.bits(body) == tuple(bits)


@pytest.mark.parametrize("name", FORMS)
@given(data=st.data())
def test_a_body_a_form_takes_reads_the_same_in_full(name: str, data: st.DataObject) -> None:
    """Near misses of a form's bodies (characters replaced or inserted): whenever the form
    takes one, the full parse reads that form's document, with the same integer bits."""
    form = FORMS[name]
    body, _ = data.draw(form_bodies(form))
    text = body.decode()
    for position, character in data.draw(
        st.lists(
            st.tuples(st.integers(0, 200), st.sampled_from('{}[]:,01 "inpts\t\x0b.e-+FP')),
            min_size=1,
            max_size=3,
        )
    ):
        at = position % (len(text) + 1)
        text = text[:at] + character + text[at + (position % 2) :]  # odd: replace, even: insert
    bits = form.bits(text.encode())
    if bits is None:
        return
    document = decode_json(text.encode())
    assert FORMS[name].bits(json.dumps(document).encode()) == bits  # the same document
    assert all(type(value) is int for value in _leaf_bits(document))


def _leaf_bits(document: Any) -> list[Any]:
    """The two bits of a form's document, wherever the form keeps them."""
    if "instances" in document:
        return list(document["instances"][0])
    inputs = document["inputs"]
    return list(inputs if isinstance(inputs[0], int) else inputs[0]["data"])


def test_a_form_holds_two_bits() -> None:
    with pytest.raises(ValueError, match="two BIT"):
        ExactForm('{"inputs": [BIT]}')
