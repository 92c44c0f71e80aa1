"""The training curve: ``history.jsonl`` in the model dir (resumed runs continue it) and
``assets.extra/training_history.json`` in each version (downsampled, capped, in the manifest,
ending at the evaluation's global step)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import training.train
from modelrepo.manifest import read_manifest_file
from tests.training.conftest import Train, evaluation
from training import export
from training.export import HISTORY_FILE, downsample, history_document
from training.train import HISTORY_FILE as MODEL_DIR_HISTORY
from training.train import HistoryPoint, read_history
from training.versions import published_versions


def shipped_history(export_dir: Path) -> dict[str, Any]:
    version = published_versions(export_dir)[-1]
    document: dict[str, Any] = json.loads((export_dir / str(version) / HISTORY_FILE).read_text())
    return document


def steps(document: dict[str, Any]) -> list[int]:
    return [point["step"] for point in document["points"]]


def test_a_version_ships_its_curve_in_its_manifest(tmp_path: Path, train: Train) -> None:
    assert train(steps=40, save_summary_steps=10) == 0
    export_dir = tmp_path / "xor"
    document = shipped_history(export_dir)
    assert steps(document) == [10, 20, 30, 40]
    assert document["global_step"] == evaluation(export_dir)["metrics"]["global_step"] == 40
    assert document["accuracy_of"].startswith("training batch")
    for point in document["points"]:
        assert set(point) == {"step", "loss", "accuracy"}
        assert point["loss"] > 0
        assert 0 <= point["accuracy"] <= 1
    version = published_versions(export_dir)[-1]
    manifest, _ = read_manifest_file(export_dir / str(version), version)
    assert str(HISTORY_FILE) in {entry.path for entry in manifest.files}


def test_the_curve_ends_at_the_global_step_between_summaries(tmp_path: Path, train: Train) -> None:
    assert train(steps=25, save_summary_steps=10) == 0
    assert steps(shipped_history(tmp_path / "xor")) == [10, 20, 25]
    assert evaluation(tmp_path / "xor")["metrics"]["global_step"] == 25


def test_a_resumed_run_continues_the_curve(tmp_path: Path, train: Train) -> None:
    assert train(steps=40, save_summary_steps=10) == 0
    first = shipped_history(tmp_path / "xor")
    assert train(steps=25, save_summary_steps=10) == 0
    second = shipped_history(tmp_path / "xor")
    assert steps(second) == [10, 20, 30, 40, 50, 60, 65]
    assert second["points"][:4] == first["points"]
    assert second["global_step"] == evaluation(tmp_path / "xor")["metrics"]["global_step"] == 65


def test_points_beyond_the_restored_checkpoint_are_dropped(
    tmp_path: Path, train: Train, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed after a summary but before its checkpoint (or a fallback to an older
    checkpoint) leaves points the restored model never reached; and half a line."""
    assert train(steps=40, save_summary_steps=10) == 0
    history = tmp_path / "training" / MODEL_DIR_HISTORY
    with history.open("a") as handle:
        handle.write('{"step": 50, "loss": 9.0, "accuracy": 0.0}\n{"step": 60, "lo')
    caplog.set_level(logging.INFO)
    assert train(steps=20, save_summary_steps=10) == 0
    assert "1 points after step 40 dropped" in caplog.text
    document = shipped_history(tmp_path / "xor")
    assert steps(document) == [10, 20, 30, 40, 50, 60]
    assert document["points"][4]["loss"] != 9.0
    assert [point.step for point in read_history(history)] == [10, 20, 30, 40, 50, 60]


def test_the_model_dirs_history_is_thinned_when_long(
    tmp_path: Path, train: Train, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.train, "MAX_HISTORY_LINES", 8)
    assert train(steps=40, save_summary_steps=1) == 0
    lines = (tmp_path / "training" / MODEL_DIR_HISTORY).read_text().splitlines()
    assert 4 <= len(lines) <= 8
    recorded = [json.loads(line)["step"] for line in lines]
    assert recorded == sorted(recorded) and recorded[-1] == 40
    assert steps(shipped_history(tmp_path / "xor"))[-1] == 40


def test_without_a_curve_ending_at_the_global_step_nothing_is_shipped(
    tmp_path: Path, train: Train, caplog: pytest.LogCaptureFixture
) -> None:
    """A model dir trained before curves were recorded, exported with no further step."""
    assert train(steps=20) == 0
    (tmp_path / "training" / MODEL_DIR_HISTORY).unlink()
    caplog.set_level(logging.INFO)
    assert train(max_steps=20) == 0
    assert "no training curve ends at global step 20" in caplog.text
    version = published_versions(tmp_path / "xor")[-1]
    assert not (tmp_path / "xor" / str(version) / HISTORY_FILE).exists()
    assert (tmp_path / "xor" / str(version) / "assets.extra" / "evaluation.json").is_file()


def curve(count: int, every: int = 100) -> list[HistoryPoint]:
    return [
        HistoryPoint(every * (i + 1), 1 / (i + 1) + 0.123456789, 0.5 + i / (4 * count))
        for i in range(count)
    ]


def test_downsampling_keeps_the_first_and_last_points_evenly() -> None:
    points = curve(10_000)
    kept = downsample(points, 500)
    assert len(kept) == 500
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert [p.step for p in kept] == sorted({p.step for p in kept})
    assert downsample(points[:30], 500) == points[:30]


def test_the_shipped_curve_is_capped_in_points_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    points = curve(100_000)
    data = history_document(points, points[-1].step)
    assert data is not None
    document = json.loads(data)
    assert len(document["points"]) == export.MAX_HISTORY_POINTS
    assert len(data) <= export.MAX_HISTORY_BYTES
    assert document["recorded_points"] == 100_000
    assert document["points"][-1]["step"] == points[-1].step
    # A cap the points do not fit: fewer points until it does, the last one still there.
    monkeypatch.setattr(export, "MAX_HISTORY_BYTES", 4096)
    small = history_document(points, points[-1].step)
    assert small is not None and len(small) <= 4096
    assert json.loads(small)["points"][-1]["step"] == points[-1].step


def test_a_curve_that_does_not_end_at_the_global_step_is_not_shipped() -> None:
    assert history_document(curve(5), 600) is None
    assert history_document([], 0) is None
