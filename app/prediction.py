"""The prediction core: validates batches of bits and runs them through a loaded version.

Independent of HTTP and shared by every API: ``/predict``, TF Serving ``/v1`` and Open
Inference Protocol ``/v2`` routes each turn their wire format into a numeric [n, 2] array,
:func:`validate_bits` checks it (shape, size, every value exactly 0 or 1) into a
:class:`Batch`, and :meth:`PredictionService.predict` runs it on the served or a pinned version
and returns all five signature outputs, which each route renders in its own format.
:class:`PredictionService` is the only caller of the model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import numpy as np
import numpy.typing as npt

from app.errors import Detail, InvalidInput, ModelUnavailable, VersionNotLoaded

if TYPE_CHECKING:
    from app.batching import MicroBatcher
    from app.metrics import Metrics
    from app.model_store import LoadedModel

Pair = tuple[int, int]
# Where element [row][column] of a batch was in the request, e.g. "instances[3][1]".
Locator = Callable[[int, int], str]

_MAX_DETAILS = 20
_PREDICT_KEYS = ("inputs", "instances")
OUTPUT_NAMES = ("logits", "logistic", "probabilities", "class_ids", "classes")


@dataclass(frozen=True)
class Batch:
    """A validated batch: float32 [n, 2], 1 <= n <= the batch limit, every value 0.0 or 1.0.

    Made only by :func:`validate_bits`.
    """

    features: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class ModelOutputs:
    """All five signature outputs of one batch, row i answering the batch's row i."""

    model_version: int
    tensors: Mapping[str, npt.NDArray[Any]]

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.tensors[name]


class ModelSource(Protocol):
    """Where the loaded models come from (the model store)."""

    @property
    def current(self) -> LoadedModel | None: ...

    @property
    def loaded(self) -> tuple[LoadedModel, ...]: ...

    def get(self, version: int) -> LoadedModel | None: ...

    @property
    def unavailable_reason(self) -> str: ...


def _json_text(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
        return None if value in (0, 1) else f"must be 0 or 1, got {value}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be the integer 0 or 1, got a number out of range ({value})"
    return f"must be the integer 0 or 1, got {_json_text(value)} ({describe_json_type(value)})"


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
    shown = details[:_MAX_DETAILS]
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
            for i, j in bad[:_MAX_DETAILS]
        ]
        raise_details(details, total=len(bad))
    return Batch(features=values.astype(np.float32))


def pairs_batch(pairs: Sequence[Pair], *, where: str, loc: Locator, max_rows: int) -> Batch:
    """Already type-checked pairs of integer bits as a :class:`Batch` (through the same check)."""
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
    for index, row in enumerate(rows):
        if not _is_pair(row):
            details.extend(_pair_problems(row, f"{loc}[{index}]"))
            if len(details) > _MAX_DETAILS:
                break
    if details:
        raise_details(details)
    return [(row[0], row[1]) for row in rows]


def validate_pair(value: Any, loc: str) -> Pair:
    """``value`` as one pair of bits: [bit, bit]."""
    if not _is_pair(value):
        raise_details(_pair_problems(value, loc))
    return (value[0], value[1])


def parse_predict_request(document: Any, max_batch_size: int) -> tuple[list[Pair], bool]:
    """The pairs of a ``/predict`` document and whether it was the single-pair form.

    ``{"inputs": [0, 1]}`` or ``{"instances": [[0, 1], ...]}``: exactly one of the two keys.
    """
    if not isinstance(document, dict):
        raise_details(
            [Detail("body", f"must be a JSON object, got {describe_json_type(document)}")]
        )
    unknown = [key for key in document if key not in _PREDICT_KEYS]
    if unknown:
        raise_details(
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
        raise_details([Detail("body", f"{problem} 'inputs' and 'instances'; give exactly one")])
    if "inputs" in document:
        return [validate_pair(document["inputs"], "inputs")], True
    return validate_pairs(document["instances"], "instances", max_batch_size), False


class PredictionService:
    """Runs batches through a loaded version, each batch in one signature call."""

    def __init__(
        self,
        source: ModelSource,
        *,
        metrics: Metrics | None = None,
        retry_after_seconds: int = 1,
        batcher: MicroBatcher | None = None,
    ) -> None:
        self._source = source
        self._metrics = metrics
        self._retry_after = str(max(1, retry_after_seconds))
        self._batcher = batcher

    def model(self, version: int | None = None) -> LoadedModel:
        """The served model, or the loaded ``version``; read once, so a request finishes on it.

        ModelUnavailable (503) while nothing is loaded, VersionNotLoaded (404) for a version
        outside the loaded window.
        """
        model = self._source.current
        if model is None:
            raise ModelUnavailable(
                f"no model is loaded: {self._source.unavailable_reason}",
                headers={"Retry-After": self._retry_after},
            )
        if version is None:
            return model
        pinned = self._source.get(version)
        if pinned is None:
            loaded = ", ".join(str(m.version) for m in self._source.loaded)
            raise VersionNotLoaded(f"version {version} is not loaded (loaded versions: {loaded})")
        return pinned

    async def predict_async(self, batch: Batch, model: LoadedModel | None = None) -> ModelOutputs:
        """:meth:`predict` for async callers, micro-batched with concurrent requests.

        Without a batcher, on the event loop: a call costs well under a millisecond for any
        batch size (distinct rows only), and a worker thread would double a small request's
        latency (see app.batching).
        """
        model = model if model is not None else self.model()
        if self._batcher is not None:
            return self._result(batch, model, await self._batcher.run(model, batch.features))
        return self.predict(batch, model)

    def predict(self, batch: Batch, model: LoadedModel | None = None) -> ModelOutputs:
        """All five outputs for ``batch``, in order, from one signature call (blocking)."""
        model = model if model is not None else self.model()
        started = time.perf_counter()
        outputs = model.run(batch.features)
        if self._metrics is not None:
            self._metrics.model_call_finished(time.perf_counter() - started)
        return self._result(batch, model, outputs)

    def _result(
        self, batch: Batch, model: LoadedModel, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> ModelOutputs:
        if self._metrics is not None:
            ones = int(np.count_nonzero(outputs["class_ids"]))
            self._metrics.predicted({0: len(batch) - ones, 1: ones}, len(batch))
        return ModelOutputs(
            model_version=model.version, tensors={name: outputs[name] for name in OUTPUT_NAMES}
        )
