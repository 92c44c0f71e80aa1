"""Repositories of small fake versions: the format does not care what a SavedModel holds, so
these tests need no TensorFlow (the training and app tests use real models)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from modelrepo.repository import LocalRepository


def write_source(root: Path, version: int, *, accuracy: float | None = 1.0) -> Path:
    """A version directory as training leaves it (without a manifest), outside any repository."""
    source = root / f"source-{version}"
    (source / "variables").mkdir(parents=True)
    (source / "assets.extra").mkdir()
    (source / "saved_model.pb").write_bytes(b"saved model of version %d" % version)
    (source / "variables" / "variables.index").write_bytes(b"index %d" % version)
    (source / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(256))
    if accuracy is not None:
        (source / "assets.extra" / "evaluation.json").write_text(
            json.dumps({"model_version": version, "metrics": {"accuracy": accuracy}})
        )
    return source


def drop_unverified(repo_dir: Path, version: int) -> Path:
    """A version without a manifest, as hand-dropped or exported before manifests existed."""
    target = repo_dir / str(version)
    (target / "variables").mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"old export")
    (target / "variables" / "variables.index").write_bytes(b"old index")
    return target


Snapshot = dict[str, tuple[str, bytes | str | None, int]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: its kind, content (files) or target (symlinks), and mode."""
    result: Snapshot = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            info = path.lstat()
            relative = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                result[relative] = ("symlink", os.readlink(path), info.st_mode)
            elif stat.S_ISREG(info.st_mode):
                result[relative] = ("file", path.read_bytes(), info.st_mode)
            else:
                result[relative] = ("dir" if stat.S_ISDIR(info.st_mode) else "other", None, 0)
    return result


Publish = Callable[..., int]


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def repo(repo_dir: Path) -> LocalRepository:
    return LocalRepository(repo_dir)


@pytest.fixture
def publish(tmp_path: Path, repo: LocalRepository) -> Publish:
    """Publish a fresh fake version into ``repo``; returns its number."""

    def _publish(version: int, **options: object) -> int:
        source = write_source(tmp_path, version, **options)  # type: ignore[arg-type]
        repo.publish(source, version)
        return version

    return _publish
