from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import training.data
from training.data import MAX_FILE_BYTES, MAX_LINE_BYTES, load_csv, training_batches
from training.errors import EXCERPT_CHARS, DataError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["xor_train.csv", "xor_test.csv"])
def test_repository_files_hold_the_four_xor_rows(name: str) -> None:
    data = load_csv(REPO / "data" / name)
    assert data.features.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert data.labels.tolist() == [[0], [1], [1], [0]]
    assert data.features.dtype == np.float32 and data.labels.shape == (4, 1)


@pytest.mark.parametrize(
    "spelling",
    ["1", "1.", "1.0", "1.000000000000000000e+00", "1e0", "+1", " 1 ", "01", "1E+00"],
)
def test_plain_numeric_spellings_of_one_are_accepted(tmp_path: Path, spelling: str) -> None:
    data = load_csv(write(tmp_path, f"0,{spelling},{spelling}\n"))
    assert data.features.tolist() == [[0, 1]]
    assert data.labels.tolist() == [[1]]


def test_np_savetxt_output_loads(tmp_path: Path) -> None:
    path = tmp_path / "saved.csv"
    rows = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=np.float64)
    np.savetxt(path, rows, delimiter=",")
    assert load_csv(path).labels.ravel().tolist() == [0, 1, 1, 0]


def test_exact_header_crlf_bom_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    text = "\ufeffx1,x2,label\r\n0,1,1\r\n\r\n1,1,0\r\n"
    data = load_csv(write(tmp_path, text))
    assert data.rows == 2
    assert data.labels.ravel().tolist() == [1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,0,0\n0,1,1\n1,2,1\n", "data.csv:3: column x2 must be 0 or 1, got '2'"),
        ("0,0,0\n-1,0,1\n", "data.csv:2: column x1 must be 0 or 1, got '-1'"),
        ("0,0,0.5\n", "data.csv:1: column label must be 0 or 1, got '0.5'"),
        ("0,0,yes\n", "data.csv:1: column label must be 0 or 1, got 'yes'"),
        ("0,nan,1\n", "data.csv:1: column x2 must be 0 or 1, got 'nan'"),
        ("inf,0,1\n", "data.csv:1: column x1 must be 0 or 1, got 'inf'"),
        ("0,1_0,1\n", "data.csv:1: column x2 must be 0 or 1, got '1_0'"),
        ("0,\u00b9,1\n", "data.csv:1: column x2 must be 0 or 1, got '\u00b9'"),
        ("0,,1\n", "data.csv:1: column x2 must be 0 or 1, got ''"),
        ("0,1\n", "data.csv:1: expected 3 columns (x1,x2,label), got 2: '0,1'"),
        ("0,1,1,0\n", "data.csv:1: expected 3 columns (x1,x2,label), got 4"),
        ("0 1 1\n", "data.csv:1: expected 3 columns (x1,x2,label), got 1"),
        ("x1,x2,y\n0,1,1\n", "data.csv:1: column x1 must be 0 or 1, got 'x1'"),
        ("0,1,1\nx1,x2,label\n", "data.csv:2: column x1 must be 0 or 1, got 'x1'"),
        ("", "data.csv: no data rows"),
        ("\n\n", "data.csv: no data rows"),
        ("x1,x2,label\n", "data.csv: no data rows"),
    ],
)
def test_bad_rows_name_file_line_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        load_csv(path)
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_non_utf8_bytes_are_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.csv:2: not UTF-8 text"):
        load_csv(write(tmp_path, b"0,0,0\n0,\xff,1\n"))


def test_missing_file_and_directory_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="is a directory"):
        load_csv(tmp_path)


def test_large_noisy_file_loads_and_hashes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(10_000, 2))
    labels = np.logical_xor(bits[:, 0], bits[:, 1]).astype(int)
    noisy = np.where(rng.random(10_000) < 0.05, 1 - labels, labels)
    table = np.column_stack([bits, noisy])
    path = tmp_path / "big.csv"
    np.savetxt(path, table, delimiter=",")
    data = load_csv(path)
    assert data.rows == 10_000
    np.testing.assert_array_equal(data.features, bits.astype(np.float32))
    np.testing.assert_array_equal(data.labels.ravel(), noisy.astype(np.float32))
    assert len(data.sha256) == 64


def test_training_batches_are_shuffled_full_and_endless(tmp_path: Path) -> None:
    data = load_csv(write(tmp_path, "0,0,0\n0,1,1\n1,0,1\n"))
    batches = list(training_batches(data, batch_size=4, seed=1).take(30).as_numpy_iterator())
    assert all(features.shape == (4, 2) and labels.shape == (4, 1) for features, labels in batches)
    rows = np.concatenate([np.hstack([f, lab]) for f, lab in batches])
    # Every epoch of 3 rows appears, in more than one order.
    epochs = {tuple(map(tuple, rows[i : i + 3])) for i in range(0, 90, 3)}
    assert all(sorted(epoch) == [(0, 0, 0), (0, 1, 1), (1, 0, 1)] for epoch in epochs)
    assert len(epochs) > 1


def test_a_long_bad_value_is_quoted_as_an_excerpt(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_csv(write(tmp_path, f"0,{'2' * 1000},1\n"))
    message = str(caught.value)
    assert f"data.csv:1: column x2 must be 0 or 1, got '{'2' * EXCERPT_CHARS}'" in message
    assert message.endswith("... (1,000 characters)")
    assert len(message) < len(str(tmp_path)) + 200


def test_a_line_of_many_columns_is_quoted_as_an_excerpt(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_csv(write(tmp_path, "0," * 500 + "\n"))
    message = str(caught.value)
    assert "data.csv:1: expected 3 columns (x1,x2,label), got 501: '0,0,0," in message
    assert message.endswith("... (1,000 characters)")
    assert len(message) < len(str(tmp_path)) + 200


@pytest.mark.parametrize("line", ["0," + "1" * 10_000_000 + ",1", "0,1,1," * 2_000_000])
def test_a_megabytes_long_line_is_refused_with_an_excerpt(tmp_path: Path, line: str) -> None:
    with pytest.raises(DataError) as caught:
        load_csv(write(tmp_path, f"0,0,0\n{line}\n1,1,0\n"))
    message = str(caught.value)
    assert f"data.csv:2: line longer than {MAX_LINE_BYTES:,} bytes" in message
    assert len(message) < len(str(tmp_path)) + 250


def test_an_endless_device_is_refused_after_one_line() -> None:
    with pytest.raises(DataError, match=f"/dev/zero:1: line longer than {MAX_LINE_BYTES:,}"):
        load_csv("/dev/zero")


def test_a_line_at_the_length_cap_is_a_row(tmp_path: Path) -> None:
    padded = "0,1," + "1".rjust(MAX_LINE_BYTES - 4)
    assert load_csv(write(tmp_path, f"{padded}\r\n")).labels.tolist() == [[1]]
    with pytest.raises(DataError, match="line longer than"):
        load_csv(write(tmp_path, f"{padded} \n"))


def test_a_file_beyond_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # Sparse: no disk space used. Were it read, its zero bytes would fail as a long line.
    path = tmp_path / "huge.csv"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(DataError) as caught:
        load_csv(path)
    assert str(caught.value) == (
        f"{path}: larger than 100 MiB, the most a data file may hold (and at most 1,000,000 rows)"
    )
    with path.open("wb") as handle:  # at the cap: read, and refused for what it holds
        handle.truncate(MAX_FILE_BYTES)
    with pytest.raises(DataError, match=r"huge\.csv:1: line longer than"):
        load_csv(path)


def pipe_holding(data: bytes) -> str:
    """A path to the read end of a pipe that holds ``data`` (a stream with no size)."""
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return f"/dev/fd/{read_end}"


def test_a_pipe_is_read_as_a_stream_and_capped_as_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = b"0,0,0\n0,1,1\n1,0,1\n1,1,0\n" * 10
    path = pipe_holding(rows)
    try:
        data = load_csv(path)
    finally:
        os.close(int(path.rsplit("/", 1)[1]))
    assert data.rows == 40
    assert data.sha256 == hashlib.sha256(rows).hexdigest()

    monkeypatch.setattr(training.data, "MAX_FILE_BYTES", len(rows) - 1)
    path = pipe_holding(rows)
    try:
        with pytest.raises(DataError, match="larger than"):
            load_csv(path)
    finally:
        os.close(int(path.rsplit("/", 1)[1]))


def test_rows_beyond_the_row_cap_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.data, "MAX_ROWS", 3)
    text = "x1,x2,label\n0,0,0\n\n0,1,1\n1,0,1\n"
    assert load_csv(write(tmp_path, text)).rows == 3  # the header and blank lines are no rows
    with pytest.raises(DataError) as caught:
        load_csv(write(tmp_path, text + "1,1,0\n"))
    assert str(caught.value) == (
        f"{tmp_path}/data.csv:6: more than 3 data rows, the most a data file may hold"
    )


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 2**16])
def test_lines_are_split_alike_whatever_the_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    # CRLF, lone CR (old Mac), LF, a BOM and a header, and no final line end.
    raw = b"\xef\xbb\xbfx1,x2,label\r\n0,0,0\r0,1,1\n\r\n1,0,1\r\r1,1,0"
    monkeypatch.setattr(training.data, "_CHUNK_BYTES", chunk_bytes)
    data = load_csv(write(tmp_path, raw))
    assert data.features.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert data.labels.ravel().tolist() == [0, 1, 1, 0]
    assert data.sha256 == hashlib.sha256(raw).hexdigest()
    with pytest.raises(DataError, match=r"data.csv:8: column x2 must be 0 or 1, got '2'"):
        load_csv(write(tmp_path, raw + b"\r\n0,2,1\n"))


def test_a_bad_line_is_reported_even_after_the_same_line_parsed(tmp_path: Path) -> None:
    # Parsed lines are remembered; a header repeated later is still a bad row.
    with pytest.raises(DataError, match=r"data\.csv:3: column x1 must be 0 or 1, got .x1."):
        load_csv(write(tmp_path, "x1,x2,label\n0,1,1\nx1,x2,label\n"))
