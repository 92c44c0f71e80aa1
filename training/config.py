"""Training settings: command-line flags over ``XOR_TRAIN_*`` environment variables over defaults.

pydantic-settings parses both and validates them in one place, so a bad value fails before any
data is read or TensorFlow is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, CliApp, NoDecode, SettingsConfigDict

from modelrepo.format import label_name_problem
from training.data import MAX_FILE_BYTES, MAX_ROWS
from training.errors import ConfigError, excerpt
from xorlog.formats import parse_log_format

ENV_PREFIX = "XOR_TRAIN_"
DEFAULT_STEPS = 1000

# Bounds on every number a run takes, so a typo fails here, naming its flag, rather than as a
# traceback deep in TensorFlow or NumPy, or as gigabytes of memory for a handful of steps.
# keras.utils.set_random_seed seeds NumPy, whose seeds are 32-bit.
MAX_SEED = 2**32 - 1
# Far beyond any run this model needs, and well inside the int64 global step.
MAX_STEPS = 10**9
# Batch, width and depth together bound a step's memory and time. Each is far beyond the
# tutorial's (batches of 4, three layers of 10 to 20 units); all three at once, with the
# largest data files, still train in well under 2 GB (README, Training).
MAX_BATCH_SIZE = 4096
MAX_UNITS = 1024
MAX_LAYERS = 8
# 200 times the Estimator's default (0.05), far above any rate that trains this model well.
MAX_LEARNING_RATE = 10.0
# Each checkpoint is a full copy of the model and its optimizer slots.
MAX_KEEP_CHECKPOINTS = 100
_DATA_CAPS = f", at most {MAX_ROWS:,} rows and {MAX_FILE_BYTES // 2**20} MiB"


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
        None,
        gt=0,
        le=MAX_STEPS,
        description=f"train this many more steps, 1 to {MAX_STEPS:,} "
        f"({DEFAULT_STEPS} if neither is set)",
    )
    max_steps: int | None = Field(
        None,
        gt=0,
        le=MAX_STEPS,
        description="train until the global step reaches this (instead of --steps), "
        f"1 to {MAX_STEPS:,}",
    )
    batch_size: int = Field(
        4, gt=0, le=MAX_BATCH_SIZE, description=f"examples per training step, 1 to {MAX_BATCH_SIZE}"
    )
    learning_rate: float = Field(
        0.05,
        gt=0,
        le=MAX_LEARNING_RATE,
        allow_inf_nan=False,
        description=f"Adagrad rate, above 0 and at most {MAX_LEARNING_RATE:g}",
    )
    hidden_units: Annotated[list[int], NoDecode] = Field(
        [10, 20, 10],
        min_length=1,
        max_length=MAX_LAYERS,
        description=f"units per hidden layer, e.g. 10,20,10: 1 to {MAX_LAYERS} layers "
        f"of 1 to {MAX_UNITS} units",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description=f"seed for initial weights and shuffling, 0 to {MAX_SEED} (2**32 - 1)",
    )
    model_dir: Path = Field(
        Path("models/training"), description="checkpoints and TensorBoard events (resumed)"
    )
    export_dir: Path = Field(Path("models/xor"), description="published versions go here")
    train_data: Path = Field(Path("data/xor_train.csv"), description=f"x1,x2,label CSV{_DATA_CAPS}")
    test_data: Path = Field(Path("data/xor_test.csv"), description=f"x1,x2,label CSV{_DATA_CAPS}")
    min_accuracy: float = Field(
        1.0, ge=0, le=1, description="publish only if test accuracy is at least this"
    )
    save_checkpoints_steps: int = Field(
        100, gt=0, le=MAX_STEPS, description=f"checkpoint every N steps, 1 to {MAX_STEPS:,}"
    )
    keep_checkpoint_max: int = Field(
        5,
        gt=0,
        le=MAX_KEEP_CHECKPOINTS,
        description=f"checkpoints kept in the model dir, 1 to {MAX_KEEP_CHECKPOINTS}",
    )
    save_summary_steps: int = Field(
        100,
        gt=0,
        le=MAX_STEPS,
        description=f"TensorBoard summary every N steps, 1 to {MAX_STEPS:,}",
    )
    log_step_count_steps: int = Field(
        100,
        gt=0,
        le=MAX_STEPS,
        description=f"log loss and steps/sec every N steps, 1 to {MAX_STEPS:,}",
    )
    label: str | None = Field(
        None,
        description="once published, point this label (e.g. stable) of the export dir's (or "
        "of the --publish repository's) "
        "labels.json at the new version, its previous value kept for rollback; a lowercase "
        "letter, then lowercase letters, digits or '-', at most 63 characters",
    )
    publish: str | None = Field(
        None,
        description="after the local export, upload the version to this model repository on "
        "S3, s3://BUCKET/PREFIX (endpoint and credentials from AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); the version is numbered above "
        "the repository's newest as well as the export dir's, and --label then points a label "
        "there",
    )
    if_missing: bool = Field(
        False,
        description="do nothing if the export dir already holds a version; with --publish, "
        "if that repository does (whatever the export dir holds)",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    # Literal, not the LogFormat enum: --help then lists the values as they are typed.
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="text (readable lines), json (one object per line), or auto: text when "
        "stderr is a terminal, JSON otherwise",
    )

    @field_validator("hidden_units", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return [part.strip() for part in text.split(",")] if text else []
        return value

    @field_validator("hidden_units")
    @classmethod
    def _units_per_layer(cls, value: list[int]) -> list[int]:
        if any(units <= 0 for units in value):
            raise ValueError("every layer needs at least one unit")
        if any(units > MAX_UNITS for units in value):
            raise ValueError(f"a layer has at most {MAX_UNITS} units")
        return value

    @field_validator("label")
    @classmethod
    def _label_name(cls, value: str | None) -> str | None:
        if value is not None and (problem := label_name_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("publish")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from modelrepo.s3 import SCHEME

        if not value.lower().startswith(SCHEME):
            raise ValueError("must be an s3://BUCKET/PREFIX URL")
        from modelrepo.errors import UsageError
        from modelrepo.s3 import parse_s3_url

        try:
            parse_s3_url(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            return value.upper()
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return parse_log_format(value)

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
            lines.append(f"{where}: {message} (got {excerpt(item.get('input'))})")
        else:
            lines.append(message)
    return "invalid settings:\n  " + "\n  ".join(lines)


def parse_settings(argv: list[str] | None) -> TrainSettings:
    """Build the settings from ``argv`` (None: no flags) and the environment."""
    try:
        return CliApp.run(TrainSettings, cli_args=argv or [])
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
