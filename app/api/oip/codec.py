"""The Open Inference Protocol's wire format: an inference request in, its response out.

Tensors come as JSON ``data`` (flat row-major or nested) or, with the binary tensor data
extension (tritonclient's default), as raw little-endian bytes after a JSON header whose length
is in ``Inference-Header-Content-Length``. Outputs go back the way each asked for.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import Response

from app.api.jsonbody import decode_json
from app.core.bits import (
    MAX_DETAILS,
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
from app.lifecycle.signature import INPUT_NAME

HEADER_LENGTH = "Inference-Header-Content-Length"

# Input datatypes accepted, with their little-endian wire dtype. BOOL bytes are read as uint8
# so that a byte other than 0 or 1 is reported as the value it is.
INPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "BOOL": np.dtype("u1"),
}
_INT_RANGES = {"INT32": 2**31, "INT64": 2**63}
# An integer in FP32/FP64 data is taken within int64, as TF Serving's JSON numbers are: beyond
# that it cannot be a bit anyway, and past the float range it cannot even become a float.
_FLOAT_INTS = 2**63
OUTPUT_DTYPES = {
    "logits": "FP32",
    "logistic": "FP32",
    "probabilities": "FP32",
    "class_ids": "INT64",
    "classes": "BYTES",
}
_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}
_OUTPUT_KEYS = {"name", "parameters"}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    batch: Batch
    outputs: list[tuple[str, bool]]  # (output name, as binary data), in response order


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary part of a body (all JSON without the extension)."""
    if header_length is None:
        return body, b""
    if not re.fullmatch(r"[0-9]{1,18}", header_length.strip()):
        invalid(HEADER_LENGTH, f"must be a byte count, got {header_length[:40]!r}")
    length = int(header_length)
    if length == 0:
        invalid(HEADER_LENGTH, "must be at least 1 (the JSON header's length)")
    if length > len(body):
        invalid(HEADER_LENGTH, f"is {length}, beyond the body's {len(body)} bytes")
    return body[:length], body[length:]


def _bool(value: Any, loc: str) -> bool:
    if type(value) is not bool:
        invalid(loc, f"must be true or false, got {describe_json_type(value)}")
    return value


def _parameters(value: Any, loc: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        invalid(loc, f"must be an object, got {describe_json_type(value)}")
    if allowed is not None:
        for key in value:
            if key not in allowed:
                invalid(f"{loc}.{key[:40]}", "parameter not supported by this server")
    return value


def _flatten(data: Any, loc: str, datatype: str) -> tuple[list[Any], bool]:
    """The leaves of JSON ``data`` (flat or nested), type-checked; and whether it was nested."""
    if type(data) is not list:
        invalid(loc, f"must be an array, got {describe_json_type(data)}")
    nested = bool(data) and type(data[0]) is list
    leaves = _leaves(data)
    limit = _INT_RANGES.get(datatype)
    # The check of every leaf, written out per datatype: this is the hot path of JSON tensors.
    if datatype == "BOOL":
        valid = all(type(value) is bool for value in leaves)
    elif limit is not None:
        valid = all(type(value) is int and -limit <= value < limit for value in leaves)
    else:
        valid = all(
            type(value) is float or (type(value) is int and -_FLOAT_INTS <= value < _FLOAT_INTS)
            for value in leaves
        )
    if not valid:
        raise_details(_leaf_problems(data, loc, datatype))
    return leaves, nested


def _leaf_problem(value: Any, datatype: str) -> str | None:
    """What is wrong with one leaf of ``datatype`` data, if anything (the same checks as
    :func:`_flatten`'s, one leaf at a time, for the message)."""
    if datatype == "BOOL":
        ok, expected = type(value) is bool, "true or false"
    elif datatype in _INT_RANGES:
        limit = _INT_RANGES[datatype]
        ok = type(value) is int and -limit <= value < limit
        expected = f"an {datatype} integer 0 or 1"
    else:
        ok = type(value) is float or (type(value) is int and -_FLOAT_INTS <= value < _FLOAT_INTS)
        expected = "the number 0 or 1"
    if ok:
        return None
    got = json_excerpt(value) if type(value) is int else describe_json_type(value)
    return f"must be {expected}, got {got}"


def _leaves(data: list[Any]) -> list[Any]:
    """The leaves of nested arrays in order, without recursion: any depth the decoder accepted
    will do. Flat ``[a, b, ...]`` and rows ``[[a, b], ...]`` (what clients send) in one pass;
    anything deeper through :func:`_deep_leaves`."""
    leaves: list[Any] = []
    for row in data:
        if type(row) is not list:
            leaves.append(row)
            continue
        for value in row:
            if type(value) is list:
                return _deep_leaves(data)
            leaves.append(value)
    return leaves


def _deep_leaves(data: list[Any]) -> list[Any]:
    leaves: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            leaves.append(value)
        else:
            stack.pop()
    return leaves


def _leaf_problems(data: list[Any], loc: str, datatype: str) -> list[Detail]:
    """Where the wrong leaves of ``data`` are (the first few, then it stops looking), walked
    as :func:`_leaves` does."""
    details: list[Detail] = []
    stack = [iter(enumerate(data))]
    # The index of each open array but the outermost. A location is written only for a wrong
    # leaf: one per level, as a recursive walk would, costs the square of the depth.
    path: list[int] = []
    while stack:
        for index, value in stack[-1]:
            if type(value) is list:
                path.append(index)
                stack.append(iter(enumerate(value)))
                break
            problem = _leaf_problem(value, datatype)
            if problem is not None:
                where = loc + "".join(f"[{i}]" for i in (*path, index))
                details.append(Detail(where, problem))
                if len(details) > MAX_DETAILS:
                    return details
        else:
            stack.pop()
            if path:
                path.pop()
    return details


def _known_fields(value: Any, where: str, known: set[str], kind: str, of: str) -> None:
    """400 unless ``value`` is a JSON object whose keys are all in ``known``."""
    if not isinstance(value, dict):
        invalid(where, f"must be {kind}, got {describe_json_type(value)}")
    for key in value:
        if key not in known:
            invalid(f"{where}.{key[:40]}", f"unknown field of {of}")


def _input_batch(tensor: Any, binary: bytes, offset: int, max_rows: int) -> tuple[Batch, int]:
    """The batch of ``inputs[0]`` and how many binary bytes it used (from ``offset``)."""
    where = "inputs[0]"
    _known_fields(tensor, where, _INPUT_KEYS, "a tensor object", "an input tensor")
    name = string_at(tensor.get("name"), f"{where}.name")
    if name != INPUT_NAME:
        invalid(f"{where}.name", f"unexpected input {name[:40]!r}; the only input is 'inputs'")
    datatype = string_at(tensor.get("datatype"), f"{where}.datatype")
    if datatype not in INPUT_DTYPES:
        invalid(
            f"{where}.datatype",
            f"must be one of {', '.join(INPUT_DTYPES)}, got {datatype[:20]!r}",
        )
    shape = tensor.get("shape")
    if (
        type(shape) is not list
        or len(shape) != 2
        or any(type(size) is not int or size < 0 for size in shape)
        or shape[1] != 2
    ):
        invalid(f"{where}.shape", f"must be [n, 2], got {json_excerpt(shape)}")
    rows = shape[0]
    if rows == 0:
        invalid(f"{where}.shape", "must hold at least one pair (n >= 1)")
    if rows > max_rows:
        invalid(f"{where}.shape", f"holds {json_excerpt(rows)} pairs, at most {max_rows} allowed")
    parameters = _parameters(
        tensor.get("parameters", {}), f"{where}.parameters", {"binary_data_size"}
    )
    dtype = INPUT_DTYPES[datatype]
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        loc = f"{where}.parameters.binary_data_size"
        expected = rows * 2 * dtype.itemsize
        if type(size) is not int or size != expected:
            invalid(
                loc,
                f"is {json_excerpt(size)}, but shape [{rows}, 2] of {datatype} "
                f"takes {expected} bytes",
            )
        if "data" in tensor:
            invalid(f"{where}.data", "must be absent when the input is sent as binary data")
        if offset + size > len(binary):
            invalid(loc, f"is {size}, but only {len(binary) - offset} bytes of binary data follow")
        values = np.frombuffer(binary, dtype=dtype, count=rows * 2, offset=offset).reshape(rows, 2)
        return validate_bits(
            values, max_rows=max_rows, where=where, loc=_flat_locator(f"{where} binary data")
        ), size
    if "data" not in tensor:
        invalid(where, "has neither 'data' nor parameters.binary_data_size")
    leaves, nested = _flatten(tensor["data"], f"{where}.data", datatype)
    if len(leaves) != rows * 2:
        invalid(f"{where}.data", f"holds {len(leaves)} values, shape [{rows}, 2] needs {rows * 2}")
    array: npt.NDArray[Any]
    if datatype == "BOOL":
        array = np.array(leaves, dtype=np.bool_)
    elif datatype in _INT_RANGES:
        array = np.array(leaves, dtype=np.int64)
    else:  # checked in float64, so 1.0000001 is not rounded to a bit
        array = np.array(leaves, dtype=np.float64)
    locator = _nested_locator(f"{where}.data") if nested else _flat_locator(f"{where}.data")
    return validate_bits(array.reshape(rows, 2), max_rows=max_rows, where=where, loc=locator), 0


def _flat_locator(prefix: str) -> Locator:
    return lambda i, j: f"{prefix}[{2 * i + j}]"


def _nested_locator(prefix: str) -> Locator:
    return lambda i, j: f"{prefix}[{i}][{j}]"


def _requested_outputs(document: dict[str, Any], binary_default: bool) -> list[tuple[str, bool]]:
    if "outputs" not in document:
        return [(name, binary_default) for name in OUTPUT_NAMES]
    requested = document["outputs"]
    if type(requested) is not list:
        invalid("outputs", f"must be an array, got {describe_json_type(requested)}")
    selected: list[tuple[str, bool]] = []
    for index, output in enumerate(requested):
        where = f"outputs[{index}]"
        _known_fields(output, where, _OUTPUT_KEYS, "an object", "a requested output")
        name = string_at(output.get("name"), f"{where}.name")
        if name not in OUTPUT_NAMES:
            invalid(
                f"{where}.name",
                f"unknown output {name[:40]!r}; outputs are {', '.join(OUTPUT_NAMES)}",
            )
        if any(name == chosen for chosen, _ in selected):
            invalid(f"{where}.name", f"output {name!r} is requested twice")
        parameters = _parameters(
            output.get("parameters", {}), f"{where}.parameters", {"binary_data"}
        )
        binary = binary_default
        if "binary_data" in parameters:
            binary = _bool(parameters["binary_data"], f"{where}.parameters.binary_data")
        selected.append((name, binary))
    return selected


def parse_infer_request(header: bytes, binary: bytes, max_rows: int) -> InferRequest:
    """An inference request: its JSON header (strictly parsed) and binary inputs, checked."""
    document = decode_json(header)
    if not isinstance(document, dict):
        invalid("body", f"must be a JSON object, got {describe_json_type(document)}")
    for key in document:
        if key not in _REQUEST_KEYS:
            invalid(key[:40], "unknown field of an inference request")
    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        invalid("id", f"must be a string, got {describe_json_type(request_id)}")
    # Other request parameters (priority, timeout, ...) do not apply here and are ignored.
    parameters = _parameters(document.get("parameters", {}), "parameters", None)
    for key, value in parameters.items():
        # The protocol's $parameters hold strings, numbers and booleans only.
        if type(value) not in (str, int, float, bool):
            invalid(
                f"parameters.{key[:40]}",
                f"must be a string, number or boolean, got {describe_json_type(value)}",
            )
    binary_default = False
    if "binary_data_output" in parameters:
        binary_default = _bool(parameters["binary_data_output"], "parameters.binary_data_output")
    inputs = document.get("inputs")
    if type(inputs) is not list or len(inputs) != 1:
        got = f"{len(inputs)} tensors" if type(inputs) is list else describe_json_type(inputs)
        invalid("inputs", f"must hold exactly one tensor, 'inputs'; got {got}")
    batch, used = _input_batch(inputs[0], binary, 0, max_rows)
    if used != len(binary):
        invalid(
            "body",
            f"{len(binary) - used} bytes of binary data are not claimed by any input's "
            "parameters.binary_data_size",
        )
    outputs = _requested_outputs(document, binary_default)
    return InferRequest(id=request_id, batch=batch, outputs=outputs)


def _binary(tensor: npt.NDArray[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(item)) + item for item in tensor.reshape(-1))
    dtype = "<f4" if datatype == "FP32" else "<i8"
    return tensor.astype(dtype, copy=False).tobytes()


def _json_data(tensor: npt.NDArray[Any], datatype: str) -> list[Any]:
    flat = tensor.reshape(-1)
    if datatype == "BYTES":
        return [item.decode() for item in flat.tolist()]
    return flat.tolist()  # float32 values become the same Python floats float64 ones would


def render_infer_response(name: str, request: InferRequest, outputs: ModelOutputs) -> Response:
    document: dict[str, Any] = {"model_name": name, "model_version": str(outputs.model_version)}
    if request.id is not None:
        document["id"] = request.id
    blobs: list[bytes] = []
    rendered = []
    for output, binary in request.outputs:
        tensor = outputs[output]
        datatype = OUTPUT_DTYPES[output]
        entry: dict[str, Any] = {
            "name": output,
            "datatype": datatype,
            "shape": list(tensor.shape),
        }
        if binary:
            blob = _binary(tensor, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(tensor, datatype)
        rendered.append(entry)
    document["outputs"] = rendered
    header = orjson.dumps(document)
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(blobs),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )
