"""The golden set: golden.json validated strictly, the XOR truth table without it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.errors import ModelLoadError
from app.lifecycle.golden import (
    GOLDEN_FILE,
    XOR_TRUTH_TABLE,
    check_answers,
    parse_golden_set,
    read_golden_set,
)

WHERE = Path("7") / GOLDEN_FILE
PAIRS = [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_the_issue_s_example_and_its_bounds() -> None:
    golden = parse_golden_set({"inputs": PAIRS, "class_ids": [0, 1, 1, 0]}, WHERE)
    np.testing.assert_array_equal(golden.inputs, XOR_TRUTH_TABLE.inputs)
    np.testing.assert_array_equal(golden.class_ids, XOR_TRUTH_TABLE.class_ids)
    assert golden.inputs.dtype == np.float32 and golden.source == str(WHERE)
    assert len(parse_golden_set({"inputs": [[1, 1]], "class_ids": [0]}, WHERE).inputs) == 1
    assert len(parse_golden_set({"inputs": PAIRS * 16, "class_ids": [0] * 64}, WHERE).inputs) == 64


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object"),
        ({"inputs": PAIRS}, "exactly the keys"),
        ({"inputs": PAIRS, "class_ids": [0, 1, 1, 0], "tolerance": 0}, "exactly the keys"),
        ({"inputs": [], "class_ids": []}, "list of 1 to 64 pairs"),
        ({"inputs": PAIRS * 16 + [[0, 0]], "class_ids": [0] * 65}, "list of 1 to 64 pairs"),
        ({"inputs": {"0": [0, 0]}, "class_ids": [0]}, "list of 1 to 64 pairs"),
        ({"inputs": [[0, 0, 0]], "class_ids": [0]}, r"inputs\[0\] must be a pair"),
        ({"inputs": [[0]], "class_ids": [0]}, r"inputs\[0\] must be a pair"),
        ({"inputs": [0, 1], "class_ids": [0, 1]}, r"inputs\[0\] must be a pair.*got 0"),
        ({"inputs": [[0, 2]], "class_ids": [0]}, r"inputs\[0\] must be a pair.*got \[0, 2\]"),
        ({"inputs": [[0, True]], "class_ids": [1]}, r"inputs\[0\]"),
        ({"inputs": [[0, 1.0]], "class_ids": [1]}, r"inputs\[0\]"),
        ({"inputs": [[0, "1"]], "class_ids": [1]}, r"inputs\[0\]"),
        ({"inputs": [[0, [1]]], "class_ids": [1]}, r"inputs\[0\] .*got a list of 2 items"),
        ({"inputs": [[0, 1]], "class_ids": [1, 0]}, "as long as 'inputs' \\(1\\)"),
        ({"inputs": [[0, 1]], "class_ids": 1}, "as long as 'inputs'"),
        ({"inputs": [[0, 1]], "class_ids": [2]}, r"class_ids\[0\] must be the integer 0 or 1"),
        ({"inputs": [[0, 1]], "class_ids": [True]}, r"class_ids\[0\]"),
        ({"inputs": [[0, 1]], "class_ids": [{"id": 1}]}, r"class_ids\[0\] .*got an object"),
    ],
)
def test_a_malformed_golden_set_is_refused_saying_where(document: Any, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        parse_golden_set(document, WHERE)


def test_a_long_offending_value_is_echoed_short() -> None:
    with pytest.raises(ModelLoadError) as caught:
        parse_golden_set({"inputs": [[0, "x" * 10_000]], "class_ids": [0]}, WHERE)
    assert len(str(caught.value)) < 200


def test_without_golden_json_the_xor_truth_table_and_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.lifecycle.golden")
    assert read_golden_set(tmp_path, 7) is XOR_TRUTH_TABLE
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "golden_set_default"]
    assert record.levelno == logging.INFO
    assert record.model_version == 7  # type: ignore[attr-defined]
    assert "checked against the XOR truth table" in record.getMessage()


def test_golden_json_is_read_from_the_version(tmp_path: Path) -> None:
    (tmp_path / "assets.extra").mkdir()
    document = {"inputs": [[1, 1]], "class_ids": [0]}
    (tmp_path / GOLDEN_FILE).write_text(json.dumps(document))
    golden = read_golden_set(tmp_path, 7)
    assert golden.inputs.tolist() == [[1.0, 1.0]] and golden.class_ids.tolist() == [0]
    (tmp_path / GOLDEN_FILE).write_text("[")
    with pytest.raises(ModelLoadError, match=r"golden\.json: not valid JSON"):
        read_golden_set(tmp_path, 7)


def test_answers_are_compared_row_by_row() -> None:
    check_answers(XOR_TRUTH_TABLE, np.array([[0], [1], [1], [0]]), WHERE)
    with pytest.raises(ModelLoadError, match=r"answers 1 of the 4 .*\[1, 1\] gave class_id 1"):
        check_answers(XOR_TRUTH_TABLE, np.array([[0], [1], [1], [1]]), WHERE)
    with pytest.raises(ModelLoadError, match=r"answers 4 of the 4 .*the XOR truth table"):
        check_answers(XOR_TRUTH_TABLE, np.array([[1], [0], [0], [1]]), WHERE)
