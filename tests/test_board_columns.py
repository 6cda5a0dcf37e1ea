import datasets
import numpy as np

from datamodules.board_columns import board_matrix, ragged_boards, ragged_slots, split_table


def _split() -> datasets.Dataset:
    features = datasets.Features(
        {
            "inputs": datasets.Sequence(datasets.Value("int8"), length=3),
            "solutions": datasets.Sequence(datasets.Sequence(datasets.Value("int8"), length=3)),
        }
    )
    rows = {
        "inputs": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        "solutions": [[[1, 1, 1]], [], [[2, 2, 2], [3, 3, 3]]],
    }
    return datasets.Dataset.from_dict(rows, features=features)


def test_board_matrix_reads_fixed_length_rows():
    inputs = board_matrix(split_table(_split()).column("inputs"))
    assert inputs.dtype == np.uint8
    np.testing.assert_array_equal(inputs, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])


def test_ragged_boards_keep_row_order_and_counts_including_empty_rows():
    flat, counts = ragged_boards(split_table(_split()).column("solutions"))
    np.testing.assert_array_equal(flat, [[1, 1, 1], [2, 2, 2], [3, 3, 3]])
    np.testing.assert_array_equal(counts, [1, 0, 2])
    padded = np.zeros((3, 2, 3), dtype=np.uint8)
    padded[ragged_slots(counts)] = flat
    np.testing.assert_array_equal(padded[2], [[2, 2, 2], [3, 3, 3]])
    assert not padded[1].any() and not padded[0, 1].any()
