"""Building and verifying manifests on real files: each way a version can differ from it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from modelrepo.errors import FormatError, VerificationError
from modelrepo.manifest import build_manifest, read_manifest_file, verify_files, write_manifest
from tests.modelrepo.conftest import write_source


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    source = write_source(tmp_path, 5)
    write_manifest(source, build_manifest(source, 5))
    return source


def test_the_manifest_lists_every_file_but_itself(version_dir: Path) -> None:
    document = json.loads((version_dir / "MANIFEST.json").read_text())
    assert document["format"] == 1 and document["version"] == 5
    paths = [entry["path"] for entry in document["files"]]
    assert paths == [
        "assets.extra/evaluation.json",
        "saved_model.pb",
        "variables/variables.data-00000-of-00001",
        "variables/variables.index",
    ]
    for entry in document["files"]:
        data = (version_dir / entry["path"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_untouched_version_verifies(version_dir: Path) -> None:
    manifest, data = read_manifest_file(version_dir, 5)
    verify_files(version_dir, manifest)
    assert data == (version_dir / "MANIFEST.json").read_bytes()


def test_an_empty_directory_is_allowed(version_dir: Path) -> None:
    (version_dir / "assets").mkdir()
    verify_files(version_dir, read_manifest_file(version_dir, 5)[0])


def verification_error(version_dir: Path) -> str:
    manifest, _ = read_manifest_file(version_dir, 5)
    with pytest.raises(VerificationError) as caught:
        verify_files(version_dir, manifest)
    message = str(caught.value)
    assert message.startswith(f"{version_dir}: fails its manifest: ")
    return message


def test_one_changed_byte_fails(version_dir: Path) -> None:
    path = version_dir / "variables" / "variables.data-00000-of-00001"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    assert "variables/variables.data-00000-of-00001: sha256 " in verification_error(version_dir)


def test_a_missing_file_fails(version_dir: Path) -> None:
    (version_dir / "variables" / "variables.index").unlink()
    assert "variables/variables.index: missing" in verification_error(version_dir)


def test_an_extra_file_fails(version_dir: Path) -> None:
    (version_dir / "assets.extra" / "notes.txt").write_text("added later")
    assert "assets.extra/notes.txt: not in the manifest" in verification_error(version_dir)


def test_a_size_mismatch_fails_without_hashing(version_dir: Path) -> None:
    size = (version_dir / "saved_model.pb").stat().st_size
    (version_dir / "saved_model.pb").write_bytes(b"longer than it was, by far")
    message = verification_error(version_dir)
    assert f"saved_model.pb: 26 bytes, the manifest says {size}" in message


def test_every_problem_is_named(version_dir: Path) -> None:
    (version_dir / "saved_model.pb").unlink()
    (version_dir / "extra").write_text("x")
    message = verification_error(version_dir)
    assert "extra: not in the manifest" in message and "saved_model.pb: missing" in message


def test_a_symlink_escaping_the_version_fails(version_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.pb"
    outside.write_bytes((version_dir / "saved_model.pb").read_bytes())  # same bytes, even
    (version_dir / "saved_model.pb").unlink()
    (version_dir / "saved_model.pb").symlink_to(outside)
    message = verification_error_any(version_dir)
    assert f"{version_dir}/saved_model.pb: must be a regular file, is a symlink" in message


def test_a_symlink_inside_the_version_fails_too(version_dir: Path) -> None:
    (version_dir / "assets.extra" / "alias.json").symlink_to("evaluation.json")
    assert "alias.json: must be a regular file, is a symlink" in verification_error_any(version_dir)


def test_a_symlinked_directory_fails(version_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "variables-elsewhere"
    shutil.move(version_dir / "variables", moved)
    (version_dir / "variables").symlink_to(moved)
    assert "variables: must be a regular file, is a symlink" in verification_error_any(version_dir)


def test_a_symlinked_version_directory_fails(version_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "6"
    link.symlink_to(version_dir)
    manifest, _ = read_manifest_file(version_dir, 5)
    with pytest.raises(VerificationError, match="must be a directory, is a symlink"):
        verify_files(link, manifest)


def test_a_fifo_fails_without_blocking(version_dir: Path) -> None:
    (version_dir / "variables" / "variables.index").unlink()
    os.mkfifo(version_dir / "variables" / "variables.index")
    assert "must be a regular file, is a FIFO" in verification_error_any(version_dir)


def verification_error_any(version_dir: Path) -> str:
    """The message of the VerificationError verifying ``version_dir`` raises (the walk stops
    at the first file that is not regular: it is never opened)."""
    manifest, _ = read_manifest_file(version_dir, 5)
    with pytest.raises(VerificationError) as caught:
        verify_files(version_dir, manifest)
    return str(caught.value)


def test_building_refuses_what_verification_refuses(tmp_path: Path) -> None:
    source = write_source(tmp_path, 1)
    os.mkfifo(source / "pipe")
    with pytest.raises(VerificationError, match="pipe: must be a regular file, is a FIFO"):
        build_manifest(source, 1)


def test_building_requires_a_saved_model(tmp_path: Path) -> None:
    source = write_source(tmp_path, 1)
    (source / "saved_model.pb").unlink()
    with pytest.raises(FormatError, match=r"does not list saved_model\.pb"):
        build_manifest(source, 1)


def test_a_manifest_of_another_version_is_refused(version_dir: Path) -> None:
    with pytest.raises(FormatError, match=r"MANIFEST\.json: describes version 5, not 6"):
        read_manifest_file(version_dir, 6)


def test_a_manifest_that_is_a_symlink_is_refused(version_dir: Path, tmp_path: Path) -> None:
    shutil.move(version_dir / "MANIFEST.json", tmp_path / "elsewhere.json")
    (version_dir / "MANIFEST.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(FormatError, match=r"MANIFEST\.json: must be a regular file, is a symlink"):
        read_manifest_file(version_dir, 5)
