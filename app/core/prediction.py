"""The prediction core: runs validated batches through the served or a pinned version.

Independent of HTTP and shared by every API: each turns its wire format into a
:class:`~app.core.bits.Batch`, :meth:`PredictionService.predict_async` runs it and returns all
five signature outputs, which each API renders in its own format. :class:`PredictionService`
is the only caller of the model on the request path (the loader runs the model too, before a
version serves: its warm-up, golden set and the model page's decision surface).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from app.core.bits import Batch
from app.core.response_cache import Answer, row_key
from app.errors import LabelNotFound, ModelUnavailable, VersionNotLoaded

if TYPE_CHECKING:
    from app.core.batching import MicroBatcher
    from app.core.response_cache import ResponseCache
    from app.lifecycle.loading import LoadedModel
    from app.metrics import Metrics

OUTPUT_NAMES = ("logits", "logistic", "probabilities", "class_ids", "classes")

Outputs = Mapping[str, npt.NDArray[Any]]
# How a batch's features reach a loaded model: ``LoadedModel.run`` unless the app is built with
# another (the benchmark's ceiling answers a constant to measure everything but the model).
ModelCall = Callable[["LoadedModel", npt.NDArray[np.float32]], Outputs]


def call_model(model: LoadedModel, features: npt.NDArray[np.float32]) -> Outputs:
    """The default :data:`ModelCall`: the loaded version's serving signature."""
    return model.run(features)


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

    def pick(self) -> LoadedModel | None: ...

    def labelled(self, label: str) -> LoadedModel | None: ...

    @property
    def label_versions(self) -> dict[str, int]: ...

    @property
    def unavailable_reason(self) -> str: ...


class PredictionService:
    """Runs batches through a loaded version, each batch in one signature call."""

    def __init__(
        self,
        source: ModelSource,
        *,
        metrics: Metrics | None = None,
        retry_after_seconds: int = 1,
        batcher: MicroBatcher | None = None,
        model_call: ModelCall = call_model,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self._source = source
        self._call = model_call
        self._metrics = metrics
        self._retry_after = str(max(1, retry_after_seconds))
        self._batcher = batcher
        self._cache = response_cache

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

    def route(self, *, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The model a prediction request goes to: the loaded ``version``, the version serving
        ``label``, or (naming neither) the canary for its share of requests, else the served
        one. Read once, so the request finishes on it.

        ModelUnavailable (503) while nothing is loaded, VersionNotLoaded (404) for a version
        outside the loaded window, LabelNotFound (404) for a label no loaded version serves.
        """
        if label is not None:
            self.model()  # 503 while nothing is loaded, as for every request
            model = self._source.labelled(label)
            if model is None:
                served = ", ".join(
                    f"{name}={v}" for name, v in sorted(self._source.label_versions.items())
                )
                raise LabelNotFound(
                    f"label {label!r} is not served by any loaded version "
                    f"(labels served: {served or 'none'})"
                )
            return model
        if version is not None:
            return self.model(version)
        self.model()
        picked = self._source.pick()
        return picked if picked is not None else self.model()

    async def predict_async(self, batch: Batch, model: LoadedModel | None = None) -> ModelOutputs:
        """:meth:`predict` for async callers, micro-batched with concurrent requests.

        Rows the response cache knows are answered from it; the others (each once) go to the
        model. Without a batcher, on the event loop, as the batcher's calls are
        (``app.core.batching`` says why).
        """
        model = model if model is not None else self.model()
        features = batch.features
        cache = self._cache
        if cache is None:
            return self._result(batch, model, await self._run_async(model, features))
        found = cache.lookup(model, features)
        if found.outputs is not None:
            self._cached(len(features), 0)
            return self._result(batch, model, found.outputs)
        computed = await self._run_async(model, found.unknown_rows(features))
        missed = found.missed_rows()
        self._cached(len(features) - missed, missed)
        return self._result(batch, model, cache.complete(model, found, computed))

    async def answer_one(
        self,
        batch: Batch,
        model: LoadedModel,
        form: Hashable,
        render: Callable[[ModelOutputs], bytes],
    ) -> bytes:
        """The response body of a one-row request: ``render`` of the row's outputs (as
        :meth:`predict_async` gives them), kept beside the row in the response cache under
        ``form`` (a name for the API's rendering; ``render`` must depend on the outputs only),
        so that the row's next request under the same form is one lookup. The metrics count
        it as :meth:`predict_async` does. Without the cache: rendered each time."""
        cache = self._cache
        if cache is None:
            return render(await self.predict_async(batch, model))
        rows = cache.version(model)
        key = row_key(batch.features)
        known = rows.answers.get(key)
        answer = None if known is None else known.get(form)
        if answer is not None:
            if self._metrics is not None:
                self._metrics.answered_from_cache(answer.class_id)
            return answer.body
        outputs = await self.predict_async(batch, model)
        body = render(outputs)
        # Kept only if the row is still the cached one these outputs came from.
        if rows.rows.get(key, {}).get("class_ids") is outputs["class_ids"]:
            rows.keep_answer(key, form, Answer(body, int(outputs["class_ids"][0, 0])))
        return body

    def predict(self, batch: Batch, model: LoadedModel | None = None) -> ModelOutputs:
        """All five outputs for ``batch``, in order, from the response cache and at most one
        signature call (blocking)."""
        model = model if model is not None else self.model()
        features = batch.features
        cache = self._cache
        if cache is None:
            return self._result(batch, model, self._run(model, features))
        found = cache.lookup(model, features)
        if found.outputs is not None:
            self._cached(len(features), 0)
            return self._result(batch, model, found.outputs)
        computed = self._run(model, found.unknown_rows(features))
        missed = found.missed_rows()
        self._cached(len(features) - missed, missed)
        return self._result(batch, model, cache.complete(model, found, computed))

    async def _run_async(self, model: LoadedModel, features: npt.NDArray[np.float32]) -> Outputs:
        if self._batcher is not None:
            return await self._batcher.run(model, features)
        return self._run(model, features)

    def _run(self, model: LoadedModel, features: npt.NDArray[np.float32]) -> Outputs:
        started = time.perf_counter()
        outputs = self._call(model, features)
        if self._metrics is not None:
            self._metrics.model_call_finished(time.perf_counter() - started)
        return outputs

    def _cached(self, hits: int, misses: int) -> None:
        if self._metrics is not None:
            self._metrics.response_cache_used(hits=hits, misses=misses)

    def _result(self, batch: Batch, model: LoadedModel, outputs: Outputs) -> ModelOutputs:
        if self._metrics is not None:
            ones = int(np.count_nonzero(outputs["class_ids"]))
            self._metrics.predicted({0: len(batch) - ones, 1: ones}, len(batch))
        return ModelOutputs(
            model_version=model.version, tensors={name: outputs[name] for name in OUTPUT_NAMES}
        )
