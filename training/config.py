"""Training settings: command-line flags over ``XOR_TRAIN_*`` environment variables over defaults.

pydantic-settings parses both and validates them in one place, so a bad value fails before any
data is read or TensorFlow is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, CliApp, NoDecode, SettingsConfigDict

from training.errors import ConfigError

ENV_PREFIX = "XOR_TRAIN_"
DEFAULT_STEPS = 1000


class TrainSettings(BaseSettings):
    """Train (or resume) the XOR DNNClassifier, evaluate it and publish a SavedModel version.

    Every flag can also be set as an environment variable: --batch-size is XOR_TRAIN_BATCH_SIZE.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        cli_prog_name="xor-train",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        extra="forbid",
    )

    steps: int | None = Field(
        None, gt=0, description=f"train this many more steps ({DEFAULT_STEPS} if neither is set)"
    )
    max_steps: int | None = Field(
        None, gt=0, description="train until the global step reaches this (instead of --steps)"
    )
    batch_size: int = Field(4, gt=0, description="examples per training step")
    learning_rate: float = Field(0.05, gt=0, allow_inf_nan=False, description="Adagrad rate")
    hidden_units: Annotated[list[int], NoDecode] = Field(
        [10, 20, 10], min_length=1, description="units per hidden layer, e.g. 10,20,10"
    )
    seed: int = Field(0, ge=0, description="seed for initial weights and shuffling")
    model_dir: Path = Field(
        Path("models/training"), description="checkpoints and TensorBoard events (resumed)"
    )
    export_dir: Path = Field(Path("models/xor"), description="published versions go here")
    train_data: Path = Field(Path("data/xor_train.csv"), description="x1,x2,label CSV")
    test_data: Path = Field(Path("data/xor_test.csv"), description="x1,x2,label CSV")
    min_accuracy: float = Field(
        1.0, ge=0, le=1, description="publish only if test accuracy is at least this"
    )
    save_checkpoints_steps: int = Field(100, gt=0, description="checkpoint every N steps")
    keep_checkpoint_max: int = Field(5, gt=0, description="checkpoints kept in the model dir")
    save_summary_steps: int = Field(100, gt=0, description="TensorBoard summary every N steps")
    log_step_count_steps: int = Field(100, gt=0, description="log loss and steps/sec every N")
    if_missing: bool = Field(
        False, description="do nothing if the export dir already holds a version"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("hidden_units", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return [part.strip() for part in text.split(",")] if text else []
        return value

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, value: list[int]) -> list[int]:
        if any(units <= 0 for units in value):
            raise ValueError(f"every layer needs at least one unit, got {value}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            return value.upper()
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")

    @model_validator(mode="after")
    def _steps_or_max_steps(self) -> TrainSettings:
        if self.steps is not None and self.max_steps is not None:
            raise ValueError("give --steps or --max-steps, not both (as Estimator.train)")
        return self

    @property
    def mode_steps(self) -> int | None:
        """Steps to train on top of the restored global step, or None when --max-steps rules."""
        if self.max_steps is None:
            return self.steps if self.steps is not None else DEFAULT_STEPS
        return None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"]:
            field, *inner = (str(part) for part in item["loc"])
            where = f"--{field.replace('_', '-')} / {ENV_PREFIX}{field.upper()}"
            where += "".join(f"[{part}]" for part in inner)
            lines.append(f"{where}: {message} (got {item.get('input')!r})")
        else:
            lines.append(message)
    return "invalid settings:\n  " + "\n  ".join(lines)


def parse_settings(argv: list[str] | None) -> TrainSettings:
    """Build the settings from ``argv`` (None: no flags) and the environment."""
    try:
        return CliApp.run(TrainSettings, cli_args=argv or [])
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
