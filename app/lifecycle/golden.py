"""The golden set: pairs a version must answer right, through its signature, before it serves.

An evaluation's accuracy is computed on data the trainer chose: training on flipped labels
gives an XNOR model whose own evaluation says 1.0. So every version is also checked against
``assets.extra/golden.json``, which training writes from the XOR truth table (not from its
data)::

    {"inputs": [[0, 0], [0, 1], [1, 0], [1, 1]], "class_ids": [0, 1, 1, 0]}

A version without the file (exported before it existed, or dropped in by hand) is checked
against the XOR truth table itself. The file is validated strictly: an unknown key could be a
condition this server does not know how to check, and a gate must not pass what it skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import ModelLoadError
from app.lifecycle.files import MissingFile, read_json_file

log = logging.getLogger(__name__)

GOLDEN_FILE = Path("assets.extra") / "golden.json"
MAX_ROWS = 64
_KEYS = {"inputs", "class_ids"}


@dataclass(frozen=True)
class GoldenSet:
    inputs: npt.NDArray[np.float32]  # [n, 2]
    class_ids: npt.NDArray[np.int64]  # [n]
    source: str


XOR_TRUTH_TABLE = GoldenSet(
    inputs=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32),
    class_ids=np.array([0, 1, 1, 0], dtype=np.int64),
    source="the XOR truth table",
)


def _is_bit(value: Any) -> bool:
    return type(value) is int and value in (0, 1)  # not bool, not 1.0


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | str)


def _short(value: Any) -> str:
    """``value`` for an error message: a scalar or flat list as written (cut at 40 characters),
    anything nested by its kind, never a deep ``repr``."""
    if _scalar(value) or (isinstance(value, list) and all(map(_scalar, value))):
        return f"{value!r:.40}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return "an object"


def parse_golden_set(document: Any, where: Path) -> GoldenSet:
    """``document`` (golden.json's content) as a GoldenSet, or ModelLoadError naming the fault."""
    if not isinstance(document, dict):
        raise ModelLoadError(f"{where}: must be a JSON object")
    if set(document) != _KEYS:
        raise ModelLoadError(
            f"{where}: must have exactly the keys {sorted(_KEYS)}, has {sorted(document)}"
        )
    inputs, class_ids = document["inputs"], document["class_ids"]
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_ROWS:
        raise ModelLoadError(f"{where}: 'inputs' must be a list of 1 to {MAX_ROWS} pairs")
    for i, row in enumerate(inputs):
        if not isinstance(row, list) or len(row) != 2 or not all(map(_is_bit, row)):
            raise ModelLoadError(
                f"{where}: inputs[{i}] must be a pair of the integers 0 or 1, got {_short(row)}"
            )
    if not isinstance(class_ids, list) or len(class_ids) != len(inputs):
        raise ModelLoadError(
            f"{where}: 'class_ids' must be a list as long as 'inputs' ({len(inputs)})"
        )
    for i, class_id in enumerate(class_ids):
        if not _is_bit(class_id):
            raise ModelLoadError(
                f"{where}: class_ids[{i}] must be the integer 0 or 1, got {_short(class_id)}"
            )
    return GoldenSet(
        inputs=np.array(inputs, dtype=np.float32),
        class_ids=np.array(class_ids, dtype=np.int64),
        source=str(where),
    )


def read_golden_set(path: Path, version: int) -> GoldenSet:
    """The golden set of the version in ``path``: its golden.json, or the XOR truth table
    (said in one INFO line) if it has none."""
    file = path / GOLDEN_FILE
    try:
        document = read_json_file(file)
    except MissingFile:
        log.info(
            "model version %d has no %s: checked against the XOR truth table",
            version,
            GOLDEN_FILE,
            extra={"event": "golden_set_default", "model_version": version, "path": str(path)},
        )
        return XOR_TRUTH_TABLE
    return parse_golden_set(document, file)


def check_answers(golden: GoldenSet, class_ids: npt.NDArray[Any], where: Path) -> None:
    """ModelLoadError unless ``class_ids`` (the signature's, row by row) are the golden ones."""
    answers = class_ids.reshape(-1)
    wrong = np.flatnonzero(answers != golden.class_ids)
    if wrong.size:
        first = int(wrong[0])
        raise ModelLoadError(
            f"{where}: answers {wrong.size} of the {len(answers)} pairs of its golden set "
            f"({golden.source}) wrong, e.g. {golden.inputs[first].astype(int).tolist()} gave "
            f"class_id {int(answers[first])}, expected {int(golden.class_ids[first])}: refused"
        )
