"""Puzzle splits as Arrow tables: their columns, building one from arrays, and reading columns back as arrays.

The puzzle DataModules (Sudoku, N-Queens, graph coloring) cache each split as a `datasets.Dataset` with the columns
``inputs`` (one fixed-length board per row), ``solutions`` (a ragged list of fixed-length boards per row: every
solution of the input), ``num_solutions`` and one int32 column of the task's own (`puzzle_features`). Tables are
built from and read into numpy arrays through Arrow buffers: Python lists of 100-token boards would take seconds.
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa


def puzzle_features(input_len: int, output_len: int, extra: str) -> datasets.Features:
    """The columns of a puzzle split: int8 token boards of ``input_len`` (inputs) and ``output_len`` (solutions),
    the solution count and the int32 column ``extra``."""
    # `Sequence` rather than `List`: the same Arrow types (fixed-size lists) on datasets 3.x and 4+.
    return datasets.Features(
        {
            "inputs": datasets.Sequence(datasets.Value("int8"), length=input_len),
            "solutions": datasets.Sequence(datasets.Sequence(datasets.Value("int8"), length=output_len)),
            "num_solutions": datasets.Value("int32"),
            extra: datasets.Value("int32"),
        }
    )


def puzzle_dataset(
    inputs: np.ndarray, solutions: np.ndarray, counts: np.ndarray, extra: str, values: np.ndarray
) -> datasets.Dataset:
    """A puzzle split with `puzzle_features` from arrays.

    Args:
        inputs: (P, L_in) input tokens.
        solutions: (T, L_out) solution tokens, input by input (T = counts.sum()).
        counts: (P,) solutions per input.
        extra: Name of the task's own column.
        values: (P,) its values.
    """
    features = puzzle_features(inputs.shape[1], solutions.shape[1], extra)

    def boards(tokens: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(tokens.astype(np.int8).reshape(-1)), tokens.shape[1])

    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    table = pa.Table.from_arrays(
        [
            boards(inputs),
            pa.ListArray.from_arrays(offsets, boards(solutions)),
            pa.array(np.asarray(counts).astype(np.int32)),
            pa.array(np.asarray(values).astype(np.int32)),
        ],
        schema=features.arrow_schema,
    )
    return datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features))


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
