"""The shared plumbing of the puzzle splits: Arrow columns read back as arrays, a split built from arrays, and
`RaggedSolutions` (every solution of every input, flat) with its subsets, labels and padded solutions."""

import datasets
import numpy as np
import torch

from datamodules.ragged import RaggedSolutions, SolutionBatches
from datamodules.tables import board_matrix, puzzle_dataset, puzzle_features, ragged_boards, split_table


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


# Four inputs of 3 tokens with 2, 1, 3 and 1 solutions of 2 tokens; solution k of input p is [10 p + k, p].
INPUTS = np.arange(12).reshape(4, 3)
COUNTS = np.array([2, 1, 3, 1])
SOLUTIONS = np.array([[10 * p + k, p] for p, c in enumerate(COUNTS) for k in range(c)])


def _dataset() -> datasets.Dataset:
    return puzzle_dataset(INPUTS, SOLUTIONS, COUNTS, "extra", np.array([5, 6, 7, 8]))


def test_puzzle_dataset_has_the_puzzle_columns_and_reads_back():
    ds = _dataset()
    assert ds.features == puzzle_features(3, 2, "extra")
    assert ds[2] == {"inputs": [6, 7, 8], "solutions": [[20, 2], [21, 2], [22, 2]], "num_solutions": 3, "extra": 7}
    data = RaggedSolutions.from_dataset(ds)
    assert torch.equal(data.inputs, torch.tensor(INPUTS, dtype=torch.uint8))
    assert torch.equal(data.solutions, torch.tensor(SOLUTIONS, dtype=torch.uint8))
    assert data.offsets.tolist() == [0, 2, 3, 6, 7] and data.num_solutions.tolist() == [2, 1, 3, 1]
    assert data.columns["extra"].tolist() == [5, 6, 7, 8] and len(data) == 4


def test_ragged_solutions_rows_labels_and_padding():
    data = RaggedSolutions.from_dataset(_dataset())
    rows = torch.tensor([2, 0, 2])
    assert data.labels(rows, torch.tensor([2, 1, 0])).tolist() == [[22, 2], [1, 0], [20, 2]]
    padded = data.padded(torch.tensor([1, 2]))  # width: the largest count among the rows
    assert padded.dtype == torch.long and padded.tolist() == [[[10, 1], [0, 0], [0, 0]], [[20, 2], [21, 2], [22, 2]]]
    assert data.padded(torch.tensor([3])).shape == (1, 1, 2)


def test_ragged_solutions_subsets_keep_each_input_with_its_own_solutions():
    data = RaggedSolutions.from_dataset(_dataset())
    for rows in (torch.tensor([3, 0, 2]), torch.tensor([False, True, True, False]), torch.arange(2)):
        sub = data.subset(rows)
        index = rows.nonzero().squeeze(1) if rows.dtype == torch.bool else rows
        assert torch.equal(sub.inputs, data.inputs[index])
        assert torch.equal(sub.num_solutions, data.num_solutions[index])
        assert torch.equal(sub.columns["extra"], data.columns["extra"][index])
        assert torch.equal(sub.padded(torch.arange(len(sub))), data.padded(index))
        assert sub.offsets[-1] == len(sub.solutions)
    assert data.head(None) is data and data.head(9) is data
    assert torch.equal(data.head(2).solutions, data.solutions[:3])


def test_solution_batches_draw_a_stored_solution_or_the_first():
    data = RaggedSolutions.from_dataset(_dataset())
    first = SolutionBatches(data).__getitems__([2, 0])
    assert first["labels"].tolist() == [[20, 2], [0, 0]] and first["num_solutions"].tolist() == [3, 2]
    assert first["inputs"].dtype == torch.long and first["index"].tolist() == [2, 0]
    drawn = SolutionBatches(data, random_label=True).__getitems__([2] * 300)["labels"]
    assert {tuple(row) for row in drawn.tolist()} == {(20, 2), (21, 2), (22, 2)}
