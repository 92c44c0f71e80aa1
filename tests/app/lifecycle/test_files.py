"""Reading a version's files: symlinks followed to regular files only, capped, never blocking.

Every read that could block runs under ``finishes``: a regression fails the test instead of
hanging the run.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import ModelLoadError
from app.lifecycle.files import (
    MAX_JSON_BYTES,
    MissingFile,
    check_regular_files,
    read_json_file,
    read_regular_file,
)
from tests.support.waiting import finishes


def test_a_regular_file_and_a_symlink_to_one_are_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "file").write_bytes(b"content")
    (tmp_path / "link").symlink_to(tmp_path / "data" / "file")
    (tmp_path / "relative").symlink_to(Path("data") / "file")
    for name in ("data/file", "link", "relative"):
        assert read_regular_file(tmp_path / name, 100) == b"content"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "evaluation.json"
    os.mkfifo(fifo)
    with pytest.raises(ModelLoadError, match="must be a regular file, is a FIFO"):
        finishes(lambda: read_regular_file(fifo, 100), what="reading a FIFO")
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(ModelLoadError, match="is a FIFO"):
        finishes(lambda: read_json_file(link), what="reading a symlink to a FIFO")


def test_a_symlink_to_dev_zero_is_refused_unread(tmp_path: Path) -> None:
    link = tmp_path / "evaluation.json"
    link.symlink_to("/dev/zero")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ModelLoadError, match="must be a regular file, is a character device"):
        finishes(lambda: read_json_file(link), what="reading /dev/zero")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # the peak did not grow by the gigabytes an unbounded read takes


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.symlink_to(path.parent / "nowhere"), "missing"),
        (lambda path: path.symlink_to(path), "unreadable"),  # a symlink loop
    ],
    ids=["directory", "dangling symlink", "symlink loop"],
)
def test_what_is_not_a_readable_regular_file_is_refused(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "evaluation.json"
    make(path)
    with pytest.raises(ModelLoadError, match=message):
        read_regular_file(path, 100)


def test_missing_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFile, match="missing"):
        read_regular_file(tmp_path / "absent", 100)


def test_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100) == b"x" * 100
    path.write_bytes(b"x" * 101)
    with pytest.raises(ModelLoadError, match="101 bytes, more than the 100 allowed"):
        read_regular_file(path, 100)
    big = tmp_path / "evaluation.json"
    big.write_bytes(b" " * MAX_JSON_BYTES + b"{}")
    with pytest.raises(ModelLoadError, match="more than the 1,048,576 allowed"):
        read_json_file(big)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff{}", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["not utf-8", "truncated", "deeply nested"],
)
def test_json_that_cannot_be_read_is_a_load_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "golden.json"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        read_json_file(path)


def _version(tmp_path: Path) -> Path:
    root = tmp_path / "7"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"pb")
    (root / "variables" / "variables.index").write_bytes(b"index")
    return root


def test_a_version_of_regular_files_passes_symlinks_and_loops_included(tmp_path: Path) -> None:
    root = _version(tmp_path)
    elsewhere = tmp_path / "synced"
    elsewhere.mkdir()
    (elsewhere / "vocabulary.txt").write_bytes(b"a")
    (root / "assets").symlink_to(elsewhere)  # a directory made of symlinks, as mounts are
    (root / "variables" / "up").symlink_to(root)  # a loop: entered once
    finishes(lambda: check_regular_files(root), what="walking the version")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: os.mkfifo(path), "is a FIFO"),
        (lambda path: path.symlink_to("/dev/zero"), "is a character device"),
        (lambda path: path.symlink_to(path.parent / "nowhere"), "is a dangling symlink"),
    ],
    ids=["fifo", "dev zero", "dangling symlink"],
)
def test_a_version_with_a_file_that_is_not_regular_is_refused(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    root = _version(tmp_path)
    shard = root / "variables" / "variables.data-00000-of-00001"
    make(shard)
    with pytest.raises(ModelLoadError, match=f"variables.data-00000-of-00001: .*{message}"):
        finishes(lambda: check_regular_files(root), what="walking the version")
