"""Reading and validating the ``x1,x2,label`` CSV files, and the shuffled training pipeline."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from training.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

COLUMNS = ("x1", "x2", "label")
HEADER = ",".join(COLUMNS)

# A plain decimal number as people and np.savetxt write it: "1", "0.0", "1.", ".0", "1e+00".
# Deliberately narrower than float(): no "nan", "inf", "1_0", or non-ASCII digits.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Dataset:
    """Validated examples of one CSV file."""

    path: Path
    features: npt.NDArray[np.float32]  # shape [rows, 2], values 0.0 / 1.0
    labels: npt.NDArray[np.float32]  # shape [rows, 1], values 0.0 / 1.0
    sha256: str

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def _bit(text: str, *, where: str, column: str) -> float:
    value = text.strip()
    if _PLAIN_NUMBER.fullmatch(value) and float(value) in (0.0, 1.0):
        return float(value)
    raise DataError(f"{where}: column {column} must be 0 or 1, got {text!r}")


def load_csv(path: str | Path) -> Dataset:
    """Read a ``x1,x2,label`` file, rejecting anything but rows of three 0/1 values.

    An optional first line ``x1,x2,label`` is a header; blank lines are skipped. Errors name
    the file, the line and the offending value, e.g. ``data/bad.csv:3: column x2 must be 0 or 1,
    got '2'``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, expected a CSV file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from exc

    rows: list[tuple[float, float, float]] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: not UTF-8 text") from exc
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if line.strip() == HEADER:
                continue
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(COLUMNS):
            raise DataError(
                f"{where}: expected {len(COLUMNS)} columns ({HEADER}), "
                f"got {len(fields)}: {line.strip()!r}"
            )
        x1, x2, label = (
            _bit(text, where=where, column=column)
            for text, column in zip(fields, COLUMNS, strict=True)
        )
        rows.append((x1, x2, label))

    if not rows:
        raise DataError(f"{path}: no data rows (expected lines like '0,1,1')")
    table = np.asarray(rows, dtype=np.float32)
    return Dataset(
        path=path,
        features=np.ascontiguousarray(table[:, :2]),
        labels=np.ascontiguousarray(table[:, 2:]),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def training_batches(data: Dataset, *, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled batches, like ``numpy_input_fn(shuffle=True, num_epochs=None)``.

    The whole file is the shuffle buffer (a uniform shuffle each epoch). Batches are padded by
    the next epoch rather than cut short, so every step sees ``batch_size`` examples even when
    the file is smaller than a batch.
    """
    import tensorflow as tf

    examples = tf.data.Dataset.from_tensor_slices((data.features, data.labels))
    return (
        examples.shuffle(data.rows, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
