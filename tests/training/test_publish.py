"""``--publish s3://...``: the training CLI exports locally, then publishes the version to a
model repository on a real S3 server (SeaweedFS), its label pointed there."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import training.versions
from modelrepo.repository import open_repository
from tests.support import REPO
from tests.support.s3 import SeaweedS3
from tests.training.conftest import TENSORFLOW_LEFT_UNLOADED, Train, fake_published
from training.cli import main
from training.config import parse_settings
from training.errors import ConfigError
from training.versions import published_versions


@pytest.mark.parametrize("url", ["models/xor", "s3://", "s3://Bad_Bucket/x", "gs://b/x"])
def test_publish_takes_only_s3_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="--publish / XOR_TRAIN_PUBLISH"):
        parse_settings(["--publish", url])


def test_an_unreachable_store_fails_before_training(
    s3_env: dict[str, str],
    s3_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    s3_server: SeaweedS3,
) -> None:
    for name, value in (
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_SECRET_ACCESS_KEY", "wrong-" + s3_server.secret_key),
    ):
        monkeypatch.setenv(name, value)
        code = main(
            [
                "--model-dir",
                str(tmp_path / "training"),
                "--export-dir",
                str(tmp_path / "xor"),
                "--publish",
                s3_url,
                "--log-format",
                "text",
            ]
        )
        assert code == 1
        (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
        assert record.getMessage().startswith(f"cannot publish: {s3_url}: ")
        assert ("unreachable" if "ENDPOINT" in name else "access denied") in record.getMessage()
        assert s3_server.secret_key not in caplog.text
        caplog.clear()
        assert not (tmp_path / "training").exists()  # nothing trained, nothing exported
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env["AWS_ENDPOINT_URL"])


def test_training_publishes_to_s3_and_points_the_label(
    s3_env: dict[str, str], s3_url: str, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XOR_"))}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--model-dir",
            str(tmp_path / "training"),
            "--export-dir",
            str(tmp_path / "xor"),
            "--steps",
            "300",
            "--label",
            "stable",
            "--log-format",
            "text",
        ],
        cwd=REPO,
        env={**clean, **s3_env, "XOR_TRAIN_PUBLISH": s3_url, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    version = json.loads(completed.stdout)["model_version"]
    repo = open_repository(s3_url)
    assert [v.version for v in repo.list_versions()] == [version]
    manifest = repo.verify_version(version)
    local = tmp_path / "xor" / str(version)
    assert manifest == open_repository(str(tmp_path / "xor")).verify_version(version)
    assert (local / "saved_model.pb").is_file()
    assert repo.read_labels().labels == {"stable": version}
    assert [e.version for e in (repo.read_index() or pytest.fail("no index")).versions] == [version]
    assert f"published version {version} to {s3_url}" in completed.stderr
    assert s3_server.secret_key not in completed.stdout + completed.stderr


def clean_environment(s3_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without the developer's AWS_* and XOR_* settings, with the
    test server's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XOR_"))}
    return {**clean, **s3_env, "TF_CPP_MIN_LOG_LEVEL": "2"}


def put_fake_version(url: str, version: int, tmp_path: Path) -> None:
    """A version in the repository, as another trainer would have published it (nothing here
    loads it)."""
    source = tmp_path / f"fake-{version}"
    source.mkdir()
    (source / "saved_model.pb").write_bytes(b"not a model")
    open_repository(url).publish(source, version)


def test_if_missing_asks_the_repository_not_the_export_dir(
    s3_env: dict[str, str],
    s3_url: str,
    tmp_path: Path,
    train: Train,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The scale-out seed: the first run trains and publishes; a run from a container whose
    local export dir is new then does nothing, without importing TensorFlow."""
    caplog.set_level(logging.INFO, logger="training")
    assert train(if_missing=True, publish=s3_url, label="stable") == 0
    assert f"training a first model (no version in {s3_url} yet)" in caplog.messages
    (version,) = published_versions(tmp_path / "xor")
    repo = open_repository(s3_url)
    assert [v.version for v in repo.list_versions()] == [version]
    assert repo.read_labels().labels == {"stable": version}

    fresh = tmp_path / "fresh-volume"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            TENSORFLOW_LEFT_UNLOADED,
            "--if-missing",
            f"--publish={s3_url}",
            "--label=stable",
            f"--model-dir={fresh / 'training'}",
            f"--export-dir={fresh / 'xor'}",
            "--log-format=text",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=clean_environment(s3_env),
        timeout=120,
    )
    assert completed.stdout.split() == ["0", "False"], completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line.endswith(f" {s3_url} already holds version {version}: nothing to do (--if-missing)")
    assert not fresh.exists()
    assert [v.version for v in repo.list_versions()] == [version]


def test_if_missing_trains_when_only_the_export_dir_holds_a_version(
    s3_url: str, tmp_path: Path, train: Train
) -> None:
    fake_published(tmp_path / "xor", 17)
    assert train(if_missing=True, publish=s3_url) == 0
    (version,) = [v.version for v in open_repository(s3_url).list_versions()]
    assert published_versions(tmp_path / "xor") == [17, version]


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [(None, 5, 6), (7, 3, 8), (7, None, 8)],
    ids=["new-export-dir", "export-dir-ahead", "empty-repository"],
)
def test_the_new_version_is_above_the_export_dirs_and_the_repositorys(
    s3_url: str,
    tmp_path: Path,
    train: Train,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    local: int | None,
    remote: int | None,
    expected: int,
) -> None:
    """A fresh local volume, or another trainer having published, never makes the upload
    collide with a version of the repository; the local export takes the same number."""
    # Versions are Unix timestamps at least: a clock at 0 lets the small numbers decide.
    monkeypatch.setattr(training.versions, "time", SimpleNamespace(time=lambda: 0.0))
    caplog.set_level(logging.INFO, logger="training")
    if local is not None:
        fake_published(tmp_path / "xor", local)
    if remote is not None:
        put_fake_version(s3_url, remote, tmp_path)
    assert train(publish=s3_url, label="stable") == 0
    assert published_versions(tmp_path / "xor")[-1] == expected
    repo = open_repository(s3_url)
    assert [v.version for v in repo.list_versions()] == [v for v in (remote, expected) if v]
    assert repo.read_labels().labels == {"stable": expected}
    raised = [m for m in caplog.messages if "above the newest version" in m]
    if local is None:
        assert raised == [
            f"version {expected}, not 1: above the newest version ({remote}) of the repository "
            "it goes to"
        ]
    else:
        assert raised == []


def test_if_missing_with_an_unreachable_repository_fails_fast(
    s3_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not "nothing to do" because the export dir holds a version, nor "train anyway"."""
    fake_published(tmp_path / "xor", 17)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    code = main(
        [
            "--if-missing",
            f"--publish={s3_url}",
            f"--model-dir={tmp_path / 'training'}",
            f"--export-dir={tmp_path / 'xor'}",
            "--log-format=text",
        ]
    )
    assert code == 1
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith(f"cannot publish: {s3_url}: ")
    assert "unreachable" in record.getMessage()
    assert "nothing to do" not in caplog.text
    assert not (tmp_path / "training").exists()
