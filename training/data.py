"""Reading and validating the ``x1,x2,label`` CSV files, and the shuffled training pipeline.

Files are read as a stream, with caps on their size, their rows and their lines, so memory stays
bounded whatever path is given: a huge file, a pipe, or a device that never ends.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import numpy.typing as npt

from training.errors import DataError, excerpt

if TYPE_CHECKING:
    import tensorflow as tf

COLUMNS = ("x1", "x2", "label")
HEADER = ",".join(COLUMNS)

# The tutorial's files hold 4 rows. A million is far more than an XOR model can use, and bounds
# what training holds in memory: its shuffle buffer keeps every row as an element of its own.
MAX_ROWS = 1_000_000
# Room for MAX_ROWS rows in np.savetxt's longest spelling ("1.000000000000000000e+00", 75 bytes
# a row), so the row cap, not this one, is what a real data file meets first.
MAX_FILE_BYTES = 100 * 2**20
# A row is three short numbers; a longer line is not a row, and is not read into memory whole.
MAX_LINE_BYTES = 1024
_CHUNK_BYTES = 2**16
# Distinct valid lines whose parse is remembered (see load_csv).
_PARSED_LINES = 256

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
    raise DataError(f"{where}: column {column} must be 0 or 1, got {excerpt(text)}")


def _too_big(path: Path) -> DataError:
    return DataError(
        f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB, the most a data file may hold "
        f"(and at most {MAX_ROWS:,} rows)"
    )


def _lines(handle: BinaryIO, path: Path, digest: hashlib._Hash) -> Iterator[tuple[int, bytes]]:
    """Numbered lines without their endings, split as ``bytes.splitlines`` splits.

    Read in chunks: the file's size, and each line's length, are checked as they are read, so
    neither a huge file nor one endless line is ever held whole. Every byte read goes into
    ``digest``.
    """
    number = 0
    read = 0
    pending = b""
    while chunk := handle.read(_CHUNK_BYTES):
        read += len(chunk)
        if read > MAX_FILE_BYTES:
            raise _too_big(path)
        digest.update(chunk)
        lines = (pending + chunk).splitlines(keepends=True)
        # The last piece may continue in the next chunk (a "\r" may be half of a "\r\n").
        pending = lines.pop() if not lines[-1].endswith(b"\n") else b""
        for line in lines:
            number += 1
            content = line.rstrip(b"\r\n")
            if len(content) > MAX_LINE_BYTES:
                raise _line_too_long(content, path=path, number=number)
            yield number, content
        if len(pending) > MAX_LINE_BYTES:
            raise _line_too_long(pending, path=path, number=number + 1)
    for line in pending.splitlines():
        number += 1
        yield number, line


def _line_too_long(line: bytes, *, path: Path, number: int) -> DataError:
    start = line[:MAX_LINE_BYTES].decode("utf-8", errors="replace")
    return DataError(
        f"{path}:{number}: line longer than {MAX_LINE_BYTES:,} bytes, "
        f"not a row of {HEADER}: starts {excerpt(start)}"
    )


def _row(line_bytes: bytes, *, path: Path, number: int) -> tuple[float, float, float] | None:
    """The row a line holds, or None for a blank line or the header."""
    where = f"{path}:{number}"
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text") from exc
    if number == 1:
        line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        if line.strip() == HEADER:
            return None
    if not line.strip():
        return None
    fields = line.split(",")
    if len(fields) != len(COLUMNS):
        raise DataError(
            f"{where}: expected {len(COLUMNS)} columns ({HEADER}), "
            f"got {len(fields)}: {excerpt(line.strip())}"
        )
    x1, x2, label = (
        _bit(text, where=where, column=column) for text, column in zip(fields, COLUMNS, strict=True)
    )
    return x1, x2, label


def load_csv(path: str | Path) -> Dataset:
    """Read a ``x1,x2,label`` file, rejecting anything but rows of three 0/1 values.

    An optional first line ``x1,x2,label`` is a header; blank lines are skipped. Errors name
    the file, the line and the offending value, e.g. ``data/bad.csv:3: column x2 must be 0 or 1,
    got '2'``. A file beyond ``MAX_FILE_BYTES`` or ``MAX_ROWS``, or with a line beyond
    ``MAX_LINE_BYTES``, is refused.
    """
    path = Path(path)
    digest = hashlib.sha256()
    values = array("f")  # x1, x2, label of each row in turn: 12 bytes a row
    parsed: dict[bytes, tuple[float, float, float] | None] = {}
    try:
        with path.open("rb") as handle:
            status = os.fstat(handle.fileno())
            # Refused before reading; pipes and devices have no size, and are counted as read.
            if stat.S_ISREG(status.st_mode) and status.st_size > MAX_FILE_BYTES:
                raise _too_big(path)
            for number, line_bytes in _lines(handle, path, digest):
                # A file repeats a handful of distinct lines: parse each once. Line 1 may be a
                # header, so it is never taken from or put into the cache.
                if number > 1 and line_bytes in parsed:
                    row = parsed[line_bytes]
                else:
                    row = _row(line_bytes, path=path, number=number)
                    if number > 1 and len(parsed) < _PARSED_LINES:
                        parsed[line_bytes] = row
                if row is None:
                    continue
                if len(values) >= MAX_ROWS * len(COLUMNS):
                    raise DataError(
                        f"{path}:{number}: more than {MAX_ROWS:,} data rows, the most a data "
                        "file may hold"
                    )
                values.extend(row)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, expected a CSV file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from exc

    if not values:
        raise DataError(f"{path}: no data rows (expected lines like '0,1,1')")
    table = np.frombuffer(values, dtype=np.float32).reshape(-1, len(COLUMNS))
    return Dataset(
        path=path,
        features=np.ascontiguousarray(table[:, :2]),
        labels=np.ascontiguousarray(table[:, 2:]),
        sha256=digest.hexdigest(),
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
