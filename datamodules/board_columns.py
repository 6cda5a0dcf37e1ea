"""Board columns of a cached split (Arrow) as numpy matrices, without going through Python lists.

The puzzle DataModules store each split as a `datasets.Dataset` whose ``inputs`` column holds one
fixed-length board per row and whose ``solutions`` column holds a ragged list of boards per row.
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa


def split_table(ds: datasets.Dataset) -> pa.Table:
    """The whole split as one Arrow table (zero-copy over the cache's memory map)."""
    return ds.with_format("arrow")[:]


def board_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-length board column (R,) x L as an (R, L) uint8 array."""
    boards = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = boards.flatten().to_numpy(zero_copy_only=False).astype(np.uint8)
    return values.reshape(len(boards), boards.type.list_size)


def ragged_boards(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A column of board lists -> ((T, L) uint8 boards in row order, (P,) int64 boards per row)."""
    lists = column.combine_chunks()
    counts = lists.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    return board_matrix(lists.flatten()), counts


def ragged_slots(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P,) counts -> (row, slot) of each of the sum(counts) flat items, to scatter them into a padded
    (P, max count, ...) array: ``padded[row, slot] = flat``."""
    row = np.repeat(np.arange(len(counts)), counts)
    slot = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return row, slot
