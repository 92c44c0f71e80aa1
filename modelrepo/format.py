"""The repository's documents as values: parsing (strict, with messages that say where and
what) and serialising MANIFEST.json, labels.json and index.json. No I/O here.

The format is described in the package docstring (``modelrepo/__init__.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from modelrepo.errors import FormatError, UsageError, excerpt

FORMAT = 1
MANIFEST_FILE = "MANIFEST.json"
LABELS_FILE = "labels.json"
INDEX_FILE = "index.json"
LOCK_FILE = ".modelrepo.lock"

# Versions are int64, as in TF Serving, both protocols' clients and the server.
MAX_VERSION = 2**63 - 1
# Version directory names as the server reads them: ASCII digits only ("²" is a digit to
# str.isdigit, and int() refuses it), positive, at most MAX_VERSION.
VERSION_NAME = re.compile(r"[0-9]+")

LABEL_NAME = re.compile(r"[a-z][a-z0-9-]*")
MAX_LABEL_LENGTH = 63  # a DNS label's length: label names may end up in hostnames and metrics
MAX_LABELS = 100
MAX_HISTORY = 20  # previous values kept per label
DEFAULT_LABEL = "stable"
CANARY_LABEL = "canary"

MAX_LABELS_BYTES = 1 << 20
MAX_INDEX_BYTES = 4 << 20
MAX_MANIFEST_BYTES = 4 << 20
MAX_PATH_CHARS = 1024
MAX_FILE_SIZE = 2**63 - 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
REQUIRED_FILE = "saved_model.pb"


def _is_int(value: Any) -> bool:
    """An integer and not a bool (``isinstance(True, int)`` is true)."""
    return type(value) is int


def version_number(name: str) -> int | None:
    """The positive integer a directory name spells in ASCII digits, or None. Not bounded by
    MAX_VERSION: a server lists a larger one too, to refuse it by name instead of not seeing
    it (use :func:`version_from_name` for a version that can be served)."""
    if VERSION_NAME.fullmatch(name) and (number := int(name)) > 0:
        return number
    return None


def version_from_name(name: str) -> int | None:
    """The version a directory name stands for, or None if it names none."""
    number = version_number(name)
    return number if number is not None and number <= MAX_VERSION else None


def check_version(value: Any, where: str) -> int:
    if not _is_int(value) or not 0 < value <= MAX_VERSION:
        raise FormatError(
            f"{where}: must be a version, an integer 1 to 2**63-1, got {excerpt(value)}"
        )
    return int(value)


def parse_version_argument(text: str) -> int:
    """A version typed by a user; UsageError unless 1 to 2**63-1 in ASCII digits."""
    if not VERSION_NAME.fullmatch(text) or not 0 < int(text) <= MAX_VERSION:
        raise UsageError(f"a version is an integer 1 to 2**63-1, got {excerpt(text)}")
    return int(text)


def label_name_problem(name: Any) -> str | None:
    """Why ``name`` is not a label name, or None if it is one."""
    if not isinstance(name, str):
        return f"a label name is a string, got {excerpt(name)}"
    if len(name) > MAX_LABEL_LENGTH or not LABEL_NAME.fullmatch(name):
        return (
            f"a label name is a lowercase letter, then lowercase letters, digits or '-', at most "
            f"{MAX_LABEL_LENGTH} characters, got {excerpt(name)}"
        )
    return None


def check_label_name(name: str) -> str:
    """``name`` if it is a label name; UsageError otherwise (for names a user typed)."""
    if problem := label_name_problem(name):
        raise UsageError(problem)
    return name


def parse_percent_argument(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", text) or int(text) > 100:
        raise UsageError(f"the canary percentage is an integer 0 to 100, got {excerpt(text)}")
    return int(text)


def _object(value: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{where}: must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - required - optional)
    if unknown:
        raise FormatError(f"{where}: unknown key {excerpt(unknown[0])}")
    missing = sorted(required - set(value))
    if missing:
        raise FormatError(f"{where}: missing key {missing[0]!r}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{where}: must be a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError(f"{where}: must be a JSON array, got {type(value).__name__}")
    if max_items is not None and len(value) > max_items:
        raise FormatError(f"{where}: at most {max_items} entries, got {len(value)}")
    return value


def _format(value: Any, where: str) -> None:
    if not _is_int(value) or value != FORMAT:
        raise FormatError(
            f"{where}: format {excerpt(value)} is not supported (this reads {FORMAT})"
        )


def sha256_problem(value: Any) -> str | None:
    if isinstance(value, str) and _SHA256.fullmatch(value):
        return None
    return f"must be 64 lowercase hexadecimal digits, got {excerpt(value)}"


# --- MANIFEST.json ----------------------------------------------------------------------------


def path_problem(path: Any) -> str | None:
    """Why ``path`` cannot name a file of a version, or None."""
    if not isinstance(path, str) or not path:
        return f"must be a non-empty string, got {excerpt(path)}"
    if len(path) > MAX_PATH_CHARS:
        return f"at most {MAX_PATH_CHARS} characters, got {len(path)}"
    if "\x00" in path or "\\" in path:
        return f"must not hold NUL or '\\', got {excerpt(path)}"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return (
            f"must be a relative POSIX path without '.', '..' or empty parts, got {excerpt(path)}"
        )
    if path == MANIFEST_FILE:
        return "the manifest does not list itself"
    return None


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Every file of a version but the manifest: relative POSIX paths, sorted."""

    version: int
    files: tuple[FileEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "files": [
                {"path": entry.path, "size": entry.size, "sha256": entry.sha256}
                for entry in self.files
            ],
        }

    @staticmethod
    def build(version: int, files: Sequence[FileEntry]) -> Manifest:
        """A manifest of ``files`` (any order), checked as a parsed one would be."""
        ordered = tuple(sorted(files, key=lambda entry: entry.path))
        return Manifest.parse(
            Manifest(check_version(version, "version"), ordered).to_document(), "manifest"
        )

    @staticmethod
    def parse(document: Any, where: str) -> Manifest:
        document = _object(document, where, {"format", "version", "files"}, set())
        _format(document["format"], f"{where}: format")
        version = check_version(document["version"], f"{where}: version")
        entries: list[FileEntry] = []
        for position, item in enumerate(_list(document["files"], f"{where}: files")):
            at = f"{where}: files[{position}]"
            item = _object(item, at, {"path", "size", "sha256"}, set())
            if problem := path_problem(item["path"]):
                raise FormatError(f"{at}.path: {problem}")
            size = item["size"]
            if not _is_int(size) or not 0 <= size <= MAX_FILE_SIZE:
                raise FormatError(
                    f"{at}.size: must be an integer 0 to 2**63-1, got {excerpt(size)}"
                )
            if problem := sha256_problem(item["sha256"]):
                raise FormatError(f"{at}.sha256: {problem}")
            if entries and item["path"] <= entries[-1].path:
                raise FormatError(
                    f"{at}.path: paths must be sorted and unique, "
                    f"{excerpt(item['path'])} comes after {excerpt(entries[-1].path)}"
                )
            entries.append(FileEntry(item["path"], size, item["sha256"]))
        paths = {entry.path for entry in entries}
        for entry in entries:
            parts = entry.path.split("/")
            for depth in range(1, len(parts)):
                if (parent := "/".join(parts[:depth])) in paths:
                    raise FormatError(
                        f"{where}: {excerpt(parent)} is listed as a file and as the directory "
                        f"of {excerpt(entry.path)}"
                    )
        if REQUIRED_FILE not in paths:
            raise FormatError(f"{where}: does not list {REQUIRED_FILE} (a version is a SavedModel)")
        return Manifest(version, tuple(entries))


# --- labels.json ------------------------------------------------------------------------------


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(mapping.items())))


@dataclass(frozen=True)
class Labels:
    """labels.json: label -> version, the canary's share, each label's previous values.

    Absent labels.json reads as ``Labels()``: no labels, canary_percent 0, no history.
    """

    labels: Mapping[str, int] = field(default_factory=dict)
    canary_percent: int = 0
    history: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(
            self, "history", _frozen({k: tuple(v) for k, v in self.history.items() if v})
        )

    def versions_in_use(self) -> dict[int, list[str]]:
        """Every version a label points at or keeps in its history, with why."""
        reasons: dict[int, list[str]] = {}
        for name, version in self.labels.items():
            reasons.setdefault(version, []).append(f"label {name}")
        for name, previous in self.history.items():
            for version in previous:
                reasons.setdefault(version, []).append(f"history of {name}")
        return reasons

    def pointing_at(self, version: int) -> list[str]:
        return [name for name, value in self.labels.items() if value == version]

    def with_label(self, name: str, version: int) -> Labels:
        """``name`` pointed at ``version``; its previous value (if any) appended to its history
        (the oldest entries dropped beyond MAX_HISTORY). Unchanged if it already points there."""
        check_label_name(name)
        previous = self.labels.get(name)
        if previous == version:
            return self
        labels = {**self.labels, name: version}
        history = dict(self.history)
        if previous is not None:
            history[name] = (*history.get(name, ()), previous)[-MAX_HISTORY:]
        return replace(self, labels=labels, history=history)

    def rolled_back(self, name: str) -> Labels:
        """``name`` pointed at the newest entry of its history, which leaves the history."""
        previous = self.history.get(name, ())
        if not previous:
            raise ValueError(f"{name} has no history")
        history = {**self.history, name: previous[:-1]}
        return replace(self, labels={**self.labels, name: previous[-1]}, history=history)

    def to_document(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "canary_percent": self.canary_percent,
            "history": {name: list(values) for name, values in self.history.items()},
        }

    @staticmethod
    def parse(document: Any, where: str) -> Labels:
        document = _object(document, where, {"labels"}, {"canary_percent", "history"})
        labels = _mapping(document["labels"], f"{where}: labels")
        if len(labels) > MAX_LABELS:
            raise FormatError(f"{where}: labels: at most {MAX_LABELS} labels, got {len(labels)}")
        for name, version in labels.items():
            if problem := label_name_problem(name):
                raise FormatError(f"{where}: labels: {problem}")
            check_version(version, f"{where}: labels[{name!r}]")
        percent = document.get("canary_percent", 0)
        if not _is_int(percent) or not 0 <= percent <= 100:
            raise FormatError(
                f"{where}: canary_percent: must be an integer 0 to 100, got {excerpt(percent)}"
            )
        raw_history = document.get("history", {})
        history = _mapping(raw_history, f"{where}: history")
        if len(history) > MAX_LABELS:
            raise FormatError(f"{where}: history: at most {MAX_LABELS} labels, got {len(history)}")
        parsed_history: dict[str, tuple[int, ...]] = {}
        for name, values in history.items():
            if problem := label_name_problem(name):
                raise FormatError(f"{where}: history: {problem}")
            at = f"{where}: history[{name!r}]"
            parsed_history[name] = tuple(
                check_version(value, f"{at}[{position}]")
                for position, value in enumerate(_list(values, at, MAX_HISTORY))
            )
        return Labels(labels, percent, parsed_history)


# --- index.json -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexEntry:
    version: int
    manifest_sha256: str


@dataclass(frozen=True)
class Index:
    """index.json: the versions with a manifest, ascending, and each manifest's sha256."""

    versions: tuple[IndexEntry, ...] = ()

    def to_document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "versions": [
                {"version": entry.version, "manifest_sha256": entry.manifest_sha256}
                for entry in self.versions
            ],
        }

    @staticmethod
    def parse(document: Any, where: str) -> Index:
        document = _object(document, where, {"format", "versions"}, set())
        _format(document["format"], f"{where}: format")
        entries: list[IndexEntry] = []
        for position, item in enumerate(_list(document["versions"], f"{where}: versions")):
            at = f"{where}: versions[{position}]"
            item = _object(item, at, {"version", "manifest_sha256"}, set())
            version = check_version(item["version"], f"{at}.version")
            if problem := sha256_problem(item["manifest_sha256"]):
                raise FormatError(f"{at}.manifest_sha256: {problem}")
            if entries and version <= entries[-1].version:
                raise FormatError(f"{at}.version: versions must be ascending and unique")
            entries.append(IndexEntry(version, item["manifest_sha256"]))
        return Index(tuple(entries))
