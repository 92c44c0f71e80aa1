"""Safe reads, strict JSON and one-step replacement of the repository's small files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelrepo.errors import FormatError, RepositoryError
from modelrepo.files import parse_json, read_regular_file, write_atomically


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_regular_file(path, 10) == b"x" * 10


def test_a_file_over_its_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(FormatError, match="11 bytes, more than the 10 allowed"):
        read_regular_file(path, 10)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    os.mkfifo(path)
    with pytest.raises(FormatError, match="must be a regular file, is a FIFO"):
        read_regular_file(path, 100)


def test_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="must be a regular file, is a character device"):
        read_regular_file(Path("/dev/zero"), 100)


def test_a_symlink_is_refused_where_links_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert read_regular_file(tmp_path / "link", 10) == b"{}"
    with pytest.raises(FormatError, match="must be a regular file, is a symlink"):
        read_regular_file(tmp_path / "link", 10, follow_symlinks=False)


def test_absence_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", 10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1, "a": 2}', "not valid JSON: duplicate key 'a'"),
        (b'{"labels": {"x": 1, "x": 1}}', "not valid JSON: duplicate key 'x'"),
        (b'{"a": NaN}', "not valid JSON: NaN is not a JSON number"),
        (b"[Infinity]", "not valid JSON: Infinity is not a JSON number"),
        (b"{", "not valid JSON: Expecting property name"),
        (b"\xff{}", "not UTF-8 (byte 0"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_json_is_parsed_strictly(data: bytes, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_json(data, "labels.json")
    assert str(caught.value).startswith("labels.json: ")
    assert message in str(caught.value)


def test_an_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_bytes(b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_a_failure_between_the_temp_write_and_the_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "labels.json"
    path.write_bytes(b"old")
    written: list[bytes] = []

    def fail(source: str, _target: object) -> None:
        written.append(Path(source).read_bytes())  # the temp file was complete
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RepositoryError, match=r"labels\.json: cannot write: No space left"):
        write_atomically(path, b"new")
    assert written == [b"new"]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]  # no temp file left
