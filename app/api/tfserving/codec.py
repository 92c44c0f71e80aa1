"""TF Serving's REST wire format (``api_rest.md``): the ``:predict`` body in and out.

Requests in the row (``instances``, plain or named) and columnar (``inputs``) formats become a
validated :class:`~app.core.bits.Batch`; outputs are listed by name in the format asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.core.bits import (
    Batch,
    Locator,
    describe_json_type,
    invalid,
    json_excerpt,
    raise_details,
    string_at,
    validate_bits,
)
from app.core.prediction import OUTPUT_NAMES, ModelOutputs
from app.errors import Detail
from app.lifecycle.signature import SIGNATURE_KEY

_KEYS = ("signature_name", "instances", "inputs")
# TF Serving lists a row's outputs by name.
_SORTED_OUTPUTS = tuple(sorted(OUTPUT_NAMES))
_INT64 = 2**63


def _number_rows(rows: Any, where: str, loc: Locator, max_rows: int) -> npt.NDArray[Any]:
    """A JSON list of [number, number] rows as float64 [n, 2]; type and shape checked here.

    Values are the core's to check (0 or 1); JSON booleans, strings and null are not numbers.
    """
    if type(rows) is not list:
        invalid(where, f"must be a list of pairs, got {describe_json_type(rows)}")
    if not rows:
        invalid(where, "must hold at least one pair")
    if len(rows) > max_rows:
        invalid(where, f"holds {len(rows)} pairs, at most {max_rows} allowed")
    details: list[Detail] = []
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != 2:
            problem = (
                f"must hold exactly 2 numbers, got {len(row)}"
                if type(row) is list
                else f"must be a pair [x1, x2], got {describe_json_type(row)}"
            )
            details.append(Detail(loc(i, -1), problem))
            continue
        for j, value in enumerate(row):
            if type(value) not in (int, float):
                details.append(
                    Detail(loc(i, j), f"must be the number 0 or 1, got {describe_json_type(value)}")
                )
            elif type(value) is int and not -_INT64 <= value < _INT64:
                details.append(Detail(loc(i, j), f"must be 0 or 1, got {json_excerpt(value)}"))
        if len(details) > 20:
            break
    if details:
        raise_details(details)
    array: npt.NDArray[Any] = np.array(rows)  # int64 if every value is an integer
    return array


def _row_locator(prefix: str) -> Locator:
    return lambda i, j: f"{prefix}[{i}]" if j < 0 else f"{prefix}[{i}][{j}]"


def parse_predict_request(document: Any, max_rows: int) -> tuple[Batch, bool]:
    """The batch of a ``:predict`` body and whether it used the row format (``instances``)."""
    if not isinstance(document, dict):
        invalid("body", f"must be a JSON object, got {describe_json_type(document)}")
    for key in document:
        if key not in _KEYS:
            invalid(
                key[:40],
                "unknown field; expected 'instances' or 'inputs' (and optionally 'signature_name')",
            )
    signature = string_at(document.get("signature_name", SIGNATURE_KEY), "signature_name")
    if signature != SIGNATURE_KEY:
        invalid(
            "signature_name",
            f"serving signature {signature[:40]!r} not found; only {SIGNATURE_KEY!r} exists",
        )
    present = [key for key in ("instances", "inputs") if key in document]
    if len(present) != 1:
        problem = (
            "has both 'instances' and 'inputs'"
            if present
            else "has neither 'instances' nor 'inputs'"
        )
        invalid("body", f"{problem}; give exactly one")
    if "instances" in document:
        return _parse_rows(document["instances"], max_rows), True
    return _parse_columns(document["inputs"], max_rows), False


def _parse_rows(instances: Any, max_rows: int) -> Batch:
    if type(instances) is list and instances and isinstance(instances[0], dict):
        # Named row format: each instance maps the one input name to its row.
        rows = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or set(instance) != {"inputs"}:
                invalid(f"instances[{i}]", "must be an object with exactly the key 'inputs'")
            rows.append(instance["inputs"])

        def named(i: int, j: int) -> str:
            return f"instances[{i}].inputs" if j < 0 else f"instances[{i}].inputs[{j}]"

        values = _number_rows(rows, "instances", named, max_rows)
        return validate_bits(values, max_rows=max_rows, where="instances", loc=named)
    loc = _row_locator("instances")
    values = _number_rows(instances, "instances", loc, max_rows)
    return validate_bits(values, max_rows=max_rows, where="instances", loc=loc)


def _parse_columns(inputs: Any, max_rows: int) -> Batch:
    where = "inputs"
    if isinstance(inputs, dict):
        if set(inputs) != {"inputs"}:
            names = ", ".join(repr(name[:40]) for name in inputs) or "none"
            invalid("inputs", f"must name exactly the input 'inputs', got {names}")
        inputs, where = inputs["inputs"], "inputs.inputs"
    loc = _row_locator(where)
    values = _number_rows(inputs, where, loc, max_rows)
    return validate_bits(values, max_rows=max_rows, where=where, loc=loc)


def _output_lists(outputs: ModelOutputs) -> dict[str, list[list[Any]]]:
    lists: dict[str, list[list[Any]]] = {}
    for name in _SORTED_OUTPUTS:
        tensor = outputs[name]
        if tensor.dtype == object:  # DT_STRING: bytes
            lists[name] = [[item.decode() for item in row] for row in tensor.tolist()]
        else:  # float32 values become the same Python floats float64 ones would
            lists[name] = tensor.tolist()
    return lists


def render_predictions(outputs: ModelOutputs, row_format: bool) -> dict[str, Any]:
    lists = _output_lists(outputs)
    if not row_format:
        return {"outputs": lists}
    columns = [lists[name] for name in _SORTED_OUTPUTS]
    return {
        "predictions": [
            dict(zip(_SORTED_OUTPUTS, row, strict=True)) for row in zip(*columns, strict=True)
        ]
    }
