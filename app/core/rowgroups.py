"""Equal rows of a batch, found with numpy (no Python loop over the rows).

A batch of bits has at most 4 distinct pairs however long it is, so work done per distinct
row instead of per row (the model call, the JSON of a prediction) costs almost nothing at
10,000 rows. Rows are compared by their bytes: exact, with no tolerance.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt


class RowGroups(NamedTuple):
    """``first[g]`` is the index of group g's first row; ``inverse[i]`` is row i's group."""

    first: npt.NDArray[np.intp]
    inverse: npt.NDArray[np.intp]


def row_keys(array: npt.NDArray[Any]) -> list[npt.NDArray[np.uint64]]:
    """The bytes of each row of ``array`` ([n, ...]) as columns of 8-byte words.

    Rows must be a multiple of 8 bytes long (a float32 pair, an int64, a float64...).
    """
    rows = np.ascontiguousarray(array).reshape(len(array), int(np.prod(array.shape[1:])))
    if rows.nbytes and (rows.itemsize * rows.shape[1]) % 8:
        raise ValueError(f"rows of {rows.itemsize * rows.shape[1]} bytes are not 8-byte words")
    words = rows.view(np.uint64).reshape(len(array), -1)
    return [words[:, column] for column in range(words.shape[1])]


def group_rows(*arrays: npt.NDArray[Any]) -> RowGroups | None:
    """Rows equal in every one of ``arrays`` (each [n, ...], n the same) grouped together;
    None when no two rows are equal (nothing to share)."""
    n = len(arrays[0])
    if n < 2:
        return None
    keys = [key for array in arrays for key in row_keys(array)]
    order = np.lexsort(keys)
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    for key in keys:
        ordered = key[order]
        starts[1:] |= ordered[1:] != ordered[:-1]
    group_of_sorted = np.cumsum(starts) - 1
    if group_of_sorted[-1] == n - 1:
        return None
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = group_of_sorted
    return RowGroups(first=order[starts], inverse=inverse)
