"""Finding the published versions in a model dir, and fingerprinting their files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.lifecycle.discovery import MAX_VERSION, find_versions, fingerprint
from tests.support.versions import publish_copy


def test_find_versions_ignores_everything_but_complete_integer_versions(
    model_dir: Path, trained_version: Path
) -> None:
    publish_copy(trained_version, model_dir, 3)
    publish_copy(trained_version, model_dir, 12)
    for name in (".tmp-export-abc", "abc", "1.5", "²", "0", "-4", "١٢"):
        (model_dir / name).mkdir()
        (model_dir / name / "saved_model.pb").write_bytes(b"")
    (model_dir / "20").mkdir()  # no saved_model.pb: still being written
    (model_dir / "30").write_text("a file, not a directory")
    assert [v for v, _ in find_versions(model_dir)] == [12, 3]
    assert find_versions(model_dir / "missing") == []


def test_fingerprint_changes_when_a_version_is_deleted_replaced_or_rewritten(
    model_dir: Path, trained_version: Path
) -> None:
    path = publish_copy(trained_version, model_dir, 5)
    before = fingerprint(path)
    assert before == fingerprint(path)
    assert {name for name, *_ in before} >= {".", "saved_model.pb", "variables"}
    (path / "saved_model.pb").write_bytes(b"other")  # rewritten in place
    rewritten = fingerprint(path)
    assert rewritten != before
    (path / "variables" / "extra").write_bytes(b"")  # a file added below the version
    added = fingerprint(path)
    assert added != rewritten
    shutil.rmtree(path)
    assert fingerprint(path) == ()
    # Re-created under the same number with the same content (copy2 keeps sizes and mtimes):
    # new inodes all the same.
    publish_copy(trained_version, model_dir, 5)
    assert fingerprint(path) not in (before, rewritten, added, ())


def test_fingerprint_costs_the_same_whatever_the_number_of_files(
    model_dir: Path, trained_version: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken of every loaded version on every poll: it must not stat each of 100k files."""
    path = publish_copy(trained_version, model_dir, 5)
    (path / "assets").mkdir(exist_ok=True)
    for i in range(2000):
        (path / "assets" / f"vocabulary-{i}.txt").write_bytes(b"x")
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append(str(target))
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    monkeypatch.setattr(os, "scandir", _refuse)
    monkeypatch.setattr(os, "listdir", _refuse)
    fingerprint(path)
    assert 0 < len(calls) <= 10
    assert not any("vocabulary" in call for call in calls)


def _refuse(*args: Any) -> None:
    raise AssertionError("fingerprint must not list directories")


def test_version_numbers_are_not_bounded_here_but_by_the_store(model_dir: Path) -> None:
    """Discovery finds a number beyond int64, so the store can refuse and count it."""
    for name in (str(MAX_VERSION), str(MAX_VERSION + 1), str(2**64), "9" * 40):
        (model_dir / name).mkdir()
        (model_dir / name / "saved_model.pb").write_bytes(b"")
    assert [v for v, _ in find_versions(model_dir)] == [
        int("9" * 40),
        2**64,
        MAX_VERSION + 1,
        MAX_VERSION,
    ]
    assert MAX_VERSION == 2**63 - 1
