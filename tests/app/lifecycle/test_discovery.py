"""Finding the published versions in a model dir, and fingerprinting their files."""

from __future__ import annotations

from pathlib import Path

from app.lifecycle.discovery import find_versions, fingerprint
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


def test_fingerprint_changes_with_the_files(model_dir: Path, trained_version: Path) -> None:
    path = publish_copy(trained_version, model_dir, 5)
    before = fingerprint(path)
    assert before == fingerprint(path)
    assert any(name == "saved_model.pb" for name, _, _ in before)
    (path / "saved_model.pb").write_bytes(b"other")
    assert fingerprint(path) != before
