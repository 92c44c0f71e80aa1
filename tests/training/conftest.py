"""Training fixtures: the real pipeline, in-process, on small step counts."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training.config import TrainSettings
from training.pipeline import run
from training.versions import published_versions

REPO = Path(__file__).resolve().parents[2]

Train = Callable[..., int]

# For ``python -c``: prints main's exit code and whether TensorFlow was imported on the way.
TENSORFLOW_LEFT_UNLOADED = textwrap.dedent(
    """
    import sys
    from training.cli import main

    code = main(sys.argv[1:])
    print(code, "tensorflow" in sys.modules)
    """
)


def fake_published(export_dir: Path, version: int) -> None:
    """What published_versions counts as a version (nothing here loads it)."""
    (export_dir / str(version)).mkdir(parents=True)
    (export_dir / str(version) / "saved_model.pb").write_bytes(b"")


def evaluation(export_dir: Path) -> dict[str, Any]:
    """The evaluation.json of the newest version in ``export_dir``."""
    version = published_versions(export_dir)[-1]
    path = export_dir / str(version) / "assets.extra" / "evaluation.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.fixture
def train(tmp_path: Path) -> Train:
    """Run the whole pipeline in-process in ``tmp_path``; returns the exit code."""

    def _train(**overrides: Any) -> int:
        settings: dict[str, Any] = {
            "model_dir": tmp_path / "training",
            "export_dir": tmp_path / "xor",
            "train_data": REPO / "data" / "xor_train.csv",
            "test_data": REPO / "data" / "xor_test.csv",
            "steps": 40,
            "min_accuracy": 0.0,
            "save_checkpoints_steps": 10,
        }
        settings.update(overrides)
        if "max_steps" in overrides:
            settings.pop("steps")
        return run(TrainSettings(**settings))

    return _train


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One version trained with the defaults (1000 steps), shared by the read-only tests."""
    root = tmp_path_factory.mktemp("published")
    settings = TrainSettings(
        model_dir=root / "training",
        export_dir=root / "xor",
        train_data=REPO / "data" / "xor_train.csv",
        test_data=REPO / "data" / "xor_test.csv",
    )
    assert run(settings) == 0
    (version,) = published_versions(root / "xor")
    return root / "xor" / str(version)
