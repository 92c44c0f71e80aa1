"""The command line: end to end in real subprocesses (each pays TensorFlow's import), and its
hand-over to the pipeline in-process."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from tests.training.conftest import REPO, fake_published
from training import pipeline
from training.cli import main
from training.config import TrainSettings
from training.errors import DataError, ExportError, GoldenSetError, QualityGateError
from training.versions import published_versions


def command(tmp_path: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training",
        f"--model-dir={tmp_path / 'training'}",
        f"--export-dir={tmp_path / 'xor'}",
        *flags,
    ]


def environment(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
    return {**clean, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def newest_checkpoint_step(model_dir: Path) -> int:
    path = tf.train.latest_checkpoint(str(model_dir))
    return int(path.rsplit("-", 1)[1])


@pytest.mark.slow
def test_defaults_train_to_full_accuracy_and_publish(tmp_path: Path) -> None:
    completed = subprocess.run(
        command(tmp_path), cwd=REPO, capture_output=True, text=True, env=environment()
    )
    assert completed.returncode == 0, completed.stderr
    # Not a terminal: JSON lines only, none of TensorFlow's C++ start-up notices among them.
    logged = [json.loads(line) for line in completed.stderr.splitlines()]
    assert {line["level"] for line in logged} == {"INFO"}
    result = json.loads(completed.stdout)
    (version,) = published_versions(tmp_path / "xor")
    assert result["path"] == str(tmp_path / "xor" / str(version))
    assert result["model_version"] == version
    assert result["metrics"]["accuracy"] == 1.0
    assert result["metrics"]["global_step"] == 1000
    # The Estimator-style progress lines.
    assert "loss = " in completed.stderr and ", step = 1000" in completed.stderr
    assert "global_step/sec: " in completed.stderr
    assert f"Exported version {version}" in completed.stderr

    again = subprocess.run(
        command(tmp_path, "--if-missing"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=environment(),
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to do (--if-missing)" in again.stderr
    assert published_versions(tmp_path / "xor") == [version]


@pytest.mark.slow
def test_environment_variables_configure_the_run(tmp_path: Path) -> None:
    env = environment(
        XOR_TRAIN_STEPS="25",
        XOR_TRAIN_MODEL_DIR=str(tmp_path / "training"),
        XOR_TRAIN_EXPORT_DIR=str(tmp_path / "xor"),
        XOR_TRAIN_MIN_ACCURACY="0",
        XOR_TRAIN_HIDDEN_UNITS="6,6",
    )
    completed = subprocess.run(
        [sys.executable, "-m", "training"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["metrics"]["global_step"] == 25
    assert result["training"]["hidden_units"] == [6, 6]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    """Killed mid-step or mid-checkpoint-write (one is written every step), a run resumes."""
    rng = random.Random(os.getpid())
    for attempt in range(2):
        process = subprocess.Popen(
            command(tmp_path, "--steps=100000", "--save-checkpoints-steps=1", "--min-accuracy=0"),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(),
        )
        deadline = time.monotonic() + 60
        state = tmp_path / "training" / "checkpoint"
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.exists(), f"attempt {attempt}: no checkpoint within 60 s"
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL

    killed_at = newest_checkpoint_step(tmp_path / "training")
    assert killed_at > 0
    # The state file is rewritten only after a checkpoint's files are complete, so the newest
    # listed checkpoint always restores. CheckpointManager records the new checkpoint *before*
    # deleting the oldest and records again after, so a kill in between leaves the oldest listed
    # without files (TensorFlow's documented trade-off); the resume skips such entries.
    listed = list(
        tf.train.get_checkpoint_state(str(tmp_path / "training")).all_model_checkpoint_paths
    )
    assert listed[-1].endswith(f"model.ckpt-{killed_at}")
    for position, path in enumerate(listed):
        if position == 0 and not tf.io.gfile.glob(path + ".index"):
            continue
        tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert published_versions(tmp_path / "xor") == []

    exit_code = main(
        [
            f"--model-dir={tmp_path / 'training'}",
            f"--export-dir={tmp_path / 'xor'}",
            "--steps=10",
            "--min-accuracy=0",
        ]
    )
    assert exit_code == 0
    assert newest_checkpoint_step(tmp_path / "training") == killed_at + 10


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_publishes_nothing(tmp_path: Path) -> None:
    process = subprocess.Popen(
        command(tmp_path, "--steps=1000000", "--save-checkpoints-steps=100000"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    deadline = time.monotonic() + 60
    assert process.stderr is not None
    for line in process.stderr:  # wait until steps are running
        if "global_step/sec" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received" in stderr and "run again to resume" in stderr
    assert newest_checkpoint_step(tmp_path / "training") >= 100
    assert published_versions(tmp_path / "xor") == []


@pytest.mark.slow
def test_bad_data_trains_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,0\n0,1,1\n1,2,1\n")
    exit_code = main(
        [
            f"--model-dir={tmp_path / 'training'}",
            f"--export-dir={tmp_path / 'xor'}",
            f"--test-data={bad}",
        ]
    )
    assert exit_code == 2
    assert f"{bad}:3: column x2 must be 0 or 1, got '2'" in caplog.text
    assert not (tmp_path / "training").exists()
    assert not (tmp_path / "xor").exists()


@pytest.mark.slow
def test_quality_gate_keeps_checkpoints_and_publishes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The same input with both labels: no model can be right on both rows.
    contradictory = tmp_path / "contradictory.csv"
    contradictory.write_text("0,1,1\n0,1,0\n")
    flags = [
        f"--model-dir={tmp_path / 'training'}",
        f"--export-dir={tmp_path / 'xor'}",
        f"--test-data={contradictory}",
        "--steps=20",
    ]
    assert main(flags) == 3
    assert "test accuracy 0.5000 is below --min-accuracy 1.0: nothing published" in caplog.text
    assert newest_checkpoint_step(tmp_path / "training") == 20
    assert list((tmp_path / "xor").iterdir()) == []  # no version, no leftover temp dir

    assert main([*flags, "--min-accuracy=0.5"]) == 0
    assert len(published_versions(tmp_path / "xor")) == 1


def test_flipped_labels_are_refused_at_the_golden_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Trained and tested on XNOR, the model's own evaluation says accuracy 1.0; the golden set
    (the XOR truth table, not the data) refuses it."""
    caplog.set_level(logging.INFO, logger="training")
    xnor = tmp_path / "xnor.csv"
    xnor.write_text("0,0,1\n0,1,0\n1,0,0\n1,1,1\n")
    flags = [
        f"--model-dir={tmp_path / 'training'}",
        f"--export-dir={tmp_path / 'xor'}",
        f"--train-data={xnor}",
        f"--test-data={xnor}",
        "--steps=40",
    ]
    assert main(flags) == 3  # --min-accuracy is 1.0
    assert "Saving dict for global step 40: accuracy = 1," in caplog.text
    assert (
        "the exported model answers the golden set (the XOR truth table) wrongly: "
        "[0, 0] -> 1 (expected 0)"
    ) in caplog.text
    assert list((tmp_path / "xor").iterdir()) == []  # no version, no leftover temp dir
    assert newest_checkpoint_step(tmp_path / "training") == 40


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--seed=4294967296", "--seed / XOR_TRAIN_SEED: Input should be less than or equal to"),
        ("--batch-size=2147483648", "--batch-size / XOR_TRAIN_BATCH_SIZE: Input should be less"),
        ("--hidden-units=100000000", "--hidden-units / XOR_TRAIN_HIDDEN_UNITS: a layer has at"),
        ("--learning-rate=1e300", "--learning-rate / XOR_TRAIN_LEARNING_RATE: Input should be"),
        ("--steps=10000000000", "--steps / XOR_TRAIN_STEPS: Input should be less than or equal"),
    ],
)
def test_out_of_range_flags_exit_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    code = main([f"--model-dir={tmp_path / 'training'}", f"--export-dir={tmp_path / 'xor'}", flag])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "training").exists()


@pytest.mark.slow
def test_bad_flag_is_a_usage_error(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("xor-train")), "--steps", "0"],
        capture_output=True,
        text=True,
        env=environment(),
    )
    assert completed.returncode == 2
    assert "--steps / XOR_TRAIN_STEPS: Input should be greater than 0" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_console_script_help(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("xor-train")), "--help"],
        capture_output=True,
        text=True,
        env=environment(),
    )
    assert completed.returncode == 0
    for flag in ("--steps", "--max-steps", "--hidden-units", "--min-accuracy", "--if-missing"):
        assert flag in completed.stdout


def test_main_hands_the_parsed_flags_to_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    received: list[TrainSettings] = []

    def run(settings: TrainSettings) -> int:
        received.append(settings)
        return 7

    monkeypatch.setattr(pipeline, "run", run)
    assert main(["--steps=5", "--hidden-units=3,4", f"--model-dir={tmp_path}"]) == 7
    (settings,) = received
    assert (settings.steps, settings.hidden_units, settings.model_dir) == (5, [3, 4], tmp_path)


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (DataError("data/bad.csv:3: column x2 must be 0 or 1"), 2),
        (QualityGateError("test accuracy 0.5 is below --min-accuracy 1.0"), 3),
        (GoldenSetError("the exported model answers the golden set wrongly"), 3),
        (ExportError("models/xor: cannot write versions here"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_main_turns_pipeline_failures_into_exit_codes(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    exit_code: int,
) -> None:
    def run(settings: TrainSettings) -> int:
        raise error

    monkeypatch.setattr(pipeline, "run", run)
    assert main([]) == exit_code
    assert (str(error) or "interrupted") in caplog.text


@pytest.mark.parametrize(
    ("flags", "has_version", "said", "exit_code"),
    [
        (["--if-missing"], False, True, 2),
        (["--if-missing"], True, False, 0),
        ([], False, False, 2),  # always trains: nothing worth saying
    ],
)
def test_if_missing_says_when_it_trains_a_first_model(
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    flags: list[str],
    has_version: bool,
    said: bool,
    exit_code: int,
) -> None:
    """Bad data stops a run that trains before it imports TensorFlow (exit code 2)."""
    caplog.set_level(logging.INFO, logger="training")
    export_dir = tmp_path / "xor"
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,2\n")
    if has_version:
        fake_published(export_dir, 17)
    argv = [*flags, f"--export-dir={export_dir}", f"--train-data={bad}"]
    assert main([*argv, f"--model-dir={tmp_path / 'training'}"]) == exit_code
    expected = f"training a first model (no version in {export_dir} yet)"
    assert (expected in caplog.messages) is said


def test_if_missing_on_an_unreadable_export_dir_is_a_clear_error(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "xor"
    not_a_dir.write_text("")
    assert main(["--if-missing", f"--export-dir={not_a_dir}"]) == 1
    assert f"{not_a_dir}: cannot list its versions: Not a directory" in caplog.messages


@pytest.mark.parametrize(
    ("how", "pattern"),
    [
        (
            ["--log-format=text"],
            r"\d\d:\d\d:\d\d\.\d{3} INFO  .* already holds version 17: nothing to do "
            r"\(--if-missing\)",
        ),
        ([], r'\{"ts":.*"message":".* already holds version 17: nothing to do.*'),
        (["XOR_TRAIN_LOG_FORMAT=TEXT"], r"\d\d:\d\d:\d\d\.\d{3} INFO  .*"),
    ],
    ids=["flag-text", "auto-json", "variable-text"],
)
def test_log_lines_are_text_or_json_as_asked(tmp_path: Path, how: list[str], pattern: str) -> None:
    """auto (the default) is JSON where no person reads, as here; --log-format or
    XOR_TRAIN_LOG_FORMAT choose. The --if-missing path answers without TensorFlow."""
    fake_published(tmp_path / "xor", 17)
    flags = [flag for flag in how if flag.startswith("--")]
    variables = dict(flag.split("=", 1) for flag in how if not flag.startswith("--"))
    completed = subprocess.run(
        command(tmp_path, "--if-missing", *flags),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=environment(**variables),
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert re.fullmatch(pattern, line), line
