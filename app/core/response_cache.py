"""The response cache: what a loaded version's signature answered for an input row, kept to
answer that row again without calling the model (Triton's ``response_cache`` is the model).

- Per loaded version, held beside it only as long as the version itself is (a weak
  reference): a swap leaves the previous version's cache to it, an unload drops both.
- Keyed by the exact bytes of a row (two float32, read as one 8-byte integer), holding every
  signature output's row for it: with the cache on, a row always gets the bit-identical
  answer, whichever batch it came in. (Against the model path without the cache, answers agree
  to the model's last bits only: those vary with a batch's composition already.)
- Bounded by ``max_rows`` per version: once full, the oldest row makes room (first in, first
  out: a hit costs a dictionary lookup and nothing else). Rows are validated bit pairs, so
  four distinct rows exist today; the bound is for a model with a wider input.
- A batch is answered from the cache for its known rows; its unknown rows, each once, go to
  the model in one call, and are kept.
- Beside a row, the response bodies APIs rendered from it for one-row requests (most
  requests): a known single-pair request is answered with a dictionary lookup, without
  rendering it again (:meth:`PredictionService.answer_one
  <app.core.prediction.PredictionService.answer_one>`).

The caller counts hits and misses (per row) in its metrics.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from app.lifecycle.loading import LoadedModel

Outputs = Mapping[str, npt.NDArray[Any]]
# One row's outputs: each name's [1, ...] slice (a copy: it outlives the batch it came from).
RowOutputs = dict[str, npt.NDArray[Any]]


# How many renderings of one row an API may keep (see VersionCache.answers): a handful of
# forms exist (each API's plain answer, the /v2 output selections clients use).
MAX_ANSWERS_PER_ROW = 16


@dataclass(frozen=True, slots=True)
class Answer:
    """A one-row request's response body as an API rendered it from the row's cached outputs,
    and the row's class (what the metrics count for it)."""

    body: bytes
    class_id: int


class VersionCache:
    """One version's rows: the 8-byte key of a row -> its outputs, and beside a row the
    answers APIs rendered from those outputs for one-row requests (``answers``: key -> form ->
    :class:`Answer`, where a form names an API's rendering). An answer lives and dies with its
    row: rendering the same read-only outputs again would give the same bytes."""

    __slots__ = ("answers", "max_rows", "rows")

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows: dict[int, RowOutputs] = {}
        self.answers: dict[int, dict[Hashable, Answer]] = {}

    def keep(self, key: int, outputs: RowOutputs) -> None:
        rows = self.rows
        if key in rows:
            return
        if len(rows) >= self.max_rows:
            oldest = next(iter(rows))  # dicts keep insertion order
            del rows[oldest]
            self.answers.pop(oldest, None)
        rows[key] = outputs

    def keep_answer(self, key: int, form: Hashable, answer: Answer) -> None:
        """Keep ``answer`` beside row ``key`` (only while the row is kept)."""
        if key not in self.rows:
            return
        forms = self.answers.setdefault(key, {})
        if form not in forms and len(forms) >= MAX_ANSWERS_PER_ROW:
            del forms[next(iter(forms))]
        forms[form] = answer


def row_key(features: npt.NDArray[np.float32]) -> int:
    """The key of a one-row batch's row (as :func:`row_keys` gives it)."""
    return int.from_bytes(features.astype(np.float32, copy=False).tobytes(), sys.byteorder)


def row_keys(features: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
    """Each row's exact bytes as one integer: a [n, 2] float32 row is 8 bytes."""
    contiguous = np.ascontiguousarray(features, dtype=np.float32)
    keys: npt.NDArray[np.uint64] = contiguous.view(np.uint64).reshape(len(contiguous))
    return keys


class ResponseCache:
    """The response caches of every loaded version (see the module docstring)."""

    def __init__(self, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1 (no cache: do not make one)")
        self.max_rows = max_rows
        self._versions: weakref.WeakKeyDictionary[LoadedModel, VersionCache] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # creating a version's cache; lookups need none

    def version(self, model: LoadedModel) -> VersionCache:
        cache = self._versions.get(model)
        if cache is None:
            with self._lock:
                cache = self._versions.setdefault(model, VersionCache(self.max_rows))
        return cache

    def __len__(self) -> int:
        """How many versions have a cache (the loaded ones that were asked something)."""
        return len(self._versions)

    def lookup(self, model: LoadedModel, features: npt.NDArray[np.float32]) -> Lookup:
        """What the cache knows of ``features`` for ``model`` (see :class:`Lookup`)."""
        rows = self.version(model).rows
        keys = row_keys(features)
        if len(keys) == 1:  # the common request: one pair
            known = rows.get(int(keys[0]))
            if known is not None:
                return Lookup(known, keys, ())
            return Lookup(None, keys, (int(keys[0]),))
        missing = tuple(key for key in dict.fromkeys(keys.tolist()) if key not in rows)
        if missing:
            return Lookup(None, keys, missing)
        return Lookup(assemble(rows, keys), keys, ())

    def complete(
        self,
        model: LoadedModel,
        found: Lookup,
        computed: Outputs,
    ) -> Outputs:
        """The batch's outputs once ``computed`` holds the model's answer for ``found.missing``
        (row i for missing key i), which are kept; the other rows from the cache."""
        cache = self.version(model)
        fresh: dict[int, RowOutputs] = {}
        for i, key in enumerate(found.missing):
            row: RowOutputs = {}
            for name, value in computed.items():
                one = np.array(value[i : i + 1])
                one.setflags(write=False)  # shared by every later answer of this row
                row[name] = one
            fresh[key] = row
        keys = found.keys
        if len(keys) == 1:
            cache.keep(int(keys[0]), fresh[int(keys[0])])
            return fresh[int(keys[0])]
        # The batch's known rows, taken before the fresh ones may evict some (a full cache).
        needed = {
            key: fresh[key] if key in fresh else cache.rows[key]
            for key in dict.fromkeys(keys.tolist())
        }
        for key, row in fresh.items():
            cache.keep(key, row)
        return assemble(needed, keys)


@dataclass(frozen=True, slots=True)
class Lookup:
    """A batch as the cache saw it: ``outputs`` when every row was known, else the distinct
    ``missing`` keys (first-seen order), whose rows :meth:`unknown_rows` gives to the model."""

    outputs: Outputs | None
    keys: npt.NDArray[np.uint64]
    missing: tuple[int, ...]

    def unknown_rows(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One row of ``features`` per missing key, in ``missing``'s order."""
        if len(self.keys) == 1:
            return features
        wanted = set(self.missing)
        first = {}
        for i, key in enumerate(self.keys.tolist()):
            if key in wanted and key not in first:
                first[key] = i
        rows: npt.NDArray[np.float32] = features[[first[key] for key in self.missing]]
        return rows

    def missed_rows(self) -> int:
        """How many rows of the batch were not in the cache (they waited for the model)."""
        if not self.missing:
            return 0
        if len(self.keys) == 1:
            return 1
        return int(np.isin(self.keys, np.array(self.missing, dtype=np.uint64)).sum())


def assemble(rows: Mapping[int, RowOutputs], keys: npt.NDArray[np.uint64]) -> Outputs:
    """The outputs of a batch whose every key is in ``rows``, in the batch's order."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    found = [rows[int(key)] for key in distinct]
    return {
        name: np.concatenate([row[name] for row in found])[inverse.reshape(-1)] for name in found[0]
    }
