"""``xor-models`` on ``s3://`` repositories, end to end, as a user runs it: a subprocess with
the AWS variables, against the real S3 server (SeaweedFS). The secret key never shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import obstore
import pytest

from modelrepo.repository import open_repository
from modelrepo.s3 import S3Repository
from tests.modelrepo.conftest import write_source
from tests.support import REPO
from tests.support.s3 import SeaweedS3


def xor_models(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XOR_"))}
    return subprocess.run(
        [sys.executable, "-m", "modelrepo", *argv],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def s3(url: str) -> S3Repository:
    repo = open_repository(url)
    assert isinstance(repo, S3Repository)
    return repo


def objects(url: str) -> dict[str, bytes]:
    repo = s3(url)
    return {
        meta["path"]: bytes(obstore.get(repo.store, meta["path"]).bytes())
        for chunk in obstore.list(repo.store)
        for meta in chunk
    }


@pytest.fixture
def published(s3_url: str, tmp_path: Path) -> str:
    repo = open_repository(s3_url)
    for version in (100, 200, 300):
        repo.publish(write_source(tmp_path, version, accuracy=version / 400), version)
    return s3_url


def test_list_promote_rollback_labels_canary_gc(
    published: str, s3_env: dict[str, str], s3_server: SeaweedS3, tmp_path: Path
) -> None:
    url = published
    outputs: list[str] = []

    def ok(*argv: str) -> str:
        done = xor_models(s3_env, *argv)
        outputs.extend((done.stdout, done.stderr))
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = json.loads(ok("list", url, "--json"))
    assert [(r["version"], r["status"], r["accuracy"]) for r in listing["versions"]] == [
        (100, "verified", 0.25),
        (200, "verified", 0.5),
        (300, "verified", 0.75),
    ]
    assert "stable: (none) -> 200 (promoted)" in ok("promote", url, "200")
    assert "stable: 200 -> 300 (promoted)" in ok("promote", url, "300")
    assert "canary: (none) -> 100" in ok("promote", url, "100", "--label", "canary")
    assert "canary_percent: 0 -> 25" in ok("canary", url, "25")
    assert "stable: 300 -> 200 (rolled back)" in ok("rollback", url)
    labels = json.loads(ok("labels", url, "--json"))
    assert labels == {
        "labels": {"canary": 100, "stable": 200},
        "canary_percent": 25,
        "history": {},
    }
    assert json.loads(objects(url)["labels.json"]) == labels
    table = ok("list", url)
    assert "200      verified" in table and "stable" in table
    ok("promote", url, "300")
    ok("promote", url, "200")  # stable 200, history [300]; canary 100: all three in use
    assert "kept version 100 (label canary)" in ok("gc", url, "--keep", "1", "--dry-run")
    obstore.put(s3(url).store, "400/saved_model.pb", b"half")
    s3(url).publish(write_source(tmp_path, 50), 50)  # older and in no label: gc takes it
    assert "deleted version 50" in ok("gc", url, "--keep", "1")
    listing = json.loads(ok("list", url, "--json"))
    assert [r["version"] for r in listing["versions"]] == [100, 200, 300]
    assert not any(key.startswith("50/") for key in objects(url))
    # An upload without its manifest is no version, and young: gc leaves it.
    assert "400/saved_model.pb" in objects(url)
    for text in outputs:
        assert s3_server.secret_key not in text


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("promote", "{url}", "999"), 2, "no version 999"),
        (("promote", "{url}", "100", "--label", "Bad_Label"), 2, "a label name is"),
        (("rollback", "{url}"), 2, "nothing to roll back to"),
        (("canary", "{url}", "30"), 2, "no 'canary' label"),
        (("promote", "s3://Not_A_Bucket/x", "100"), 2, "bucket name"),
    ],
)
def test_bad_input_changes_nothing(
    published: str,
    s3_env: dict[str, str],
    s3_server: SeaweedS3,
    argv: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    before = objects(published)
    done = xor_models(s3_env, *(arg.format(url=published) for arg in argv))
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert objects(published) == before
    assert s3_server.secret_key not in done.stdout + done.stderr


def test_unreachable_endpoint_and_wrong_credentials(
    published: str, s3_env: dict[str, str], s3_server: SeaweedS3
) -> None:
    before = objects(published)
    cases = {
        "unreachable": {**s3_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        "access denied": {**s3_env, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key[::-1]},
        "(InvalidAccessKeyId)": {**s3_env, "AWS_ACCESS_KEY_ID": "AKNOBODY"},
    }
    for expected, env in cases.items():
        for argv in (("list", published), ("promote", published, "100"), ("labels", published)):
            done = xor_models(env, *argv)
            assert done.returncode == 1, (argv, done.stderr)
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith("xor-models: error: ") and expected in line, line
            assert s3_server.secret_key not in done.stdout + done.stderr
            assert s3_server.secret_key[::-1] not in done.stdout + done.stderr
    assert objects(published) == before


def test_a_corrupt_labels_json_is_refused(published: str, s3_env: dict[str, str]) -> None:
    obstore.put(s3(published).store, "labels.json", b'{"labels": {"stable": true}}')
    before = objects(published)
    done = xor_models(s3_env, "promote", published, "100")
    assert done.returncode == 1
    assert "labels.json: labels['stable']" in done.stderr
    assert objects(published) == before
