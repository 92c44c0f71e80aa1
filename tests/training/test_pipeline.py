from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import training.train
from tests.training.conftest import (
    REPO,
    TENSORFLOW_LEFT_UNLOADED,
    Train,
    evaluation,
    fake_published,
)
from training.model import build_model
from training.pipeline import _progress_bar


def test_evaluation_describes_the_model_and_optimizer_built_not_the_flags(
    tmp_path: Path, train: Train, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        training.train, "build_model", lambda hidden_units: build_model([*hidden_units, 10])
    )
    monkeypatch.setattr(
        training.train,
        "build_optimizer",
        lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate),
    )
    # Enough steps for this model to learn XOR, or the golden set refuses to publish it.
    assert train(steps=40, hidden_units=[10, 20], learning_rate=0.02) == 0
    described = evaluation(tmp_path / "xor")["training"]
    assert described["hidden_units"] == [10, 20, 10]
    assert described["optimizer"] == "SGD"
    assert described["learning_rate"] == 0.02
    assert described["steps"] == 40


def test_bad_data_is_reported_without_importing_tensorflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,0\n0,1,2\n")
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            TENSORFLOW_LEFT_UNLOADED,
            f"--train-data={bad}",
            f"--model-dir={tmp_path / 'training'}",
            f"--export-dir={tmp_path / 'xor'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("XOR_")},
    )
    assert completed.stdout.split() == ["2", "False"], completed.stderr
    assert f"{bad}:2: column label must be 0 or 1, got '2'" in completed.stderr


def test_if_missing_with_a_version_answers_without_importing_tensorflow(tmp_path: Path) -> None:
    fake_published(tmp_path / "xor", 17)
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            TENSORFLOW_LEFT_UNLOADED,
            "--if-missing",
            f"--model-dir={tmp_path / 'training'}",
            f"--export-dir={tmp_path / 'xor'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("XOR_")},
    )
    assert completed.stdout.split() == ["0", "False"], completed.stderr
    assert f"{tmp_path / 'xor'} already holds version 17: nothing to do" in completed.stderr
    assert not (tmp_path / "training").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("interactive", [True, False])
def test_progress_bar_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, interactive: bool
) -> None:
    stream = _Terminal() if interactive else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with _progress_bar(30) as advance:
        for _ in range(3):
            advance(10)
    assert ("30/30" in stream.getvalue()) is interactive
