"""Training publishes into a model repository: a manifest in every version, index.json
rewritten after each publish, and ``--label`` pointing a label at the new version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modelrepo.format import MANIFEST_FILE
from modelrepo.repository import LocalRepository
from tests.training.conftest import Train
from training.config import parse_settings
from training.errors import ConfigError, ExportError
from training.versions import published_versions


def test_the_trained_version_has_a_manifest_that_verifies(trained_version: Path) -> None:
    repo = LocalRepository(trained_version.parent, require_manifest=True)
    version = int(trained_version.name)
    manifest = repo.verify_version(version)
    paths = [entry.path for entry in manifest.files]
    assert {
        "saved_model.pb",
        "fingerprint.pb",
        "variables/variables.index",
        "assets.extra/evaluation.json",
        "assets.extra/golden.json",
    } <= set(paths)
    assert MANIFEST_FILE not in paths
    # Written last: no file of the version is newer than its manifest.
    written = (trained_version / MANIFEST_FILE).stat().st_mtime_ns
    assert all((trained_version / path).stat().st_mtime_ns <= written for path in paths)


def test_training_rewrites_the_index(trained_version: Path) -> None:
    index = json.loads((trained_version.parent / "index.json").read_text())
    manifest = (trained_version / MANIFEST_FILE).read_bytes()
    assert index == {
        "format": 1,
        "versions": [
            {
                "version": int(trained_version.name),
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            }
        ],
    }


def test_label_points_at_each_new_version(tmp_path: Path, train: Train) -> None:
    export_dir = tmp_path / "xor"
    old = export_dir / "5"
    old.mkdir(parents=True)
    (old / "saved_model.pb").write_bytes(b"an export from before manifests")

    assert train(steps=5, label="stable") == 0
    first = published_versions(export_dir)[-1]
    assert train(steps=5, label="stable") == 0
    second = published_versions(export_dir)[-1]

    repo = LocalRepository(export_dir)
    labels = repo.read_labels()
    assert dict(labels.labels) == {"stable": second}
    assert labels.history["stable"] == (first,)
    assert [(info.version, info.has_manifest) for info in repo.list_versions()] == [
        (5, False),
        (first, True),
        (second, True),
    ]
    index = repo.read_index()
    assert index is not None
    assert [entry.version for entry in index.versions] == [first, second]


def test_without_label_no_labels_file_is_written(tmp_path: Path, train: Train) -> None:
    assert train(steps=5) == 0
    assert sorted(p.name for p in (tmp_path / "xor").iterdir() if not p.is_dir()) == [
        ".modelrepo.lock",
        "index.json",
    ]


def test_a_corrupt_labels_file_fails_the_label_not_the_publication(
    tmp_path: Path, train: Train
) -> None:
    export_dir = tmp_path / "xor"
    export_dir.mkdir()
    (export_dir / "labels.json").write_text('{"labels": {"stable": true}}')
    with pytest.raises(ExportError) as caught:
        train(steps=5, label="stable")
    (version,) = published_versions(export_dir)
    assert str(caught.value) == (
        f"version {version} published, but label stable not set: {export_dir}/labels.json: "
        "labels['stable']: must be a version, an integer 1 to 2**63-1, got True"
    )
    assert caught.value.exit_code == 1
    assert (export_dir / "labels.json").read_text() == '{"labels": {"stable": true}}'


@pytest.mark.parametrize("label", ["Stable", "1st", "a_b", "", "x" * 64])
def test_a_bad_label_name_is_a_settings_error(label: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings([f"--label={label}"])
    assert "--label / XOR_TRAIN_LABEL: a label name is a lowercase letter" in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_label_comes_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_TRAIN_LABEL", "canary")
    assert parse_settings([]).label == "canary"
    monkeypatch.setenv("XOR_TRAIN_LABEL", "CANARY")
    with pytest.raises(ConfigError, match="XOR_TRAIN_LABEL"):
        parse_settings([])
