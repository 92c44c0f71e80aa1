"""``AsyncXorClient`` against real servers (asyncio, run by ``asyncio.run``: no plugin)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from xor_client import (
    NO_RETRY,
    AsyncXorClient,
    InvalidPair,
    PredictionBatch,
    Retry,
    ServiceRefused,
    ServiceUnavailable,
    ServiceUnreachable,
)

from tests.client.conftest import LIMIT, VERSION, xor
from tests.support.server import Server

ALL_PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]
NOWHERE = "http://127.0.0.1:1"


def test_predict_concurrently(server: Server) -> None:
    async def main() -> list[PredictionBatch]:
        async with AsyncXorClient(server.url) as client:
            return await asyncio.gather(*(client.predict(ALL_PAIRS) for _ in range(8)))

    for batch in asyncio.run(main()):
        assert [p.class_id for p in batch] == [0, 1, 1, 0]
        assert batch.model_version == VERSION


def test_predict_one_and_batches_split_to_the_services_limit(server: Server) -> None:
    pairs = [ALL_PAIRS[i % 4] for i in range(LIMIT + 1)]

    async def main() -> tuple[int, list[int], list[int]]:
        async with AsyncXorClient(server.url) as client:
            one = await client.predict_one((0, 1), version=VERSION)
            sizes: list[int] = []
            classes: list[int] = []
            async for batch in client.predict_batches(pairs):
                sizes.append(len(batch))
                classes.extend(p.class_id for p in batch)
            return one.class_id, sizes, classes

    one, sizes, classes = asyncio.run(main())
    assert one == 1
    assert sizes == [LIMIT, 1]
    assert classes == [xor(p) for p in pairs]


def test_refused_unavailable_unreachable_and_invalid(
    server: Server, unready_server: Server
) -> None:
    async def main() -> list[BaseException]:
        errors: list[BaseException] = []
        async with AsyncXorClient(server.url) as client:
            try:
                await client.predict([(0, 1)], version=99)
            except ServiceRefused as exc:
                errors.append(exc)
            try:
                client.predict_batches([(0, 2)])  # checked at once, before any request
            except InvalidPair as exc:
                errors.append(exc)
        async with AsyncXorClient(unready_server.url, retry=Retry(2, max_delay=0.1)) as client:
            try:
                await client.predict([(0, 1)])
            except ServiceUnavailable as exc:
                errors.append(exc)
        async with AsyncXorClient(NOWHERE, retry=NO_RETRY) as client:
            try:
                await client.predict([(0, 1)])
            except ServiceUnreachable as exc:
                errors.append(exc)
        return errors

    started = time.monotonic()
    refused, invalid, unavailable, unreachable = asyncio.run(main())
    assert time.monotonic() - started < 5
    assert isinstance(refused, ServiceRefused) and refused.code == "version_not_loaded"
    assert str(invalid) == "pairs[0][1]: must be 0 or 1, got 2"
    assert isinstance(unavailable, ServiceUnavailable)
    assert (unavailable.code, unavailable.attempts) == ("model_unavailable", 2)
    assert isinstance(unreachable, ServiceUnreachable) and unreachable.attempts == 1


def test_a_caller_supplied_async_http_client_is_left_open(server: Server) -> None:
    async def main() -> bool:
        async with httpx.AsyncClient() as http:
            async with AsyncXorClient(server.url, http_client=http) as client:
                assert (await client.predict_one((1, 0))).class_id == 1
            return http.is_closed

    assert asyncio.run(main()) is False


@pytest.mark.parametrize("name", ["predict", "predict_one", "predict_batches"])
def test_the_async_client_has_the_sync_clients_methods(name: str) -> None:
    import inspect

    from xor_client import XorClient

    sync = inspect.signature(getattr(XorClient, name))
    asynchronous = inspect.signature(getattr(AsyncXorClient, name))
    assert list(sync.parameters) == list(asynchronous.parameters)
