"""S3Repository against a real S3 server (SeaweedFS, tests/support/s3.py): publishing, what a
reader ignores or refuses, conditional reads and writes, gc, downloads."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import obstore
import pytest

from modelrepo.errors import (
    RepositoryError,
    UnknownVersion,
    UsageError,
    VerificationError,
    VersionExists,
)
from modelrepo.format import INDEX_FILE, LABELS_FILE, MANIFEST_FILE, Labels
from modelrepo.operations import collect_garbage, promote, rollback
from modelrepo.repository import open_repository
from modelrepo.s3 import NOT_MODIFIED, S3Repository, WriteConflict, parse_s3_url
from tests.modelrepo.conftest import write_source
from tests.support.s3 import SeaweedS3


def s3_repo(url: str) -> S3Repository:
    repo = open_repository(url)
    assert isinstance(repo, S3Repository)
    return repo


def keys(repo: S3Repository) -> dict[str, bytes]:
    """Every object under the repository's prefix and its bytes."""
    return {
        meta["path"]: bytes(obstore.get(repo.store, meta["path"]).bytes())
        for chunk in obstore.list(repo.store)
        for meta in chunk
    }


def test_open_repository_parses_s3_urls() -> None:
    assert parse_s3_url("s3://models/team/xor/").prefix == "team/xor"
    assert parse_s3_url("s3://models").prefix == ""
    for bad in ("s3://", "s3://UPPER/x", "s3://ab/x", "s3://bucket/a/../b", "s3://b_c/x"):
        with pytest.raises(UsageError):
            open_repository(bad)


def test_publish_uploads_files_then_manifest_then_index(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    assert repo.list_versions() == []
    assert repo.read_labels() == Labels()
    assert repo.read_index() is None
    source = write_source(tmp_path, 7)

    info = repo.publish(source, 7)

    assert info.version == 7 and info.has_manifest
    assert [v.version for v in repo.list_versions()] == [7]
    objects = keys(repo)
    for path in source.rglob("*"):
        if path.is_file():
            assert objects[f"7/{path.relative_to(source)}"] == path.read_bytes()
    manifest = repo.verify_version(7)
    assert {entry.path for entry in manifest.files} == {
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
        "assets.extra/evaluation.json",
    }
    index = json.loads(objects[INDEX_FILE])
    manifest_sha = hashlib.sha256(objects[f"7/{MANIFEST_FILE}"]).hexdigest()
    assert index == {"format": 1, "versions": [{"version": 7, "manifest_sha256": manifest_sha}]}
    assert repo.evaluation_accuracy(7) == 1.0
    assert repo.check_version(info).status == "verified"


def test_an_upload_without_its_manifest_is_no_version(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    repo.publish(write_source(tmp_path, 1), 1)
    # An interrupted publish of version 2: its files, no manifest.
    obstore.put(repo.store, "2/saved_model.pb", b"half an upload")
    obstore.put(repo.store, "2/variables/variables.index", b"index")

    assert [v.version for v in repo.list_versions()] == [1]
    with pytest.raises(UnknownVersion):
        promote(repo, 2)
    with pytest.raises(UnknownVersion):
        repo.download_version(2, tmp_path / "copy")
    assert [entry.version for entry in repo.build_index().versions] == [1]
    # gc takes it once stale (an upload in progress is younger than an hour), never before.
    assert repo.leftovers() == []
    assert repo.leftovers(older_than_seconds=0) == ["2"]
    source = write_source(tmp_path, 2)
    with pytest.raises(VersionExists, match="interrupted upload"):
        repo.publish(source, 2)
    repo.remove_leftover("2")
    assert not any(key.startswith("2/") for key in keys(repo))
    repo.publish(source, 2)
    assert [v.version for v in repo.list_versions()] == [1, 2]


def test_a_file_differing_from_its_manifest_is_refused(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    repo.publish(write_source(tmp_path, 3), 3)
    before = repo.read_labels()
    original = keys(repo)["3/variables/variables.index"]
    # Same size, other bytes: only the sha256 tells.
    changed = bytes(reversed(original))
    assert changed != original and len(changed) == len(original)
    obstore.put(repo.store, "3/variables/variables.index", changed)

    with pytest.raises(VerificationError, match=r"variables/variables.index: sha256 .* differs"):
        repo.verify_version(3)
    with pytest.raises(VerificationError):
        promote(repo, 3)
    assert repo.read_labels() == before
    target = tmp_path / "copy"
    target.mkdir()
    with pytest.raises(VerificationError, match="differs"):
        repo.download_version(3, target)
    # An extra file fails it too (versions are immutable), and a missing one.
    obstore.put(repo.store, "3/variables/variables.index", original)
    repo.verify_version(3)
    obstore.put(repo.store, "3/extra.txt", b"planted")
    with pytest.raises(VerificationError, match=r"extra\.txt: not in the manifest"):
        repo.verify_version(3)
    obstore.delete(repo.store, "3/extra.txt")
    obstore.delete(repo.store, "3/saved_model.pb")
    with pytest.raises(VerificationError, match=r"saved_model\.pb: missing"):
        repo.verify_version(3)


def test_publishing_an_existing_number_is_refused(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    repo.publish(write_source(tmp_path, 4), 4)
    before = keys(repo)
    other = write_source(tmp_path / "other", 4)
    (other / "saved_model.pb").write_bytes(b"another model")

    with pytest.raises(VersionExists, match="version 4 exists already"):
        repo.publish(other, 4)
    assert keys(repo) == before


def test_a_source_that_fails_its_manifest_uploads_nothing(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    source = write_source(tmp_path, 5)
    (source / MANIFEST_FILE).write_text(
        json.dumps(
            {
                "format": 1,
                "version": 5,
                "files": [{"path": "saved_model.pb", "size": 3, "sha256": "0" * 64}],
            }
        )
    )
    with pytest.raises(VerificationError):
        repo.publish(source, 5)
    assert keys(repo) == {}


def test_conditional_reads_say_not_modified(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    absent = repo.fetch_labels()
    assert absent != NOT_MODIFIED and absent.labels == Labels() and absent.etag is None
    repo.publish(write_source(tmp_path, 10), 10)
    promote(repo, 10)

    first = repo.fetch_labels()
    assert first != NOT_MODIFIED and first.labels.labels == {"stable": 10}
    assert repo.fetch_labels(first.etag) is NOT_MODIFIED
    index = repo.fetch_index()
    assert index != NOT_MODIFIED and index.index is not None
    assert repo.fetch_index(index.etag) is NOT_MODIFIED

    repo.publish(write_source(tmp_path, 11), 11)
    promote(repo, 11)
    changed = repo.fetch_labels(first.etag)
    assert changed != NOT_MODIFIED and changed.labels.labels == {"stable": 11}
    new_index = repo.fetch_index(index.etag)
    assert new_index != NOT_MODIFIED and new_index.index is not None
    assert [e.version for e in new_index.index.versions] == [10, 11]


def test_a_concurrent_labels_write_is_refused_not_lost(s3_url: str, tmp_path: Path) -> None:
    """Two writers read labels.json; the second PUT (If-Match on the ETag it read) fails."""
    first, second = s3_repo(s3_url), s3_repo(s3_url)
    first.publish(write_source(tmp_path, 20), 20)
    first.publish(write_source(tmp_path, 21), 21)
    seen_by_first = first.read_labels()
    second.write_labels(second.read_labels().with_label("stable", 21))

    with pytest.raises(WriteConflict, match="changed by another writer"):
        first.write_labels(seen_by_first.with_label("canary", 20))
    assert second.read_labels().labels == {"stable": 21}
    # Reading again and redoing the change succeeds: promote does exactly that.
    promote(first, 20, "canary")
    assert first.read_labels().labels == {"stable": 21, "canary": 20}

    # Creating labels.json when another writer created it meanwhile is a conflict too.
    other = s3_url + "-fresh"
    a, b = s3_repo(other), s3_repo(other)
    a.read_labels()
    b.read_labels()
    b.write_labels(Labels({"stable": 1}))
    with pytest.raises(WriteConflict):
        a.write_labels(Labels({"stable": 2}))


def test_labels_promote_rollback_and_gc(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    for version in (1, 2, 3, 4):
        repo.publish(write_source(tmp_path, version), version)
    promote(repo, 1)
    promote(repo, 2)
    assert rollback(repo).after.labels == {"stable": 1}
    promote(repo, 3)  # history of stable: [1]

    plan = collect_garbage(repo, keep=1)

    assert plan.delete == (2,)
    assert [v.version for v in repo.list_versions()] == [1, 3, 4]
    assert not any(key.startswith("2/") for key in keys(repo))
    index = json.loads(keys(repo)[INDEX_FILE])
    assert [entry["version"] for entry in index["versions"]] == [1, 3, 4]
    assert json.loads(keys(repo)[LABELS_FILE])["history"] == {"stable": [1]}


def test_delete_removes_the_manifest_first(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    repo.publish(write_source(tmp_path, 8), 8)
    # Deleting version 8 half way (the manifest only): it is no version any more.
    obstore.delete(repo.store, f"8/{MANIFEST_FILE}")
    assert repo.list_versions() == []
    with pytest.raises(UnknownVersion):
        repo.delete_version(8)
    assert repo.leftovers(older_than_seconds=0) == ["8"]
    repo.publish(write_source(tmp_path, 9), 9)
    repo.delete_version(9)
    assert not any(key.startswith("9/") for key in keys(repo))
    with pytest.raises(UnknownVersion):
        repo.delete_version(9)


def test_download_version_copies_every_file_checked(s3_url: str, tmp_path: Path) -> None:
    repo = s3_repo(s3_url)
    source = write_source(tmp_path, 12)
    repo.publish(source, 12)
    target = tmp_path / "cache" / "12"
    target.mkdir(parents=True)

    manifest = repo.download_version(12, target)

    for entry in manifest.files:
        assert (target / entry.path).read_bytes() == (source / entry.path).read_bytes()
    assert (target / MANIFEST_FILE).read_bytes() == keys(repo)[f"12/{MANIFEST_FILE}"]
    from modelrepo.repository import LocalRepository

    assert LocalRepository(target.parent, require_manifest=True).verify_version(12) == manifest


def test_publish_the_trained_version(
    s3_url: str, trained_version: Path, trained_version_number: int, tmp_path: Path
) -> None:
    """The session's real SavedModel, published through modelrepo and downloaded back."""
    repo = s3_repo(s3_url)
    started = time.monotonic()
    repo.publish(trained_version, trained_version_number)
    elapsed = time.monotonic() - started
    assert elapsed < 30
    target = tmp_path / "copy"
    target.mkdir()
    manifest = repo.download_version(trained_version_number, target)
    for entry in manifest.files:
        assert (target / entry.path).read_bytes() == (trained_version / entry.path).read_bytes()
    assert repo.evaluation_accuracy(trained_version_number) == 1.0


def test_unreachable_endpoint_and_bad_credentials_are_clear(
    s3_url: str, s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(RepositoryError, match=r"access denied .*SignatureDoesNotMatch") as denied:
        s3_repo(s3_url).list_versions()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(
        RepositoryError, match=r"unreachable .*127\.0\.0\.1:9: cannot connect"
    ) as down:
        s3_repo(s3_url).read_labels()
    assert time.monotonic() - started < 15
    for exc in (denied.value, down.value):
        assert s3_server.secret_key not in str(exc)
        assert "\n" not in str(exc)


def test_reads_fail_clearly_while_the_server_is_down(s3_url: str, s3_server: SeaweedS3) -> None:
    repo = s3_repo(s3_url)
    with s3_server.stopped(), pytest.raises(RepositoryError, match="unreachable"):
        repo.read_labels()
    assert repo.read_labels() == Labels()  # back by itself, same endpoint


def credentials_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_keys_come_from_a_shared_credentials_file_when_not_in_the_environment(
    s3_url: str, s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As compose runs it: the keys only in the file AWS_SHARED_CREDENTIALS_FILE names."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    path = credentials_file(
        tmp_path / "credentials",
        "[other]\naws_access_key_id = NOPE\naws_secret_access_key = nope\n\n"
        f"[default]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n",
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    assert s3_repo(s3_url).list_versions() == []
    # AWS_PROFILE picks another profile (here one the server refuses).
    monkeypatch.setenv("AWS_PROFILE", "other")
    with pytest.raises(RepositoryError, match="access denied"):
        s3_repo(s3_url).list_versions()


def test_keys_in_the_environment_win_over_the_file(tmp_path: Path) -> None:
    from modelrepo.s3 import credentials

    path = credentials_file(
        tmp_path / "credentials",
        "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = file-secret\n"
        "aws_session_token = file-token\n",
    )
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(path)}
    assert credentials(env) == {
        "access_key_id": "FILEKEY",
        "secret_access_key": "file-secret",
        "session_token": "file-token",
    }
    both = {**env, "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "env-secret"}
    assert credentials(both) == {"access_key_id": "ENVKEY", "secret_access_key": "env-secret"}
    assert credentials({}) == {}
    # A file named by nothing is not read, even where the AWS CLI's default one would be.
    assert credentials({"HOME": str(tmp_path)}) == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "cannot read it: FileNotFoundError"),
        ("[default]\naws_access_key_id = KEY\n", "needs aws_access_key_id and aws_secret"),
        ("[prod]\naws_access_key_id = K\naws_secret_access_key = s3cr3t-value\n", "no [default]"),
        ("aws_secret_access_key = s3cr3t-value\n", "not an INI file"),
        ("[default]\naws_secret_access_key = s3cr3t-value\n" + "#" * 70_000, "larger than"),
        (b"[default]\n\xff\xfe", "cannot read it: UnicodeDecodeError"),
    ],
)
def test_a_credentials_file_that_cannot_serve_is_a_usage_error_quoting_no_key(
    tmp_path: Path, text: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "credentials"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as raised:
        S3Repository(
            parse_s3_url("s3://models/xor"),
            environ={"AWS_SHARED_CREDENTIALS_FILE": str(path)},
        )
    message = str(raised.value)
    assert problem in message
    assert f"AWS_SHARED_CREDENTIALS_FILE {path}" in message
    assert "s3cr3t" not in message
