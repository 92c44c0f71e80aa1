"""LocalRepository: listing, publishing, deleting, labels.json and index.json, the lock."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from modelrepo.errors import (
    FormatError,
    LockTimeout,
    RepositoryNotFound,
    UnknownVersion,
    UsageError,
    VerificationError,
    VersionExists,
)
from modelrepo.format import Labels
from modelrepo.manifest import build_manifest, write_manifest
from modelrepo.repository import LocalRepository, VersionInfo, open_repository
from tests.modelrepo.conftest import Publish, drop_unverified, snapshot, write_source
from tests.support import REPO


def test_a_published_version_is_listed_verified(repo: LocalRepository, publish: Publish) -> None:
    publish(3)
    assert repo.list_versions() == [VersionInfo(3, "3", True)]
    manifest = repo.verify_version(3)
    assert manifest.version == 3
    check = repo.check_version(repo.get_version(3))
    assert (check.status, check.files, check.size) == ("verified", 4, manifest.total_size)
    assert repo.evaluation_accuracy(3) == 1.0


def test_published_files_are_world_readable(repo_dir: Path, publish: Publish) -> None:
    publish(3)
    for path in [repo_dir / "3", *(repo_dir / "3").rglob("*")]:
        wanted = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == wanted, path


def test_an_old_version_without_manifest_is_listed_unverified(
    repo: LocalRepository, repo_dir: Path, publish: Publish
) -> None:
    drop_unverified(repo_dir, 1)
    publish(2)
    assert repo.list_versions() == [VersionInfo(1, "1", False), VersionInfo(2, "2", True)]
    check = repo.check_version(repo.get_version(1))
    assert (check.status, check.size, check.files) == ("unverified", 19, 2)
    assert repo.evaluation_accuracy(1) is None
    with pytest.raises(VerificationError, match=r"has no MANIFEST\.json"):
        repo.verify_version(1)


def test_where_a_manifest_is_required_a_version_without_one_does_not_exist(
    repo_dir: Path, publish: Publish
) -> None:
    drop_unverified(repo_dir, 1)
    publish(2)
    strict = LocalRepository(repo_dir, require_manifest=True)
    assert [info.version for info in strict.list_versions()] == [2]
    with pytest.raises(UnknownVersion, match="no version 1"):
        strict.get_version(1)


@pytest.mark.parametrize("name", ["abc", "0", "1.5", "-3", "\u00b2", ".tmp-publish-x", "9" * 20])
def test_entries_that_are_not_versions_are_ignored(repo: LocalRepository, name: str) -> None:
    entry = repo.path / name
    entry.mkdir()
    (entry / "saved_model.pb").write_bytes(b"")
    assert repo.list_versions() == []


def test_an_integer_directory_with_neither_manifest_nor_saved_model_is_no_version(
    repo: LocalRepository,
) -> None:
    (repo.path / "5").mkdir()
    (repo.path / "6").write_text("a file")
    assert repo.list_versions() == []


def test_two_names_for_one_version_are_an_error(repo: LocalRepository, repo_dir: Path) -> None:
    drop_unverified(repo_dir, 7)
    (repo_dir / "007").mkdir()
    (repo_dir / "007" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(FormatError, match="both name version 7: remove one"):
        repo.list_versions()


def test_a_failing_version_is_listed_as_failed(repo: LocalRepository, publish: Publish) -> None:
    publish(3)
    (repo.path / "3" / "saved_model.pb").write_bytes(b"tampered")
    check = repo.check_version(repo.get_version(3))
    assert check.status == "failed"
    assert check.problem is not None and "saved_model.pb: 8 bytes" in check.problem


def test_publishing_an_existing_number_is_refused_and_changes_nothing(
    repo: LocalRepository, repo_dir: Path, tmp_path: Path, publish: Publish
) -> None:
    publish(3)
    before = snapshot(repo_dir)
    with pytest.raises(VersionExists, match="version 3 exists already"):
        repo.publish(write_source(tmp_path / "other", 3), 3)
    assert snapshot(repo_dir) == before


def test_publishing_refuses_a_number_another_spelling_holds(
    repo: LocalRepository, repo_dir: Path, tmp_path: Path
) -> None:
    drop_unverified(repo_dir, 1)
    (repo_dir / "1").rename(repo_dir / "01")
    with pytest.raises(VersionExists):
        repo.publish(write_source(tmp_path, 1), 1)


def test_a_source_with_a_manifest_must_match_it(repo: LocalRepository, tmp_path: Path) -> None:
    source = write_source(tmp_path, 4)
    write_manifest(source, build_manifest(source, 4))
    with pytest.raises(FormatError, match="describes version 4, not 5"):
        repo.publish(source, 5)
    (source / "saved_model.pb").write_bytes(b"changed after the manifest")
    with pytest.raises(VerificationError, match=r"saved_model\.pb: 26 bytes"):
        repo.publish(source, 4)
    assert repo.list_versions() == []
    assert os.listdir(repo.path) == []


def test_publishing_writes_the_index(repo: LocalRepository, publish: Publish) -> None:
    publish(3)
    publish(5)
    document = json.loads((repo.path / "index.json").read_text())
    assert document == {
        "format": 1,
        "versions": [
            {
                "version": version,
                "manifest_sha256": hashlib.sha256(
                    (repo.path / str(version) / "MANIFEST.json").read_bytes()
                ).hexdigest(),
            }
            for version in (3, 5)
        ],
    }


# Runs a publish or a delete in a fresh process that dies (as if killed) at one step.
CRASH_AT = textwrap.dedent(
    """
    import os, sys
    import modelrepo.repository as repository

    def crash(*args, **kwargs):
        os._exit(9)

    step, repo, action, *rest = sys.argv[1:]
    if step == "rename":
        repository.os.rename = crash
    else:
        repository.shutil.rmtree = crash
    repo = repository.LocalRepository(repo)
    if action == "publish":
        repo.publish(repository.Path(rest[0]), int(rest[1]))
    else:
        repo.delete_version(int(rest[0]))
    """
)


def crash_at(step: str, *argv: str | Path | int) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CRASH_AT, step, *map(str, argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 9, completed.stderr


def test_a_publish_killed_before_its_rename_leaves_nothing_a_reader_uses(
    repo: LocalRepository, tmp_path: Path, publish: Publish
) -> None:
    publish(1)
    crash_at("rename", repo.path, "publish", write_source(tmp_path, 8), 8)
    assert [info.version for info in repo.list_versions()] == [1]
    (staging,) = repo.path.glob(".tmp-publish-*")
    assert (staging / "MANIFEST.json").is_file()  # complete, yet invisible to readers
    assert repo.leftovers() == []  # young: could be a publish in progress
    old = time.time() - 7200
    os.utime(staging, (old, old))
    assert repo.leftovers() == [staging.name]
    repo.publish(write_source(tmp_path / "again", 8), 8)  # the number is still free
    assert [info.version for info in repo.list_versions()] == [1, 8]


def test_a_delete_killed_after_its_rename_leaves_no_version(
    repo: LocalRepository, publish: Publish
) -> None:
    publish(1)
    publish(2)
    crash_at("rmtree", repo.path, "delete", 1)
    assert [info.version for info in repo.list_versions()] == [2]
    (grave,) = repo.path.glob(".deleting-1-*")
    assert (grave / "MANIFEST.json").is_file()
    assert repo.leftovers() == [grave.name]  # removed by gc, whatever its age


def test_deleting_renames_first_then_removes(repo: LocalRepository, publish: Publish) -> None:
    publish(3)
    publish(4)
    repo.delete_version(3)
    assert sorted(os.listdir(repo.path)) == [".modelrepo.lock", "4", "index.json"]
    with pytest.raises(UnknownVersion):
        repo.delete_version(3)


def test_deleting_an_unverified_version(repo: LocalRepository, repo_dir: Path) -> None:
    drop_unverified(repo_dir, 1)
    repo.delete_version(1)
    assert os.listdir(repo_dir) == []


def test_labels_round_trip_and_absence_reads_as_none(repo: LocalRepository) -> None:
    assert repo.read_labels() == Labels()
    labels = Labels({"stable": 3}, 10, {"stable": (1, 2)})
    repo.write_labels(labels)
    assert repo.read_labels() == labels
    assert json.loads((repo.path / "labels.json").read_text()) == {
        "labels": {"stable": 3},
        "canary_percent": 10,
        "history": {"stable": [1, 2]},
    }


def test_labels_breaking_the_format_are_never_written(repo: LocalRepository) -> None:
    with pytest.raises(FormatError, match="canary_percent: must be an integer 0 to 100"):
        repo.write_labels(Labels({"stable": 3}, 150))
    assert not (repo.path / "labels.json").exists()


def test_a_corrupt_labels_file_is_a_clear_error(repo: LocalRepository) -> None:
    (repo.path / "labels.json").write_text('{"labels": {"stable": 1}, "labels": {}}')
    with pytest.raises(FormatError, match=r"labels.json: not valid JSON: duplicate key 'labels'"):
        repo.read_labels()


def test_a_broken_index_is_replaced_by_a_rewrite(repo: LocalRepository, publish: Publish) -> None:
    publish(3)
    (repo.path / "index.json").write_text("{")
    with pytest.raises(FormatError):
        repo.read_index()
    index = repo.rewrite_index()
    assert repo.read_index() == index
    assert [entry.version for entry in index.versions] == [3]


def test_the_index_leaves_out_versions_whose_manifest_is_broken(
    repo: LocalRepository, publish: Publish, caplog: pytest.LogCaptureFixture
) -> None:
    publish(3)
    publish(4)
    (repo.path / "3" / "MANIFEST.json").write_text("[]")
    assert [entry.version for entry in repo.rewrite_index().versions] == [4]
    assert "version 3 left out of index.json" in caplog.text


def test_a_missing_repository_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="no such repository"):
        LocalRepository(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(RepositoryNotFound, match="not a repository"):
        open_repository(str(tmp_path / "file"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3://Bad_Bucket/prefix", "the bucket name must be"),
        ("gs://bucket", "unsupported repository URL (gs://)"),
        ("", "the repository is a directory path"),
    ],
)
def test_urls_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_repository(text)
    assert message in str(caught.value)


def test_the_lock_excludes_another_holder(repo_dir: Path) -> None:
    first, second = LocalRepository(repo_dir), LocalRepository(repo_dir, lock_timeout=0.2)
    with first.locked(), first.locked():  # re-entrant within one repository object
        started = time.monotonic()
        with (
            pytest.raises(LockTimeout, match="another process has held the repository's lock"),
            second.locked(),
        ):
            pass
        assert time.monotonic() - started >= 0.2
    with second.locked():
        pass


def test_the_lock_serialises_holders(repo_dir: Path) -> None:
    """Each thread opens the lock file on its own (as separate processes do): flock alone
    keeps them apart."""
    inside: list[int] = []
    overlaps: list[int] = []

    def hold() -> None:
        with LocalRepository(repo_dir).locked():
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.01)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
