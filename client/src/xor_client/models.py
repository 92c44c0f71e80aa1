"""What the client sends and gets back: pairs of bits, predictions, the retry policy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from xor_client.errors import InvalidPair

Pair = tuple[int, int]

# The service's default XOR_MAX_REQUEST_PAIRS. The service publishes its limit in GET /model
# (`limits`), but asking before every first request would cost a round trip where the default
# holds; so this is the client's first guess, and a service configured lower answers 422
# naming its limit, after which the client sends that many (client.py).
DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class Prediction:
    """The service's answer for one pair."""

    pair: Pair
    class_id: int
    probabilities: tuple[float, float]
    """``(P(class 0), P(class 1))``"""
    model_version: int
    """The version that computed this prediction."""

    @property
    def probability(self) -> float:
        """The probability of the predicted class."""
        return self.probabilities[self.class_id]


@dataclass(frozen=True)
class PredictionBatch(Sequence[Prediction]):
    """Predictions in the order of the pairs sent; possibly from several requests."""

    predictions: tuple[Prediction, ...]

    @property
    def model_versions(self) -> tuple[int, ...]:
        """Every version that answered, in order of first appearance."""
        return tuple(dict.fromkeys(p.model_version for p in self.predictions))

    @property
    def model_version(self) -> int | None:
        """The version that computed every prediction; None when empty, or when the service
        swapped versions between the requests of a large batch (see ``model_versions``)."""
        versions = self.model_versions
        return versions[0] if len(versions) == 1 else None

    def __len__(self) -> int:
        return len(self.predictions)

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.predictions)

    @overload
    def __getitem__(self, index: int) -> Prediction: ...
    @overload
    def __getitem__(self, index: slice) -> PredictionBatch: ...
    def __getitem__(self, index: int | slice) -> Prediction | PredictionBatch:
        if isinstance(index, slice):
            return PredictionBatch(self.predictions[index])
        return self.predictions[index]


@dataclass(frozen=True)
class Retry:
    """How long the client keeps trying a request that the service could not answer.

    A 503 (no model loaded yet, or overloaded) is retried after its ``Retry-After`` (capped at
    ``max_delay``); a connection error or timeout after 0.1 s, 0.2 s, 0.4 s, ... (capped too).
    A prediction changes nothing on the service, so retrying one is safe.
    """

    attempts: int = 5
    """Tries of one request in all, the first included (1: never retry)."""
    max_delay: float = 5.0
    """Longest wait between two tries, whatever ``Retry-After`` asks."""
    total_seconds: float = 30.0
    """No new try starts later than this after the first one."""

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise ValueError(f"attempts: must be an int >= 1, got {self.attempts!r}")
        if not self.max_delay >= 0:
            raise ValueError(f"max_delay: must be >= 0, got {self.max_delay!r}")
        if not self.total_seconds >= 0:
            raise ValueError(f"total_seconds: must be >= 0, got {self.total_seconds!r}")


NO_RETRY = Retry(attempts=1)


def check_pair(value: object, loc: str) -> Pair:
    """``value`` as a pair of bits: a tuple or list of two ints, each 0 or 1 (bools refused)."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidPair(loc, f"must be a pair (x1, x2), got {_shown(value)}")
    for index, bit in enumerate(value):
        if type(bit) is not int:  # bool is an int subclass: True is not a bit here
            kind = type(bit).__name__
            raise InvalidPair(
                f"{loc}[{index}]", f"must be the int 0 or 1, got {_shown(bit)} ({kind})"
            )
        if bit not in (0, 1):
            raise InvalidPair(f"{loc}[{index}]", f"must be 0 or 1, got {bit}")
    return (value[0], value[1])


def check_pairs(pairs: Iterable[object]) -> list[Pair]:
    """Every pair of ``pairs`` checked (``pairs[i]`` names the first bad one), before any is
    sent: a bad pair deep in a large batch must not fail it half-way."""
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Iterable):
        raise InvalidPair("pairs", f"must be an iterable of pairs, got {_shown(pairs)}")
    return [check_pair(pair, f"pairs[{index}]") for index, pair in enumerate(pairs)]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
