"""Bits: the one check every API's input goes through, and the messages that name the place.

Each API turns its wire format into a numeric [n, 2] array (or, for ``/predict``, JSON pairs)
and :func:`validate_bits` (or :func:`validate_pairs`) checks it into a :class:`Batch`: shape,
size, every value exactly 0 or 1. A message names where the offending value was in the
request, in that API's terms (``instances[3][1]``, ``inputs[0].data[5]``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from app.errors import Detail, InvalidInput

Pair = tuple[int, int]
# Where element [row][column] of a batch was in the request, e.g. "instances[3][1]".
Locator = Callable[[int, int], str]

MAX_DETAILS = 20


@dataclass(frozen=True)
class Batch:
    """A validated batch: float32 [n, 2], 1 <= n <= the batch limit, every value 0.0 or 1.0.

    Made only by :func:`validate_bits`.
    """

    features: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.features.shape[0])


EXCERPT_CHARS = 40
_END = object()


def json_excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``value`` as the JSON text a message quotes, cut to ``limit`` characters.

    Written without recursion and only as far as it is shown: a decoded request value may be
    nested as deep as the decoder allowed (deeper than the interpreter's recursion limit leaves
    room for in a handler) or megabytes long. An integer too long to show keeps its digit count.
    """
    if type(value) is int:
        text = str(value)
        if len(text) > limit:
            digits = len(text.lstrip("-"))
            return f"{text[: limit // 2]}... ({digits} digits)"
        return text
    text = ""
    for piece in _json_pieces(value, limit):
        text += piece
        if len(text) > limit:
            return text[: limit - 3] + "..."
    return text


def _json_pieces(value: Any, limit: int) -> Iterator[str]:
    """The JSON text of a decoded value in pieces, depth first, with an explicit stack."""
    open_: list[tuple[Iterator[Any], bool]] = []  # each open array or object: items, is object
    while True:
        opened = True  # the next item is the first of the array or object just opened
        if type(value) is list:
            yield "["
            open_.append((iter(value), False))
        elif isinstance(value, dict):
            yield "{"
            open_.append((iter(value.items()), True))
        else:
            opened = False
            # A string is cut first (quoted, it is longer than shown anyway); a number has at
            # most the decoder's few thousand digits.
            yield json.dumps(value[:limit] if type(value) is str else value)
        while open_:
            items, is_object = open_[-1]
            item: Any = next(items, _END)
            if item is not _END:
                break
            open_.pop()
            opened = False
            yield "}" if is_object else "]"
        else:
            return
        if not opened:
            yield ", "
        if is_object:
            key, value = item
            yield json.dumps(key[:limit]) + ": "
        else:
            value = item


def string_at(value: Any, loc: str) -> str:
    """``value`` if it is a string, else InvalidInput at ``loc``.

    For the names a request gives (datatype, input, output, signature): they are compared and
    looked up, and any JSON value may come in their place (a list or object is unhashable).
    """
    if type(value) is not str:
        invalid(loc, f"must be a string, got {describe_json_type(value)}")
    return value


def describe_json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _bit_problem(value: Any) -> str | None:
    if type(value) is int:
        return None if value in (0, 1) else f"must be 0 or 1, got {json_excerpt(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be the integer 0 or 1, got a number out of range ({value})"
    return f"must be the integer 0 or 1, got {json_excerpt(value)} ({describe_json_type(value)})"


def _pair_problems(value: Any, loc: str) -> list[Detail]:
    if type(value) is not list:
        return [Detail(loc, f"must be an array of 2 bits, got {describe_json_type(value)}")]
    if len(value) != 2:
        return [Detail(loc, f"must hold exactly 2 bits, got {len(value)}")]
    return [
        Detail(f"{loc}[{i}]", problem)
        for i, bit in enumerate(value)
        if (problem := _bit_problem(bit)) is not None
    ]


def _is_pair(value: Any) -> bool:
    # The fast path for valid rows: exact types, so bool and float are rejected.
    return (
        type(value) is list
        and len(value) == 2
        and type(value[0]) is int
        and type(value[1]) is int
        and value[0] in (0, 1)
        and value[1] in (0, 1)
    )


def raise_details(details: list[Detail], total: int | None = None) -> NoReturn:
    shown = details[:MAX_DETAILS]
    first = shown[0]
    total = len(details) if total is None else total
    message = f"{first.loc}: {first.msg}"
    if total > 1:
        message += f" (and {total - 1} more problem{'s' if total > 2 else ''})"
    raise InvalidInput(message, details=shown)


def invalid(loc: str, msg: str) -> NoReturn:
    """Raise InvalidInput for one offending location."""
    raise_details([Detail(loc, msg)])


def _number_text(value: Any) -> str:
    if isinstance(value, np.bool_ | bool):
        return "true" if value else "false"
    if isinstance(value, np.integer):
        return str(int(value))
    number = float(value)
    return repr(number) if math.isfinite(number) else str(number).replace("inf", "Infinity")


def validate_bits(values: npt.NDArray[Any], *, max_rows: int, where: str, loc: Locator) -> Batch:
    """``values`` (numeric or bool, shape [n, 2]) as a :class:`Batch`, or InvalidInput.

    ``where`` names the whole batch in messages, ``loc`` each element. Every value must be
    exactly 0 or 1 (NaN, 0.5, 2 and -1 are not); 1 <= n <= ``max_rows``.
    """
    if values.ndim != 2 or values.shape[1] != 2:
        shape = "x".join(str(size) for size in values.shape) or "a scalar"
        invalid(where, f"must be a batch of pairs, shape [n, 2]; got shape [{shape}]")
    rows = values.shape[0]
    if rows == 0:
        invalid(where, "must hold at least one pair")
    if rows > max_rows:
        invalid(where, f"holds {rows} pairs, at most {max_rows} allowed")
    if values.dtype.kind not in "biuf":
        invalid(where, f"must hold numbers, got {values.dtype}")
    bits = (values == 0) | (values == 1)  # NaN compares false: rejected too
    if not bits.all():
        bad = np.argwhere(~bits)
        details = [
            Detail(loc(int(i), int(j)), f"must be 0 or 1, got {_number_text(values[i, j])}")
            for i, j in bad[:MAX_DETAILS]
        ]
        raise_details(details, total=len(bad))
    return Batch(features=values.astype(np.float32))


def _one_pair_features(pair: Pair) -> npt.NDArray[np.float32]:
    features = np.array([pair], dtype=np.float32)
    features.setflags(write=False)  # shared by every request of this pair
    return features


# The batch of a single-pair request, built once per pair (most requests are one pair).
_ONE_PAIR: dict[Pair, npt.NDArray[np.float32]] = {
    (a, b): _one_pair_features((a, b)) for a in (0, 1) for b in (0, 1)
}
_ONE_PAIR_BATCH = {pair: Batch(features=features) for pair, features in _ONE_PAIR.items()}


def one_pair_batch(pair: Pair) -> Batch:
    """The batch of one pair of bits (the same object for every request of that pair);
    KeyError for anything but the four pairs of integer bits."""
    if type(pair[0]) is not int or type(pair[1]) is not int:
        raise KeyError(pair)
    return _ONE_PAIR_BATCH[pair]


def pairs_batch(pairs: Sequence[Pair], *, where: str, loc: Locator, max_rows: int) -> Batch:
    """Already type-checked pairs of integer bits as a :class:`Batch` (through the same check)."""
    if len(pairs) == 1 and max_rows >= 1:
        features = _ONE_PAIR.get(pairs[0])
        if features is not None and type(pairs[0][0]) is int and type(pairs[0][1]) is int:
            return Batch(features=features)
    values = np.asarray(pairs, dtype=np.int64).reshape(len(pairs), 2)
    return validate_bits(values, max_rows=max_rows, where=where, loc=loc)


def validate_pairs(rows: Any, loc: str, max_rows: int) -> list[Pair]:
    """``rows`` as pairs of bits: a non-empty array of at most ``max_rows`` [bit, bit]."""
    if type(rows) is not list:
        raise_details([Detail(loc, f"must be an array of pairs, got {describe_json_type(rows)}")])
    if not rows:
        raise_details([Detail(loc, "must hold at least one pair")])
    if len(rows) > max_rows:
        raise_details([Detail(loc, f"holds {len(rows)} pairs, at most {max_rows} allowed")])
    details: list[Detail] = []
    total = 0
    for index, row in enumerate(rows):
        if not _is_pair(row):
            problems = _pair_problems(row, f"{loc}[{index}]")
            total += len(problems)
            details.extend(problems[: MAX_DETAILS - len(details)])
    if details:
        raise_details(details, total=total)
    return [(row[0], row[1]) for row in rows]


def validate_pair(value: Any, loc: str) -> Pair:
    """``value`` as one pair of bits: [bit, bit]."""
    if not _is_pair(value):
        raise_details(_pair_problems(value, loc))
    return (value[0], value[1])
