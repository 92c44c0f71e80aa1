"""Row grouping: one entry per distinct row, and the index that rebuilds every row from it.

Its two users are tested with them: the model call on distinct rows
(tests/app/lifecycle/test_loading.py) and /predict's rendering (tests/app/api/test_predict.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.rowgroups import group_rows, row_keys


def test_no_groups_when_every_row_is_distinct_or_there_is_one_row() -> None:
    assert group_rows(np.array([[0, 1], [1, 0], [1, 1]], dtype=np.float32)) is None
    assert group_rows(np.array([[1, 1]], dtype=np.float32)) is None
    assert group_rows(np.zeros((0, 2), dtype=np.float32)) is None


def test_groups_point_at_first_occurrences_in_order_of_the_rows() -> None:
    rows = np.array([[1, 1], [0, 1], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
    groups = group_rows(rows)
    assert groups is not None
    assert sorted(groups.first.tolist()) == [0, 1, 4]
    np.testing.assert_array_equal(rows[groups.first][groups.inverse], rows)
    assert groups.inverse[0] == groups.inverse[2] and groups.inverse[1] == groups.inverse[3]


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1)), max_size=80))
def test_grouping_rebuilds_every_array_and_joins_only_rows_equal_in_all(
    rows: list[tuple[int, int, int]],
) -> None:
    features = np.array([[a, b] for a, b, _ in rows], dtype=np.float32).reshape(-1, 2)
    labels = np.array([[c] for *_, c in rows], dtype=np.int64).reshape(-1, 1)
    groups = group_rows(features, labels)
    distinct = len(set(rows))
    if groups is None:
        assert distinct == len(rows)
        return
    assert len(groups.first) == distinct
    for array in (features, labels):
        np.testing.assert_array_equal(array[groups.first][groups.inverse], array)
    first_seen: dict[tuple[int, int, int], int] = {}
    for index, row in enumerate(rows):
        first_seen.setdefault(row, index)
    assert sorted(groups.first.tolist()) == sorted(first_seen.values())


def test_rows_are_compared_by_their_bytes() -> None:
    # -0.0 == 0.0 as numbers but not as bytes: kept apart (each gets its own, exact, answer).
    groups = group_rows(np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0]], dtype=np.float32))
    assert groups is not None
    assert len(groups.first) == 2
    assert groups.inverse[0] == groups.inverse[2] != groups.inverse[1]


def test_rows_must_be_whole_8_byte_words() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        row_keys(np.zeros((3, 3), dtype=np.float32))
    assert len(row_keys(np.zeros((3, 4), dtype=np.float32))) == 2
