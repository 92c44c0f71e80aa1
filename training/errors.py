"""Errors the training pipeline reports to its user.

TrainingError                 anything the user can fix; the CLI prints it and exits non-zero
├── ConfigError               invalid flags or environment variables (exit 2)
├── DataError                 a CSV file that is missing or has a bad row (exit 2)
├── ModelDirError             model dir unusable: other architecture, locked, unreadable (exit 2)
├── QualityGateError          test accuracy below --min-accuracy; nothing published (exit 3)
│   └── GoldenSetError        the exported model answers the golden set wrongly (exit 3)
└── ExportError               the version could not be published (exit 1)
"""

# Longest piece of user input an error message quotes (a bad line may be megabytes long).
EXCERPT_CHARS = 80


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (and its length said).

    Messages quote what the user gave so they can find it; quoting all of a megabyte-long line
    would bury the message (and a log pipeline) under it.
    """
    if isinstance(value, str):
        # The repr of the start only: a huge string is never copied whole.
        text, length = repr(value[:limit]), len(value)
        if length <= limit and len(text) <= limit + 2:  # room for the quotes
            return text
        # Escapes (e.g. of control characters) can make even the start's repr long.
        return f"{text if len(text) <= limit + 2 else text[:limit]}... ({length:,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class TrainingError(Exception):
    """Base class: a failure with a message meant for the person running the training."""

    exit_code = 1


class ConfigError(TrainingError):
    exit_code = 2


class DataError(TrainingError):
    exit_code = 2


class ModelDirError(TrainingError):
    exit_code = 2


class QualityGateError(TrainingError):
    exit_code = 3


class ExportError(TrainingError):
    exit_code = 1


class GoldenSetError(QualityGateError):
    """A wrong model is a quality failure, even when its evaluation (on data the trainer chose)
    says otherwise."""
