"""The one check of every API's input: shapes, sizes, exact 0/1 values, and where the
offending value was (the messages every API answers with)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.core.bits import (
    MAX_DETAILS,
    describe_json_type,
    invalid,
    json_excerpt,
    pairs_batch,
    string_at,
    validate_bits,
    validate_pair,
    validate_pairs,
)
from app.errors import InvalidInput


def loc(i: int, j: int) -> str:
    return f"rows[{i}][{j}]"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_])
def test_validate_bits_accepts_any_numeric_array_of_bits(dtype: type) -> None:
    values: np.ndarray[Any, Any] = np.array([[0, 1], [1, 1]]).astype(dtype)
    batch = validate_bits(values, max_rows=2, where="rows", loc=loc)
    assert batch.features.dtype == np.float32
    assert batch.features.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert len(batch) == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([[0.0, 2.0]]), "rows[0][1]: must be 0 or 1, got 2.0"),
        (np.array([[0, 1], [-1, 0]]), "rows[1][0]: must be 0 or 1, got -1"),
        (np.array([[np.nan, 1.0]]), "rows[0][0]: must be 0 or 1, got nan"),
        (np.array([[np.inf, 1.0]]), "rows[0][0]: must be 0 or 1, got Infinity"),
        (np.array([[0.5, 1.0]]), "rows[0][0]: must be 0 or 1, got 0.5"),
        (
            np.array([[2, 2]], dtype=np.uint8),
            "rows[0][0]: must be 0 or 1, got 2 (and 1 more problem)",
        ),
        (np.zeros((0, 2)), "rows: must hold at least one pair"),
        (np.zeros((4, 2)), "rows: holds 4 pairs, at most 3 allowed"),
        (np.zeros((2, 3)), "rows: must be a batch of pairs, shape [n, 2]; got shape [2x3]"),
        (np.zeros(4), "rows: must be a batch of pairs, shape [n, 2]; got shape [4]"),
        (np.array([["0", "1"]]), "rows: must hold numbers, got <U1"),
    ],
)
def test_validate_bits_rejects(values: np.ndarray[Any, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_bits(values, max_rows=3, where="rows", loc=loc)
    assert raised.value.message == message


def test_validate_bits_caps_the_details_and_counts_every_problem() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_bits(np.full((100, 2), 2), max_rows=1000, where="rows", loc=loc)
    assert len(raised.value.details) == MAX_DETAILS
    assert raised.value.message == "rows[0][0]: must be 0 or 1, got 2 (and 199 more problems)"


def test_validate_pairs_caps_the_details() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_pairs([[2, 2]] * 100, "instances", 1000)
    assert len(raised.value.details) == MAX_DETAILS
    assert raised.value.message.startswith("instances[0][0]: must be 0 or 1, got 2 (and ")


def test_validate_pairs_counts_every_problem_and_shows_the_first_few() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_pairs([[2, 2]] * 100, "instances", 1000)
    assert raised.value.message.endswith("(and 199 more problems)")
    assert len(raised.value.details) == MAX_DETAILS
    assert raised.value.details[-1].loc == f"instances[{MAX_DETAILS // 2 - 1}][1]"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"a": 1}, "instances: must be an array of pairs, got object"),
        ([], "instances: must hold at least one pair"),
        ([[0, 1]] * 4, "instances: holds 4 pairs, at most 3 allowed"),
        ([[0, 1], 1], "instances[1]: must be an array of 2 bits, got number"),
        ([[0, 1, 1]], "instances[0]: must hold exactly 2 bits, got 3"),
        ([[True, 1]], "instances[0][0]: must be the integer 0 or 1, got true (boolean)"),
        ([[1.0, 1]], "instances[0][0]: must be the integer 0 or 1, got 1.0 (number)"),
        ([[float("inf"), 1]], "instances[0][0]: must be the integer 0 or 1, got a number out"),
        ([[0, "x" * 50]], 'instances[0][1]: must be the integer 0 or 1, got "xxxxxxxxxx'),
        (
            [[0, 10**309]],
            "instances[0][1]: must be 0 or 1, got 10000000000000000000... (310 digits)",
        ),
        ([[0, [[[[1]]]]]], "instances[0][1]: must be the integer 0 or 1, got [[[[1]]]] (array)"),
    ],
)
def test_validate_pairs_rejects(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_pairs(rows, "instances", 3)
    assert raised.value.message.startswith(message)


def test_valid_pairs_and_their_batch() -> None:
    pairs = validate_pairs([[0, 1], [1, 1]], "instances", 2)
    assert pairs == [(0, 1), (1, 1)]
    assert validate_pair([1, 0], "inputs") == (1, 0)
    batch = pairs_batch(pairs, where="instances", loc=loc, max_rows=2)
    assert batch.features.dtype == np.float32
    assert batch.features.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_validate_pair_names_each_bad_bit() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_pair([2, None], "inputs")
    assert [(d.loc, d.msg) for d in raised.value.details] == [
        ("inputs[0]", "must be 0 or 1, got 2"),
        ("inputs[1]", "must be the integer 0 or 1, got null (null)"),
    ]
    assert raised.value.message == "inputs[0]: must be 0 or 1, got 2 (and 1 more problem)"


def test_invalid_is_one_detail() -> None:
    with pytest.raises(InvalidInput) as raised:
        invalid("body", "must be a JSON object")
    assert raised.value.status == 422
    assert [(d.loc, d.msg) for d in raised.value.details] == [("body", "must be a JSON object")]
    assert raised.value.message == "body: must be a JSON object"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (0, "number"),
        (0.5, "number"),
        ("0", "string"),
        ([0], "array"),
        ({"a": 0}, "object"),
    ],
)
def test_json_types_are_named_as_json_names_them(value: Any, name: str) -> None:
    assert describe_json_type(value) == name


def _nested(leaf: Any, depth: int) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (-7, "-7"),
        (0.5, "0.5"),
        (float("inf"), "Infinity"),
        ("caf\u00e9", '"caf\\u00e9"'),  # ASCII, as json.dumps writes it
        ([1, [2, {"a": None}]], '[1, [2, {"a": null}]]'),
        ({}, "{}"),
        ([[]], "[[]]"),
        ("x" * 50, '"' + "x" * 36 + "..."),
        ({"k" * 50: 1}, '{"' + "k" * 35 + "..."),
        (list(range(10**6)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11..."),
        (2**63, "9223372036854775808"),
        (10**309, "10000000000000000000... (310 digits)"),
        (-(10**4299), "-1000000000000000000... (4300 digits)"),
        ([10**309], "[" + "1" + "0" * 35 + "..."),
        # Deeper than the interpreter's recursion limit: written without recursion.
        (_nested(1, 100_000), "[" * 37 + "..."),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else type(v).__name__,
)
def test_json_excerpt_is_short_json_whatever_the_value(value: Any, text: str) -> None:
    assert json_excerpt(value) == text
    assert len(text) <= 40


@pytest.mark.parametrize(
    "value",
    [[], {}, ["FP32"], None, 0, 1.5, True, _nested("x", 100_000)],
    ids=["[]", "{}", '["FP32"]', "null", "0", "1.5", "true", "nested 100000 deep"],
)
def test_string_at_names_the_json_type_of_anything_else(value: Any) -> None:
    with pytest.raises(InvalidInput) as raised:
        string_at(value, "inputs[0].datatype")
    expected = f"inputs[0].datatype: must be a string, got {describe_json_type(value)}"
    assert raised.value.message == expected
    assert string_at("FP32", "inputs[0].datatype") == "FP32"
