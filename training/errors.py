"""Errors the training pipeline reports to its user.

TrainingError                 anything the user can fix; the CLI prints it and exits non-zero
├── ConfigError               invalid flags or environment variables (exit 2)
├── DataError                 a CSV file that is missing or has a bad row (exit 2)
├── ModelDirError             model dir unusable: other architecture, locked, unreadable (exit 2)
├── QualityGateError          test accuracy below --min-accuracy; nothing published (exit 3)
└── ExportError               the version could not be published (exit 1)
"""


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
