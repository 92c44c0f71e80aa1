from __future__ import annotations

from pathlib import Path

import pytest

from training.config import (
    DEFAULT_STEPS,
    MAX_BATCH_SIZE,
    MAX_KEEP_CHECKPOINTS,
    MAX_LAYERS,
    MAX_LEARNING_RATE,
    MAX_SEED,
    MAX_STEPS,
    MAX_UNITS,
    parse_settings,
)
from training.errors import ConfigError


def test_defaults_are_the_tutorials() -> None:
    settings = parse_settings([])
    assert settings.hidden_units == [10, 20, 10]
    assert settings.batch_size == 4
    assert settings.learning_rate == 0.05
    assert settings.mode_steps == DEFAULT_STEPS == 1000
    assert settings.model_dir == Path("models/training")
    assert settings.export_dir == Path("models/xor")
    assert settings.min_accuracy == 1.0
    assert settings.keep_checkpoint_max == 5
    assert settings.log_format == "auto"


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_TRAIN_HIDDEN_UNITS", "8,8")
    monkeypatch.setenv("XOR_TRAIN_STEPS", "30")
    monkeypatch.setenv("XOR_TRAIN_IF_MISSING", "true")
    settings = parse_settings(["--steps", "7", "--learning-rate", "0.1"])
    assert settings.hidden_units == [8, 8]
    assert settings.mode_steps == 7
    assert settings.learning_rate == 0.1
    assert settings.if_missing is True


@pytest.mark.parametrize("units", ["4,3", "[4, 3]", " 4 , 3 "])
def test_hidden_units_accept_comma_and_json_lists(units: str) -> None:
    assert parse_settings(["--hidden-units", units]).hidden_units == [4, 3]


def test_the_log_format_is_read_in_any_case_from_flag_or_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse_settings(["--log-format", "TEXT"]).log_format == "text"
    monkeypatch.setenv("XOR_TRAIN_LOG_FORMAT", "Json")
    assert parse_settings([]).log_format == "json"
    # The server's variable is not training's: each reads its own prefix.
    monkeypatch.delenv("XOR_TRAIN_LOG_FORMAT")
    monkeypatch.setenv("XOR_LOG_FORMAT", "text")
    assert parse_settings([]).log_format == "auto"


def test_max_steps_replaces_steps() -> None:
    settings = parse_settings(["--max-steps", "5000"])
    assert settings.mode_steps is None and settings.max_steps == 5000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps / XOR_TRAIN_STEPS: Input should be greater than 0"),
        (["--steps", "1", "--max-steps", "2"], "give --steps or --max-steps, not both"),
        (["--hidden-units", "4,0"], "every layer needs at least one unit"),
        (["--hidden-units", ""], "--hidden-units / XOR_TRAIN_HIDDEN_UNITS"),
        (["--hidden-units", "4,x"], "--hidden-units / XOR_TRAIN_HIDDEN_UNITS"),
        (["--learning-rate", "nan"], "--learning-rate / XOR_TRAIN_LEARNING_RATE"),
        (["--min-accuracy", "1.5"], "--min-accuracy / XOR_TRAIN_MIN_ACCURACY"),
        (["--log-level", "loud"], "must be DEBUG, INFO, WARNING or ERROR, got 'loud'"),
        (
            ["--log-format", "xml"],
            "--log-format / XOR_TRAIN_LOG_FORMAT: Input should be 'auto', 'json' or 'text'",
        ),
    ],
)
def test_bad_values_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(argv)
    assert message in str(caught.value)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_TRAIN_BATCH_SIZE", "-4")
    with pytest.raises(ConfigError, match="XOR_TRAIN_BATCH_SIZE"):
        parse_settings([])


def test_unknown_flag_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings(["--stepz", "3"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --stepz" in capsys.readouterr().err


def test_every_number_accepts_its_bound() -> None:
    settings = parse_settings(
        [
            f"--steps={MAX_STEPS}",
            f"--batch-size={MAX_BATCH_SIZE}",
            f"--learning-rate={MAX_LEARNING_RATE}",
            f"--hidden-units={','.join([str(MAX_UNITS)] * MAX_LAYERS)}",
            f"--seed={MAX_SEED}",
            f"--save-checkpoints-steps={MAX_STEPS}",
            f"--keep-checkpoint-max={MAX_KEEP_CHECKPOINTS}",
            f"--save-summary-steps={MAX_STEPS}",
            f"--log-step-count-steps={MAX_STEPS}",
        ]
    )
    assert settings.hidden_units == [MAX_UNITS] * MAX_LAYERS
    assert parse_settings([f"--max-steps={MAX_STEPS}"]).max_steps == MAX_STEPS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "4294967296"], "--seed / XOR_TRAIN_SEED: Input should be less than or equal"),
        (["--seed", str(2**64)], "--seed / XOR_TRAIN_SEED"),
        (["--seed", "-1"], "--seed / XOR_TRAIN_SEED"),
        (["--batch-size", str(MAX_BATCH_SIZE + 1)], "--batch-size / XOR_TRAIN_BATCH_SIZE"),
        (["--batch-size", "2147483648"], "--batch-size / XOR_TRAIN_BATCH_SIZE"),
        (["--hidden-units", str(MAX_UNITS + 1)], f"a layer has at most {MAX_UNITS} units"),
        (["--hidden-units", "100000000"], f"a layer has at most {MAX_UNITS} units"),
        (["--hidden-units", ",".join(["1"] * (MAX_LAYERS + 1))], f"at most {MAX_LAYERS} items"),
        (["--steps", str(MAX_STEPS + 1)], "--steps / XOR_TRAIN_STEPS"),
        (["--max-steps", str(MAX_STEPS + 1)], "--max-steps / XOR_TRAIN_MAX_STEPS"),
        (["--learning-rate", "10.5"], "--learning-rate / XOR_TRAIN_LEARNING_RATE"),
        (["--learning-rate", "1e300"], "--learning-rate / XOR_TRAIN_LEARNING_RATE"),
        (["--learning-rate", "0"], "--learning-rate / XOR_TRAIN_LEARNING_RATE"),
        (["--keep-checkpoint-max", "101"], "--keep-checkpoint-max / XOR_TRAIN_KEEP_CHECKPOINT_MAX"),
        (["--save-checkpoints-steps", str(MAX_STEPS + 1)], "--save-checkpoints-steps"),
        (["--save-summary-steps", str(MAX_STEPS + 1)], "--save-summary-steps"),
        (["--log-step-count-steps", str(MAX_STEPS + 1)], "--log-step-count-steps"),
    ],
)
def test_values_beyond_the_bounds_name_their_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(argv)
    assert message in str(caught.value)


def test_the_seed_bound_is_what_keras_set_random_seed_accepts() -> None:
    import keras

    keras.utils.set_random_seed(MAX_SEED)
    with pytest.raises(ValueError):
        keras.utils.set_random_seed(MAX_SEED + 1)


def test_a_huge_value_is_quoted_as_an_excerpt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_TRAIN_HIDDEN_UNITS", ",".join(["1"] * 100_000))
    with pytest.raises(ConfigError) as caught:
        parse_settings([])
    message = str(caught.value)
    assert "XOR_TRAIN_HIDDEN_UNITS" in message and "characters)" in message
    assert len(message) < 400
