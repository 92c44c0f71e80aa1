"""``XorClient`` and ``AsyncXorClient``: ``POST /predict`` with batching, retries and typed
answers. The two differ only in how they wait; the rules are in ``_protocol``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Self

import httpx

from xor_client import _protocol as protocol
from xor_client.models import (
    DEFAULT_BATCH_SIZE,
    Pair,
    Prediction,
    PredictionBatch,
    Retry,
    check_pair,
    check_pairs,
)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 10.0

logger = logging.getLogger("xor_client")

# Answered by either client's _post: the predictions, or a smaller batch size to try.
_Answer = PredictionBatch | int


def _log_retry(what: str, delay: float, attempts: protocol.Attempts) -> None:
    logger.info(
        "%s; retrying in %g s (attempt %d of %d)",
        what,
        delay,
        attempts.made + 1,
        attempts.policy.attempts,
        extra={"retry_delay": delay},
    )


class _Base:
    def __init__(self, url: str, batch_size: int, retry: Retry) -> None:
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"batch_size: must be an int >= 1, got {batch_size!r}")
        self.url = protocol.base_url(url)
        self.retry = retry
        self._batch_size = batch_size
        self._predict_url = f"{self.url}/predict"

    @property
    def batch_size(self) -> int:
        """Most pairs sent in one request; lowered when the service refuses that many."""
        return self._batch_size

    def _answer(self, response: httpx.Response, sent: list[Pair]) -> _Answer:
        """A non-503 answer to ``sent``: its predictions, or the batch size to retry with."""
        if response.status_code == 200:
            return protocol.predictions(response, sent)
        error = protocol.service_error(response)
        smaller = protocol.smaller_batch(error, len(sent))
        if smaller is None:
            raise error
        logger.info(
            "the service refused %d pairs in one request (%s); sending %d at a time",
            len(sent),
            error.message,
            smaller,
        )
        self._batch_size = smaller
        return smaller


class XorClient(_Base):
    """A client of the XOR model server at ``url``.

    ``XorClient(url).predict([(0, 1), (1, 1)])`` answers a :class:`PredictionBatch`. Pairs
    are sent ``batch_size`` at a time (the service's default limit; lowered by itself if the
    service refuses that many); a 503 and a connection error are retried under ``retry``;
    ``timeout`` (seconds, or an ``httpx.Timeout``) applies to each try. ``http_client``
    replaces the client's own ``httpx.Client`` (for proxies, auth, TLS settings); it is not
    closed by :meth:`close`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: Retry = Retry(),  # noqa: B008  (frozen: one shared default is safe)
        batch_size: int = DEFAULT_BATCH_SIZE,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, batch_size, retry)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def predict(
        self, pairs: Iterable[Pair], *, version: int | None = None, label: str | None = None
    ) -> PredictionBatch:
        """Predict every pair of ``pairs``, in order; ``version`` or ``label`` pins the
        version that answers (else the service picks, as for any request)."""
        batches = list(self.predict_batches(pairs, version=version, label=label))
        return PredictionBatch(tuple(p for batch in batches for p in batch))

    def predict_one(
        self, pair: Pair, *, version: int | None = None, label: str | None = None
    ) -> Prediction:
        """Predict one pair."""
        return self.predict([check_pair(pair, "pair")], version=version, label=label)[0]

    def predict_batches(
        self, pairs: Iterable[Pair], *, version: int | None = None, label: str | None = None
    ) -> Iterator[PredictionBatch]:
        """:meth:`predict`, one batch per request as each is answered: what a long run has
        answered so far is at hand when a later request fails. Every pair is checked before
        the first request, and the pinning, before this returns."""
        return self._batches(check_pairs(pairs), protocol.pinning(version, label))

    def _batches(self, pairs: list[Pair], params: dict[str, str]) -> Iterator[PredictionBatch]:
        start = 0
        while start < len(pairs):
            sent = pairs[start : start + self._batch_size]
            answer = self._post(sent, params)
            if isinstance(answer, PredictionBatch):
                start += len(sent)
                yield answer

    def _post(self, sent: list[Pair], params: dict[str, str]) -> _Answer:
        body = protocol.request_body(sent)
        attempts = protocol.Attempts(self.retry)
        while True:
            attempts.started()
            try:
                response = self._http.post(
                    self._predict_url, content=body, params=params, headers=protocol.JSON_HEADERS
                )
            except httpx.TransportError as exc:
                delay = attempts.delay(None)
                if delay is None:
                    raise protocol.unreachable(self.url, exc, attempts.made) from exc
                _log_retry(protocol.describe(exc), delay, attempts)
                time.sleep(delay)
                continue
            if response.status_code != 503:
                return self._answer(response, sent)
            error = protocol.service_error(response, attempts.made)
            delay = attempts.delay(protocol.retry_after_or_default(response))
            if delay is None:
                raise error
            _log_retry(f"503 {error.code}: {error.message}", delay, attempts)
            time.sleep(delay)

    def close(self) -> None:
        """Close the connections (not those of an ``http_client`` given by the caller)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncXorClient(_Base):
    """:class:`XorClient` for asyncio: the same arguments and methods, awaited."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: Retry = Retry(),  # noqa: B008  (frozen: one shared default is safe)
        batch_size: int = DEFAULT_BATCH_SIZE,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, batch_size, retry)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def predict(
        self, pairs: Iterable[Pair], *, version: int | None = None, label: str | None = None
    ) -> PredictionBatch:
        """Predict every pair of ``pairs``, in order (see :meth:`XorClient.predict`)."""
        result: list[Prediction] = []
        async for batch in self.predict_batches(pairs, version=version, label=label):
            result.extend(batch)
        return PredictionBatch(tuple(result))

    async def predict_one(
        self, pair: Pair, *, version: int | None = None, label: str | None = None
    ) -> Prediction:
        """Predict one pair."""
        batch = await self.predict([check_pair(pair, "pair")], version=version, label=label)
        return batch[0]

    def predict_batches(
        self, pairs: Iterable[Pair], *, version: int | None = None, label: str | None = None
    ) -> AsyncIterator[PredictionBatch]:
        """One batch per request as each is answered, for ``async for`` (see
        :meth:`XorClient.predict_batches`)."""
        return self._batches(check_pairs(pairs), protocol.pinning(version, label))

    async def _batches(
        self, pairs: list[Pair], params: dict[str, str]
    ) -> AsyncIterator[PredictionBatch]:
        start = 0
        while start < len(pairs):
            sent = pairs[start : start + self._batch_size]
            answer = await self._post(sent, params)
            if isinstance(answer, PredictionBatch):
                start += len(sent)
                yield answer

    async def _post(self, sent: list[Pair], params: dict[str, str]) -> _Answer:
        body = protocol.request_body(sent)
        attempts = protocol.Attempts(self.retry)
        while True:
            attempts.started()
            try:
                response = await self._http.post(
                    self._predict_url, content=body, params=params, headers=protocol.JSON_HEADERS
                )
            except httpx.TransportError as exc:
                delay = attempts.delay(None)
                if delay is None:
                    raise protocol.unreachable(self.url, exc, attempts.made) from exc
                _log_retry(protocol.describe(exc), delay, attempts)
                await asyncio.sleep(delay)
                continue
            if response.status_code != 503:
                return self._answer(response, sent)
            error = protocol.service_error(response, attempts.made)
            delay = attempts.delay(protocol.retry_after_or_default(response))
            if delay is None:
                raise error
            _log_retry(f"503 {error.code}: {error.message}", delay, attempts)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        """Close the connections (not those of an ``http_client`` given by the caller)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
