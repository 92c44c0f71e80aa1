"""Errors of the model repository, each with the exit code ``xor-models`` gives it.

ModelRepoError                 anything the user can fix; the CLI prints it, one line
├── RepositoryError            the operation failed (exit 1)
│   ├── RepositoryNotFound     the repository does not exist, or is not a directory
│   ├── FormatError            labels.json, index.json or a MANIFEST.json breaks the format
│   ├── VerificationError      a version's files do not match its manifest
│   ├── VersionExists          publishing a version number that exists (versions are immutable)
│   └── LockTimeout            another process held the repository's lock too long
└── UsageError                 the request itself cannot be carried out (exit 2)
    ├── UnknownVersion         no such version in the repository
    └── NothingToRollBack      the label has no previous value in its history

A bad label name, version number or percentage is a UsageError too (raised while parsing).
"""

from __future__ import annotations

# Longest piece of untrusted text an error message quotes.
EXCERPT_CHARS = 80


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters."""
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}..."


class ModelRepoError(Exception):
    """Base class: a failure with a message meant for the person running the command."""

    exit_code = 1


class RepositoryError(ModelRepoError):
    exit_code = 1


class RepositoryNotFound(RepositoryError):
    pass


class FormatError(RepositoryError):
    pass


class VerificationError(RepositoryError):
    pass


class VersionExists(RepositoryError):
    pass


class LockTimeout(RepositoryError):
    pass


class UsageError(ModelRepoError):
    exit_code = 2


class UnknownVersion(UsageError):
    pass


class NothingToRollBack(UsageError):
    pass
