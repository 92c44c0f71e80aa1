"""The prediction service: validates pairs of bits and runs them through the served model.

Independent of HTTP: routes (``/predict`` now, TF-Serving ``/v1`` and OIP ``/v2`` later) turn
their request format into pairs and the result back into their response format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import anyio.to_thread
import numpy as np

from app.errors import Detail, InvalidInput, ModelUnavailable

if TYPE_CHECKING:
    from app.metrics import Metrics
    from app.model_store import LoadedModel

Pair = tuple[int, int]

_MAX_DETAILS = 20
# Up to this many pairs, a prediction runs on the event loop: a signature call costs well under
# a millisecond here, and handing it to a worker thread roughly doubles a small request's
# latency. Larger batches go to the threadpool so the loop keeps serving other requests.
INLINE_MAX_PAIRS = 64
_PREDICT_KEYS = ("inputs", "instances")


@dataclass(frozen=True)
class Prediction:
    inputs: Pair
    class_id: int
    probabilities: tuple[float, float]


@dataclass(frozen=True)
class PredictionResult:
    model_version: int
    predictions: list[Prediction]


class ModelSource(Protocol):
    """Where the served model comes from (the model store)."""

    @property
    def current(self) -> LoadedModel | None: ...

    @property
    def unavailable_reason(self) -> str: ...


def _json_text(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
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
        return None if value in (0, 1) else f"must be 0 or 1, got {value}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be the integer 0 or 1, got a number out of range ({value})"
    return f"must be the integer 0 or 1, got {_json_text(value)} ({_json_type(value)})"


def _pair_problems(value: Any, loc: str) -> list[Detail]:
    if type(value) is not list:
        return [Detail(loc, f"must be an array of 2 bits, got {_json_type(value)}")]
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


def _raise(details: list[Detail]) -> NoReturn:
    shown = details[:_MAX_DETAILS]
    first = shown[0]
    message = f"{first.loc}: {first.msg}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more problem{'s' if len(details) > 2 else ''})"
    raise InvalidInput(message, details=shown)


def validate_pairs(rows: Any, loc: str, max_rows: int) -> list[Pair]:
    """``rows`` as pairs of bits: a non-empty array of at most ``max_rows`` [bit, bit]."""
    if type(rows) is not list:
        _raise([Detail(loc, f"must be an array of pairs, got {_json_type(rows)}")])
    if not rows:
        _raise([Detail(loc, "must hold at least one pair")])
    if len(rows) > max_rows:
        _raise([Detail(loc, f"holds {len(rows)} pairs, at most {max_rows} allowed")])
    details: list[Detail] = []
    for index, row in enumerate(rows):
        if not _is_pair(row):
            details.extend(_pair_problems(row, f"{loc}[{index}]"))
            if len(details) > _MAX_DETAILS:
                break
    if details:
        _raise(details)
    return [(row[0], row[1]) for row in rows]


def validate_pair(value: Any, loc: str) -> Pair:
    """``value`` as one pair of bits: [bit, bit]."""
    if not _is_pair(value):
        _raise(_pair_problems(value, loc))
    return (value[0], value[1])


def parse_predict_request(document: Any, max_batch_size: int) -> tuple[list[Pair], bool]:
    """The pairs of a ``/predict`` document and whether it was the single-pair form.

    ``{"inputs": [0, 1]}`` or ``{"instances": [[0, 1], ...]}``: exactly one of the two keys.
    """
    if not isinstance(document, dict):
        _raise([Detail("body", f"must be a JSON object, got {_json_type(document)}")])
    unknown = [key for key in document if key not in _PREDICT_KEYS]
    if unknown:
        _raise(
            [
                Detail(
                    key if len(key) <= 40 else key[:37] + "...",
                    "unknown field; only 'inputs' or 'instances' are accepted",
                )
                for key in unknown
            ]
        )
    present = [key for key in _PREDICT_KEYS if key in document]
    if len(present) != 1:
        problem = "has both" if present else "has neither"
        _raise([Detail("body", f"{problem} 'inputs' and 'instances'; give exactly one")])
    if "inputs" in document:
        return [validate_pair(document["inputs"], "inputs")], True
    return validate_pairs(document["instances"], "instances", max_batch_size), False


class PredictionService:
    """Runs validated pairs through the served model, all of a request in one signature call."""

    def __init__(
        self, source: ModelSource, *, metrics: Metrics | None = None, retry_after_seconds: int = 1
    ) -> None:
        self._source = source
        self._metrics = metrics
        self._retry_after = str(max(1, retry_after_seconds))

    def model(self) -> LoadedModel:
        """The served model (read once, so a request finishes on it), or ModelUnavailable."""
        model = self._source.current
        if model is None:
            raise ModelUnavailable(
                f"no model is loaded: {self._source.unavailable_reason}",
                headers={"Retry-After": self._retry_after},
            )
        return model

    async def predict_async(
        self, pairs: Sequence[Pair], model: LoadedModel | None = None
    ) -> PredictionResult:
        """:meth:`predict` for async callers: small batches inline, large ones in a thread."""
        model = model if model is not None else self.model()
        if len(pairs) <= INLINE_MAX_PAIRS:
            return self.predict(pairs, model)
        return await anyio.to_thread.run_sync(self.predict, pairs, model)

    def predict(self, pairs: Sequence[Pair], model: LoadedModel | None = None) -> PredictionResult:
        """Predictions for ``pairs``, in order, from one signature call (blocking)."""
        model = model if model is not None else self.model()
        features = np.asarray(pairs, dtype=np.float32).reshape(len(pairs), 2)
        outputs = model.run(features)
        class_ids = outputs["class_ids"].reshape(-1).tolist()
        probabilities = outputs["probabilities"].astype(np.float64).tolist()
        predictions = [
            Prediction(inputs=pair, class_id=class_id, probabilities=(p[0], p[1]))
            for pair, class_id, p in zip(pairs, class_ids, probabilities, strict=True)
        ]
        if self._metrics is not None:
            ones = sum(class_ids)
            self._metrics.predicted({0: len(class_ids) - ones, 1: ones}, len(pairs))
        return PredictionResult(model_version=model.version, predictions=predictions)
