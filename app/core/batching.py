"""Adaptive micro-batching: concurrent requests for one version share one model call.

A model call costs about the same for 1 and for 1000 rows, so the lever against the per-call
cost is to run concurrent requests together. There is no fixed wait: a request that finds its
version idle starts a drain task, which runs at the event loop's next turn with every request
queued by then; requests that arrive while a call runs gather in the version's queue and go
together in the next call (up to ``max_rows`` rows; a request larger than that runs alone).
Before each call the drain lets the loop turn for as long as turns bring newcomers (bounded),
so requests the loop is parsing join the call instead of starting another.

Calls run on the event loop itself: a signature call is mostly Python holding the GIL, so a
worker thread would only add a hand-over and wait behind the busy loop; and the model is
called on a batch's distinct rows only, so a large batch is no reason for a thread either.
Measurements behind both choices: bench/NOTES.md.

Results are split back in request order. If a combined call fails, its requests are retried
one by one, so a request can only fail on its own rows, never because of a neighbour.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from app.core.prediction import ModelCall, Outputs, call_model

if TYPE_CHECKING:
    from app.lifecycle.loading import LoadedModel

log = logging.getLogger(__name__)

# Loop turns without a newcomer after which an empty queue's drain ends.
_IDLE_TURNS = 3
# At most this many loop turns gather one call, however busy the loop.
_MAX_GATHER_TURNS = 16


class BatchObserver(Protocol):
    """Told about every model call (the metrics implement it)."""

    def batch_finished(
        self, *, rows: int, requests: int, queue_waits: list[float], seconds: float
    ) -> None: ...


@dataclass
class _Pending:
    features: npt.NDArray[np.float32]
    future: asyncio.Future[Outputs]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class _VersionQueue:
    waiting: deque[_Pending] = field(default_factory=deque)
    # The task draining this queue (a reference, so it is not garbage-collected mid-run).
    drain: asyncio.Task[None] | None = None


class MicroBatcher:
    """Queues per loaded version; at most one model call per version in flight."""

    def __init__(
        self,
        *,
        max_rows: int,
        observer: BatchObserver | None = None,
        model_call: ModelCall = call_model,
    ) -> None:
        self.max_rows = max_rows
        self._observer = observer
        self._model_call = model_call
        self._queues: dict[int, _VersionQueue] = {}

    async def run(self, model: LoadedModel, features: npt.NDArray[np.float32]) -> Outputs:
        """``model``'s outputs for ``features``, computed together with concurrent requests."""
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(id(model), _VersionQueue())
        pending = _Pending(features, loop.create_future())
        queue.waiting.append(pending)
        if queue.drain is None:
            queue.drain = loop.create_task(self._drain(model, queue))
        return await pending.future

    def _take(self, waiting: deque[_Pending]) -> list[_Pending]:
        taken = [waiting.popleft()]
        rows = len(taken[0].features)
        while waiting and rows + len(waiting[0].features) <= self.max_rows:
            rows += len(waiting[0].features)
            taken.append(waiting.popleft())
        return taken

    async def _drain(self, model: LoadedModel, queue: _VersionQueue) -> None:
        try:
            while await self._gather(queue):
                taken = self._take(queue.waiting)
                started = time.perf_counter()
                waits = [started - p.enqueued for p in taken]
                try:
                    self._run(model, taken)
                finally:
                    if self._observer is not None:
                        rows = sum(len(p.features) for p in taken)
                        self._observer.batch_finished(
                            rows=rows,
                            requests=len(taken),
                            queue_waits=waits,
                            seconds=time.perf_counter() - started,
                        )
        finally:
            queue.drain = None
            if sys.exc_info()[0] is not None:  # cancelled or broken: fail, never strand, the rest
                while queue.waiting:
                    _settle(queue.waiting.popleft(), exception=RuntimeError("model call aborted"))
            if not queue.waiting:
                self._queues.pop(id(model), None)

    async def _gather(self, queue: _VersionQueue) -> bool:
        """Whether requests wait, after the loop had turns to send answers and queue newcomers.

        Turns go on while each brings newcomers (up to a full batch or ``_MAX_GATHER_TURNS``);
        the first turn without one starts the call. A lone request on an idle server waits one
        turn. An empty queue's drain ends after ``_IDLE_TURNS`` turns without a newcomer.
        """
        idle_turns = 0
        for _ in range(_MAX_GATHER_TURNS):
            size = len(queue.waiting)
            await asyncio.sleep(0)
            if len(queue.waiting) > size:
                idle_turns = 0
                if sum(len(p.features) for p in queue.waiting) >= self.max_rows:
                    break
                continue
            idle_turns += 1
            if size or idle_turns >= _IDLE_TURNS:
                break
        return bool(queue.waiting)

    def _run(self, model: LoadedModel, taken: list[_Pending]) -> None:
        if len(taken) == 1:
            features = taken[0].features
        else:
            features = np.concatenate([p.features for p in taken])
        try:
            outputs = self._model_call(model, features)
        except Exception as exc:
            if len(taken) == 1:
                _settle(taken[0], exception=exc)
                return
            log.warning(
                "a combined model call of %d requests failed (%s); retrying them one by one",
                len(taken),
                exc,
                extra={"event": "batch_failed", "model_version": model.version},
            )
            for pending in taken:
                self._run(model, [pending])
            return
        start = 0
        for pending in taken:
            end = start + len(pending.features)
            _settle(pending, result={name: value[start:end] for name, value in outputs.items()})
            start = end


def _settle(
    pending: _Pending, *, result: Outputs | None = None, exception: BaseException | None = None
) -> None:
    if pending.future.done():  # the client went away and the request was cancelled
        return
    if exception is not None:
        pending.future.set_exception(exception)
    else:
        pending.future.set_result(result if result is not None else {})
