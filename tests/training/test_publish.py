"""``--publish s3://...``: the training CLI exports locally, then publishes the version to a
model repository on a real S3 server (SeaweedFS), its label pointed there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelrepo.repository import open_repository
from tests.support import REPO
from tests.support.s3 import SeaweedS3
from training.cli import main
from training.config import parse_settings
from training.errors import ConfigError


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
