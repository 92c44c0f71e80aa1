"""Client library of the XOR model server: ``XorClient`` (sync) and ``AsyncXorClient``
(asyncio) over its REST API, and the ``xor-predict`` command (``xor_client.cli``).

    >>> from xor_client import XorClient
    >>> with XorClient("http://127.0.0.1:8000") as client:
    ...     batch = client.predict([(0, 1), (1, 1)])
    >>> [p.class_id for p in batch]
    [1, 0]
"""

from xor_client.client import DEFAULT_TIMEOUT, DEFAULT_URL, AsyncXorClient, XorClient
from xor_client.errors import (
    ErrorDetail,
    InvalidPair,
    ServiceError,
    ServiceRefused,
    ServiceUnavailable,
    ServiceUnreachable,
    XorError,
)
from xor_client.models import (
    DEFAULT_BATCH_SIZE,
    NO_RETRY,
    Pair,
    Prediction,
    PredictionBatch,
    Retry,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "NO_RETRY",
    "AsyncXorClient",
    "ErrorDetail",
    "InvalidPair",
    "Pair",
    "Prediction",
    "PredictionBatch",
    "Retry",
    "ServiceError",
    "ServiceRefused",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "XorClient",
    "XorError",
]
