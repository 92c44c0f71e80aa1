from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import REPO, Train, evaluation
from training.config import TrainSettings
from training.errors import ModelDirError, TrainingError
from training.pipeline import run
from training.train import locked_model_dir
from training.versions import published_versions


def checkpoint_steps(model_dir: Path) -> list[int]:
    state = tf.train.get_checkpoint_state(str(model_dir))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


def weights(model_dir: Path) -> dict[str, np.ndarray]:
    """Every variable of the newest checkpoint: weights, Adagrad accumulators, step."""
    reader = tf.train.load_checkpoint(str(model_dir))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.endswith("VARIABLE_VALUE") and not name.startswith("save_counter")
    }


def test_runs_resume_and_continue_the_global_step(tmp_path: Path, train: Train) -> None:
    assert train(steps=30) == 0
    assert checkpoint_steps(tmp_path / "training")[-1] == 30
    assert train(steps=30) == 0
    assert checkpoint_steps(tmp_path / "training")[-1] == 60
    assert evaluation(tmp_path / "xor")["metrics"]["global_step"] == 60
    assert evaluation(tmp_path / "xor")["training"]["steps"] == 30
    # --max-steps counts the global step: 70 means 10 more.
    assert train(max_steps=70) == 0
    assert checkpoint_steps(tmp_path / "training")[-1] == 70


def test_learning_rate_flag_applies_on_resume(tmp_path: Path, train: Train) -> None:
    assert train(steps=10, learning_rate=0.05) == 0
    assert train(steps=10, learning_rate=0.01) == 0
    rate = tf.train.load_checkpoint(str(tmp_path / "training")).get_tensor(
        "optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"
    )
    assert rate == pytest.approx(0.01)


def test_max_steps_already_reached_trains_nothing(
    tmp_path: Path, train: Train, caplog: pytest.LogCaptureFixture
) -> None:
    assert train(steps=20) == 0
    before = weights(tmp_path / "training")
    caplog.set_level(logging.INFO)
    assert train(max_steps=10) == 0
    assert "Skipping training: global step 20 already reached 10" in caplog.text
    assert checkpoint_steps(tmp_path / "training") == [10, 20]
    after = weights(tmp_path / "training")
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_keeps_the_newest_checkpoints(tmp_path: Path, train: Train) -> None:
    assert train(steps=95, save_checkpoints_steps=10, keep_checkpoint_max=5) == 0
    # Every 10 steps plus the final step; only the newest five stay on disk.
    assert checkpoint_steps(tmp_path / "training") == [60, 70, 80, 90, 95]
    on_disk = sorted(p.name for p in (tmp_path / "training").glob("model.ckpt-*.index"))
    assert on_disk == sorted(f"model.ckpt-{s}.index" for s in (60, 70, 80, 90, 95))


def test_resumes_when_killed_between_listing_and_deleting_a_checkpoint(
    tmp_path: Path, train: Train
) -> None:
    """CheckpointManager lists a new checkpoint before it deletes the oldest; a kill in between
    leaves the state file naming files that are gone. The next run resumes and tidies the list."""
    assert train(steps=50, save_checkpoints_steps=10, keep_checkpoint_max=5) == 0
    assert checkpoint_steps(tmp_path / "training") == [10, 20, 30, 40, 50]
    for path in (tmp_path / "training").glob("model.ckpt-10.*"):
        path.unlink()
    assert train(steps=10, save_checkpoints_steps=10, keep_checkpoint_max=5) == 0
    assert checkpoint_steps(tmp_path / "training") == [20, 30, 40, 50, 60]
    assert evaluation(tmp_path / "xor")["metrics"]["global_step"] == 60


def test_same_seed_gives_identical_weights_and_metrics(tmp_path: Path, train: Train) -> None:
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        root = tmp_path / name
        code = train(seed=seed, model_dir=root / "training", export_dir=root / "xor")
        assert code == 0
        runs[name] = (weights(root / "training"), evaluation(root / "xor")["metrics"])
    (wa, ma), (wb, mb), (wc, _) = runs["a"], runs["b"], runs["c"]
    # 4 kernels + 4 biases, their 8 accumulators, the step and the learning rate
    assert wa.keys() == wb.keys() and len(wa) == 18
    assert all(np.array_equal(wa[name], wb[name]) for name in wa)
    assert ma == mb
    assert not all(np.array_equal(wa[name], wc[name]) for name in wa)


def test_other_architecture_against_a_model_dir_is_an_error(tmp_path: Path, train: Train) -> None:
    assert train(steps=10) == 0
    before = sorted(p.name for p in (tmp_path / "training").iterdir())
    with pytest.raises(ModelDirError, match=r"holds a model with --hidden-units 10,20,10, not 8,8"):
        train(steps=10, hidden_units=[8, 8])
    assert sorted(p.name for p in (tmp_path / "training").iterdir()) == before
    assert checkpoint_steps(tmp_path / "training") == [10]


def test_checkpoint_without_architecture_record_still_refuses_other_shapes(
    tmp_path: Path, train: Train
) -> None:
    assert train(steps=10) == 0
    (tmp_path / "training" / "model_config.json").unlink()
    with pytest.raises(ModelDirError, match="no checkpoint could be restored"):
        train(steps=10, hidden_units=[8, 8])


def test_unreadable_newest_checkpoint_falls_back_to_an_older_one(
    tmp_path: Path, train: Train, caplog: pytest.LogCaptureFixture
) -> None:
    assert train(steps=30) == 0
    newest = tmp_path / "training" / "model.ckpt-30.data-00000-of-00001"
    newest.write_bytes(b"\0" * 16)
    caplog.set_level(logging.INFO)
    assert train(steps=5) == 0
    assert "cannot restore" in caplog.text and "model.ckpt-30" in caplog.text
    assert "Restoring parameters from" in caplog.text and "model.ckpt-20" in caplog.text
    assert evaluation(tmp_path / "xor")["metrics"]["global_step"] == 25


def test_tensorboard_events_hold_loss_accuracy_and_evaluation(tmp_path: Path, train: Train) -> None:
    assert train(steps=40, save_summary_steps=10) == 0

    def scalars(directory: Path) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for path in directory.glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    found.setdefault(value.tag, []).append(event.step)
        return found

    train_scalars = scalars(tmp_path / "training")
    assert train_scalars["loss"] == [10, 20, 30, 40]
    assert train_scalars["accuracy"] == [10, 20, 30, 40]
    eval_scalars = scalars(tmp_path / "training" / "eval")
    assert {"accuracy", "auc", "loss", "average_loss"} <= eval_scalars.keys()
    assert eval_scalars["accuracy"] == [40]


def test_divergence_stops_before_a_bad_checkpoint(tmp_path: Path) -> None:
    # --learning-rate stops at 10, where Adagrad does not diverge: the guard is for what no flag
    # can foresee, so the rate that makes it diverge is set past the flags' validation.
    settings = TrainSettings(
        model_dir=tmp_path / "training",
        export_dir=tmp_path / "xor",
        train_data=REPO / "data" / "xor_train.csv",
        test_data=REPO / "data" / "xor_test.csv",
        steps=200,
        min_accuracy=0.0,
        save_checkpoints_steps=1,
    ).model_copy(update={"learning_rate": 1e38})
    with pytest.raises(TrainingError, match=r"model diverged with loss = (nan|inf)"):
        run(settings)
    saved = checkpoint_steps(tmp_path / "training")
    assert saved and saved[-1] < 200
    assert all(np.isfinite(values).all() for values in weights(tmp_path / "training").values())
    assert published_versions(tmp_path / "xor") == []


def test_a_second_run_on_the_same_model_dir_is_refused(tmp_path: Path) -> None:
    with (
        locked_model_dir(tmp_path),
        pytest.raises(ModelDirError, match="another training run"),
        locked_model_dir(tmp_path),
    ):
        pass
    with locked_model_dir(tmp_path):  # released again
        pass


def test_model_dir_that_is_a_file_is_an_error(tmp_path: Path, train: Train) -> None:
    (tmp_path / "training").write_text("not a directory")
    with pytest.raises(ModelDirError, match="cannot use as model dir"):
        train()
