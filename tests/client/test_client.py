"""``XorClient`` against real servers: answers, pinning, batching, refusals, retries."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from xor_client import (
    NO_RETRY,
    InvalidPair,
    Prediction,
    PredictionBatch,
    Retry,
    ServiceRefused,
    ServiceUnavailable,
    ServiceUnreachable,
    XorClient,
)

from tests.client.conftest import LIMIT, VERSION, xor
from tests.support.server import Server
from tests.support.versions import publish_copy

ALL_PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]
# Nothing listens on port 1 of the loopback (it is privileged and unused).
NOWHERE = "http://127.0.0.1:1"


def test_predict_answers_typed_predictions_in_order(server: Server) -> None:
    with XorClient(server.url) as client:
        batch = client.predict(ALL_PAIRS)
    assert isinstance(batch, PredictionBatch)
    assert [p.pair for p in batch] == ALL_PAIRS
    assert [p.class_id for p in batch] == [xor(pair) for pair in ALL_PAIRS]
    assert batch.model_version == VERSION
    assert batch.model_versions == (VERSION,)
    for prediction in batch:
        assert isinstance(prediction, Prediction)
        assert prediction.model_version == VERSION
        assert sum(prediction.probabilities) == pytest.approx(1.0)
        assert prediction.probability == prediction.probabilities[prediction.class_id] > 0.9
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch[0].class_id = 0  # type: ignore[misc]
    assert isinstance(batch[1:], PredictionBatch) and len(batch[1:]) == 3


def test_predict_one_and_pinning_by_version(server: Server) -> None:
    with XorClient(server.url) as client:
        prediction = client.predict_one((1, 0), version=VERSION)
    assert (prediction.pair, prediction.class_id, prediction.model_version) == ((1, 0), 1, VERSION)


def test_no_pairs_send_nothing() -> None:
    with XorClient(NOWHERE, retry=NO_RETRY) as client:
        batch = client.predict([])
    assert len(batch) == 0 and batch.model_version is None


def test_a_version_not_loaded_is_refused_with_the_services_code_and_message(
    server: Server,
) -> None:
    with XorClient(server.url) as client, pytest.raises(ServiceRefused) as caught:
        client.predict([(0, 1)], version=99)
    error = caught.value
    assert (error.status, error.code) == (404, "version_not_loaded")
    assert error.message == f"version 99 is not loaded (loaded versions: {VERSION})"
    assert str(error) == f"404 version_not_loaded: {error.message}"


def test_a_label_no_version_serves_is_refused(server: Server) -> None:
    with XorClient(server.url) as client, pytest.raises(ServiceRefused) as caught:
        client.predict([(0, 1)], label="stable-x")
    assert (caught.value.status, caught.value.code) == (404, "label_not_found")
    assert "label 'stable-x' is not served" in caught.value.message


def test_a_malformed_label_is_refused_by_the_service_with_details(server: Server) -> None:
    with XorClient(server.url) as client, pytest.raises(ServiceRefused) as caught:
        client.predict([(0, 1)], label="Not A Label")
    assert (caught.value.status, caught.value.code) == (422, "invalid_input")
    assert [d.loc for d in caught.value.details] == ["query.label"]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([(0, 1), (1, 2)], "pairs[1][1]: must be 0 or 1, got 2"),
        ([(True, 0)], "pairs[0][0]: must be the int 0 or 1, got True (bool)"),
        ([(0, 1.0)], "pairs[0][1]: must be the int 0 or 1, got 1.0 (float)"),
        ([(0, 1, 1)], "pairs[0]: must be a pair (x1, x2), got (0, 1, 1)"),
        (["01"], "pairs[0]: must be a pair (x1, x2), got '01'"),
        ("0101", "pairs: must be an iterable of pairs, got '0101'"),
    ],
)
def test_bad_pairs_are_refused_before_anything_is_sent(pairs: object, message: str) -> None:
    with XorClient(NOWHERE, retry=NO_RETRY) as client, pytest.raises(InvalidPair) as caught:
        client.predict(pairs)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="url: must be an http"):
        XorClient("ftp://example.org")
    with pytest.raises(ValueError, match="batch_size: must be an int >= 1"):
        XorClient(batch_size=0)
    with pytest.raises(ValueError, match="attempts: must be an int >= 1"):
        Retry(attempts=0)
    with XorClient(NOWHERE) as client:
        with pytest.raises(ValueError, match="give version or label, not both"):
            client.predict([(0, 1)], version=1, label="stable")
        with pytest.raises(ValueError, match="version: must be an int >= 1"):
            client.predict([(0, 1)], version=True)


def test_a_large_batch_is_split_to_the_limit_the_service_names(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The service does not advertise its limit: the client sends its default batch size,
    reads the limit from the 422, and sends that many from then on."""
    pairs = [ALL_PAIRS[i % 4] for i in range(2 * LIMIT + 7)]
    caplog.set_level(logging.INFO, logger="xor_client")
    with XorClient(server.url) as client:
        batches = list(client.predict_batches(pairs))
        assert client.batch_size == LIMIT
    assert [len(b) for b in batches] == [LIMIT, LIMIT, 7]
    assert [p.pair for b in batches for p in b] == pairs
    assert [p.class_id for b in batches for p in b] == [xor(pair) for pair in pairs]
    (notice,) = caplog.messages
    assert notice.startswith(f"the service refused {len(pairs)} pairs in one request")
    assert notice.endswith(f"sending {LIMIT} at a time")


def test_an_explicit_batch_size_is_kept(server: Server) -> None:
    with XorClient(server.url, batch_size=3) as client:
        batches = list(client.predict_batches(ALL_PAIRS * 2))
    assert [len(b) for b in batches] == [3, 3, 2]


def test_a_503_is_retried_after_retry_after_until_a_model_is_loaded(
    unready_server: Server, trained_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first try finds no model (503, Retry-After: 1); a version published meanwhile is
    loaded, and a later try is answered by it."""
    answer = httpx.post(f"{unready_server.url}/predict", json={"inputs": [0, 1]})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json()["error"]["code"] == "model_unavailable"

    caplog.set_level(logging.INFO, logger="xor_client")
    publisher = threading.Timer(0.5, publish_copy, (trained_version, unready_server.model_dir, 3))
    started = time.monotonic()
    publisher.start()
    try:
        with XorClient(unready_server.url, retry=Retry(attempts=60, total_seconds=60)) as client:
            batch = client.predict(ALL_PAIRS)
    finally:
        publisher.join()
    assert batch.model_version == 3
    assert [p.class_id for p in batch] == [0, 1, 1, 0]
    assert time.monotonic() - started >= 1.0  # waited the Retry-After at least once
    assert caplog.messages[0].startswith("503 model_unavailable: no model is loaded")
    assert caplog.messages[0].endswith("; retrying in 1 s (attempt 2 of 60)")


def test_a_503_ends_in_service_unavailable_once_the_attempts_are_spent(
    unready_server: Server,
) -> None:
    """Retry-After (1 s) is capped by max_delay: two waits of 0.2 s, three tries."""
    started = time.monotonic()
    retry = Retry(attempts=3, max_delay=0.2)
    with (
        XorClient(unready_server.url, retry=retry) as client,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        client.predict([(0, 1)])
    elapsed = time.monotonic() - started
    error = caught.value
    assert (error.status, error.code, error.attempts, error.retry_after) == (
        503,
        "model_unavailable",
        3,
        1.0,
    )
    assert error.message.startswith("no model is loaded")
    assert 0.4 <= elapsed < 3


def test_a_503_ends_in_service_unavailable_once_the_time_is_spent(unready_server: Server) -> None:
    retry = Retry(attempts=1000, max_delay=0.2, total_seconds=1.0)
    started = time.monotonic()
    with (
        XorClient(unready_server.url, retry=retry) as client,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        client.predict([(0, 1)])
    assert time.monotonic() - started < 2.5
    assert 2 <= caught.value.attempts < 10


def test_nothing_listening_ends_in_service_unreachable_after_the_retries() -> None:
    client = XorClient(NOWHERE, retry=Retry(attempts=3))
    with client, pytest.raises(ServiceUnreachable) as caught:
        client.predict([(0, 1)])
    error = caught.value
    assert (error.url, error.reason, error.attempts) == (NOWHERE, "connection refused", 3)
    assert isinstance(error.__cause__, httpx.ConnectError)


def test_a_server_that_never_answers_times_out() -> None:
    """A socket that listens but never accepts: the connection is made (the kernel's
    backlog), the answer never comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        client = XorClient(url, timeout=0.3, retry=Retry(attempts=2))
        with client, pytest.raises(ServiceUnreachable) as caught:
            client.predict([(0, 1)])
    assert caught.value.reason == "timed out waiting for the answer"
    assert caught.value.attempts == 2
    assert 0.6 <= time.monotonic() - started < 3


def test_a_caller_supplied_http_client_is_used_and_left_open(server: Server) -> None:
    with httpx.Client(headers={"X-Request-ID": "client-test-1"}) as http:
        with XorClient(server.url, http_client=http) as client:
            assert client.predict_one((1, 1)).class_id == 0
        assert not http.is_closed
