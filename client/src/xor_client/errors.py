"""The client's exceptions.

XorError                    anything xor_client raises on purpose
├── InvalidPair             a pair that is not two bits 0/1 (also a ValueError); nothing was sent
├── ServiceError            the service answered with an error, or with something unreadable
│   ├── ServiceRefused      4xx: the service refused the request (its code and message)
│   └── ServiceUnavailable  503 still after the retries (no model loaded yet, or overloaded)
└── ServiceUnreachable      no answer: connection refused or reset, timeout (after the retries)
"""

from __future__ import annotations

from dataclasses import dataclass


class XorError(Exception):
    """Base class of every error xor_client raises on purpose."""


class InvalidPair(XorError, ValueError):
    """A pair that is not two bits, found before anything was sent; ``loc`` says where
    (``pairs[3][1]``)."""

    def __init__(self, loc: str, problem: str) -> None:
        super().__init__(f"{loc}: {problem}")
        self.loc = loc
        self.problem = problem


@dataclass(frozen=True)
class ErrorDetail:
    """One offending location the service names, e.g. ``instances[3][1]``."""

    loc: str
    msg: str


class ServiceError(XorError):
    """The service answered ``status`` with its error ``code`` and ``message``; also raised
    for an answer the client cannot read (``code`` ``bad_response``, or ``http_<status>`` for
    an error body not in the service's shape, e.g. from a proxy)."""

    def __init__(
        self, status: int, code: str, message: str, details: tuple[ErrorDetail, ...] = ()
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class ServiceRefused(ServiceError):
    """A 4xx: the request was refused, e.g. ``version_not_loaded`` (404) or
    ``invalid_input`` (422). Retrying the same request gets the same answer."""


class ServiceUnavailable(ServiceError):
    """503 (``model_unavailable`` or ``overloaded``) on every try the retry policy allowed;
    ``retry_after`` is the service's last ``Retry-After`` in seconds (None without one)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: tuple[ErrorDetail, ...] = (),
        *,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(status, code, message, details)
        self.retry_after = retry_after
        self.attempts = attempts


class ServiceUnreachable(XorError):
    """No answer from ``url`` on any try: nothing listening, connection reset, a timeout.
    The httpx exception of the last try is the ``__cause__``."""

    def __init__(self, url: str, reason: str, *, attempts: int = 1) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.attempts = attempts
