"""The golden set a version must answer right before it is published: the XOR truth table.

The evaluation's accuracy is measured on data the trainer chose: trained and tested on flipped
labels, a model learns XNOR and its own evaluation says 1.0. The golden set comes from the
truth table here, never from a data file. It ships with the version as
``assets.extra/golden.json``, so the server checks the same answers before it serves it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.errors import GoldenSetError

GOLDEN_FILE = Path("assets.extra") / "golden.json"
_PAIRS = ((0, 0), (0, 1), (1, 0), (1, 1))

# The exported signature's ``class_ids`` for a [rows, 2] float32 array, as a flat array.
PredictClassIds = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]


def golden_set() -> dict[str, list[Any]]:
    """``{"inputs": [[0, 0], ...], "class_ids": [0, 1, 1, 0]}``: each pair and its XOR."""
    return {"inputs": [list(pair) for pair in _PAIRS], "class_ids": [a ^ b for a, b in _PAIRS]}


def write_golden_set(version_dir: Path) -> None:
    path = version_dir / GOLDEN_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(golden_set()) + "\n", encoding="utf-8")


def check_golden_set(predict_class_ids: PredictClassIds, version_dir: Path) -> None:
    """Raise GoldenSetError unless the model answers every pair of the version's golden file.

    The file is read back as written, so what passes here is what the server will check.
    """
    document = json.loads((version_dir / GOLDEN_FILE).read_text(encoding="utf-8"))
    inputs = np.asarray(document["inputs"], dtype=np.float32)
    expected = [int(class_id) for class_id in document["class_ids"]]
    answered = [int(class_id) for class_id in np.asarray(predict_class_ids(inputs)).reshape(-1)]
    wrong = [
        f"{pair} -> {got} (expected {want})"
        for pair, got, want in zip(document["inputs"], answered, expected, strict=True)
        if got != want
    ]
    if wrong:
        raise GoldenSetError(
            f"the exported model answers the golden set (the XOR truth table) wrongly: "
            f"{', '.join(wrong)}: nothing published, whatever its test accuracy "
            "(check the labels in the training and test data)"
        )
