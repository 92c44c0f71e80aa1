"""What the sync and async clients share: the wire format of ``POST /predict``, reading its
answers, and when to retry or re-split. No I/O here."""

from __future__ import annotations

import email.utils
import json
import math
import re
import time

import httpx

from xor_client.errors import (
    ErrorDetail,
    ServiceError,
    ServiceRefused,
    ServiceUnavailable,
    ServiceUnreachable,
)
from xor_client.models import Pair, Prediction, PredictionBatch, Retry

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# A 503 without a usable Retry-After is retried after this many seconds.
DEFAULT_RETRY_AFTER = 1.0
# First wait after a connection error or timeout; doubled on each further one.
FIRST_BACKOFF = 0.1
# The service's answer to too many pairs (app/core/bits.py): 422, detail at "instances".
_TOO_MANY = re.compile(r"holds [0-9]+ pairs, at most ([0-9]+) allowed")


def base_url(url: str) -> str:
    """``url`` without a trailing slash, refused unless it is an http(s) URL with a host."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"url: must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def pinning(version: int | None, label: str | None) -> dict[str, str]:
    """The ``/predict`` query that pins ``version`` or ``label`` (at most one)."""
    if version is not None and label is not None:
        raise ValueError("give version or label, not both")
    if version is not None:
        if type(version) is not int or version < 1:
            raise ValueError(f"version: must be an int >= 1, got {version!r}")
        return {"version": str(version)}
    if label is not None:
        if not isinstance(label, str) or not label:
            raise ValueError(f"label: must be a non-empty string, got {label!r}")
        return {"label": label}
    return {}


def request_body(pairs: list[Pair]) -> bytes:
    return json.dumps({"instances": pairs}, separators=(",", ":")).encode()


def predictions(response: httpx.Response, sent: list[Pair]) -> PredictionBatch:
    """The predictions of a 200 answer to ``sent``, checked: one per pair, in order."""
    try:
        document = response.json()
        version = document["model_version"]
        items = document["predictions"]
        if type(version) is not int or not isinstance(items, list) or len(items) != len(sent):
            raise ValueError("not one prediction per pair")
        result = []
        for pair, item in zip(sent, items, strict=True):
            class_id = item["class_id"]
            p0, p1 = (float(p) for p in item["probabilities"])
            if tuple(item["inputs"]) != pair or class_id not in (0, 1):
                raise ValueError("a prediction does not match its pair")
            result.append(Prediction(pair, class_id, (p0, p1), version))
    except (ValueError, KeyError, TypeError) as exc:
        raise ServiceError(
            response.status_code, "bad_response", f"unexpected /predict answer: {exc}"
        ) from exc
    return PredictionBatch(tuple(result))


def service_error(response: httpx.Response, attempts: int = 1) -> ServiceError:
    """The error an answer other than 200 stands for."""
    status = response.status_code
    code, message, details = _error_parts(response)
    if status == 503:
        return ServiceUnavailable(
            status, code, message, details, retry_after=retry_after(response), attempts=attempts
        )
    if 400 <= status < 500:
        return ServiceRefused(status, code, message, details)
    return ServiceError(status, code, message, details)


def _error_parts(response: httpx.Response) -> tuple[str, str, tuple[ErrorDetail, ...]]:
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
        details = tuple(ErrorDetail(str(d["loc"]), str(d["msg"])) for d in error["details"])
        if isinstance(code, str) and isinstance(message, str):
            return code, message, details
    except (ValueError, KeyError, TypeError):
        pass
    # Not the service's error shape: a proxy's page, say. Show its start.
    text = " ".join(response.text.split())[:200]
    return f"http_{response.status_code}", text or response.reason_phrase, ()


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_or_default(response: httpx.Response) -> float:
    seconds = retry_after(response)
    return DEFAULT_RETRY_AFTER if seconds is None else seconds


def smaller_batch(error: ServiceError, sent: int) -> int | None:
    """How many pairs to send instead of ``sent`` when the service refused that many, or
    None if the refusal is about something else."""
    if error.status == 413 and error.code == "payload_too_large" and sent > 1:
        return sent // 2
    if error.status == 422:
        for detail in error.details:
            match = _TOO_MANY.search(detail.msg)
            if detail.loc == "instances" and match:
                limit = int(match.group(1))
                return limit if 0 < limit < sent else None
    return None


class Attempts:
    """One request's tries under a :class:`Retry` policy: how long to wait before the next
    one, or None once the policy is spent."""

    def __init__(self, policy: Retry) -> None:
        self.policy = policy
        self.made = 0
        self._deadline = time.monotonic() + policy.total_seconds
        self._backoff = FIRST_BACKOFF

    def started(self) -> None:
        self.made += 1

    def delay(self, wanted: float | None) -> float | None:
        """The wait before the next try after a failed one (``wanted``: the service's
        Retry-After, None for a connection error or timeout), or None to give up."""
        if self.made >= self.policy.attempts:
            return None
        if wanted is None:
            wanted, self._backoff = self._backoff, self._backoff * 2
        delay = min(wanted, self.policy.max_delay)
        if not math.isfinite(delay) or time.monotonic() + delay > self._deadline:
            return None
        return delay


def unreachable(url: str, exc: httpx.TransportError, attempts: int) -> ServiceUnreachable:
    reason = describe(exc)
    return ServiceUnreachable(url, reason, attempts=attempts)


def describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the answer"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        return f"cannot connect: {text}" if text else "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "the connection was closed before the answer came"
    return f"{type(exc).__name__}: {exc}"
