"""Equivalence of Sudoku boards under the training augmentation (digit relabelling, transpose,
band/row/stack/column permutations): canonical forms, invariants, exact checks, and the generated
splits that keep every test puzzle's equivalence class out of training.

4x4 orbits are checked against `_reference_orbit`, which builds every image of a board with plain
loops over the group written here, sharing no code with the module under test.
"""

from __future__ import annotations

import itertools

import datasets
import numpy as np
import pytest
import torch

from datamodules.sudoku import SudokuDataModule
from datamodules.sudoku.augment import augment_batch
from datamodules.sudoku.boards import BLANK_TOKEN
from datamodules.sudoku.equivalence import EquivalenceIndex, boards_equivalent, canonical_boards, equivalence_invariants
from datamodules.sudoku.generator import generate_full_grid, generate_puzzle, generate_split, split_keys
from datamodules.sudoku.solver import enumerate_solutions
from datamodules.tables import board_matrix, split_table

datasets.disable_progress_bars()


def _line_orders(box: int) -> list[list[int]]:
    orders = []
    for bands in itertools.permutations(range(box)):
        for inner in itertools.product(itertools.permutations(range(box)), repeat=box):
            orders.append([band * box + inner[k][i] for k, band in enumerate(bands) for i in range(box)])
    return orders


def _reference_orbit(board: np.ndarray, n: int) -> set[bytes]:
    """Every image of a token board under the whole augmentation group."""
    box = int(round(n**0.5))
    grid = board.reshape(n, n)
    images = set()
    for oriented in (grid, grid.T):
        for rows in _line_orders(box):
            for cols in _line_orders(box):
                moved = oriented[rows][:, cols]
                for digits in itertools.permutations(range(2, n + 2)):
                    lookup = np.array([0, 1, *digits], dtype=board.dtype)
                    images.add(lookup[moved].tobytes())
    return images


def _inputs(ds: datasets.Dataset) -> np.ndarray:
    return board_matrix(split_table(ds).column("inputs"))


def _augmented(boards: np.ndarray, seed: int) -> np.ndarray:
    tensor = torch.from_numpy(boards).long()
    return augment_batch(tensor, tensor, torch.Generator().manual_seed(seed))[0].numpy().astype(np.uint8)


def _random_puzzles(n: int, count: int, seed: int, givens: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.array([[d + 1 for d in generate_full_grid(n, rng)] for _ in range(count)], dtype=np.uint8)
    keep = rng.random(grids.shape).argsort(1) < rng.integers(*givens, size=(count, 1))
    return np.where(keep, grids, BLANK_TOKEN).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# 4x4: exact canonical forms
# ---------------------------------------------------------------------------------------------


def test_4x4_canonical_forms_match_reference_orbits():
    boards = _random_puzzles(4, 40, seed=0, givens=(2, 7))
    boards[20:30] = _augmented(boards[:10], seed=1)  # equivalent pairs for sure
    orbits = [_reference_orbit(board, 4) for board in boards]
    canonical = [row.tobytes() for row in canonical_boards(boards, 4)]
    for i, j in itertools.combinations(range(len(boards)), 2):
        assert (canonical[i] == canonical[j]) == (boards[j].tobytes() in orbits[i]), (i, j)
    assert all(canonical[i] == canonical[i + 20] for i in range(10))
    assert equivalence_invariants(boards, 4) == canonical
    # The 288 solved 4x4 grids fall into 2 classes.
    grids = np.array([[d + 1 for d in grid] for grid in enumerate_solutions([0] * 16, 4)], dtype=np.uint8)
    assert len({row.tobytes() for row in canonical_boards(grids, 4)}) == 2


def test_invariants_reject_malformed_boards():
    with pytest.raises(ValueError, match=r"\(B, 81\) tokens of a 9x9 board"):
        equivalence_invariants(np.ones((2, 80), dtype=np.uint8), 9)
    with pytest.raises(ValueError, match="81 tokens"):
        boards_equivalent(np.ones(81), np.ones(16), 9)


# ---------------------------------------------------------------------------------------------
# 9x9: invariants and exact checks
# ---------------------------------------------------------------------------------------------


def _unique_puzzles(count: int) -> np.ndarray:
    return np.array(
        [[d + 1 for d in generate_puzzle(9, np.random.default_rng([5, i]), unique=True)[0]] for i in range(count)],
        dtype=np.uint8,
    )


def _swap_columns_across_stacks(boards: np.ndarray) -> np.ndarray:
    """Columns 2 and 3 swapped: a permutation outside the augmentation group."""
    grids = boards.reshape(len(boards), 9, 9).copy()
    grids[:, :, [2, 3]] = grids[:, :, [3, 2]]
    return grids.reshape(len(boards), 81)


def test_9x9_invariants_are_kept_by_augmentation_and_exact_checks_decide():
    puzzles = _unique_puzzles(6)
    rng = np.random.default_rng(1)
    grids = np.array([[d + 1 for d in generate_full_grid(9, rng)] for _ in range(6)], dtype=np.uint8)
    for boards in (puzzles, grids):
        keys = equivalence_invariants(boards, 9)
        assert len(set(keys)) == len(boards)
        for seed in range(3):
            images = _augmented(boards, seed)
            assert equivalence_invariants(images, 9) == keys
            assert all(boards_equivalent(a, b, 9) for a, b in zip(boards, images))
        assert not any(boards_equivalent(a, b, 9) for a, b in zip(boards, _swap_columns_across_stacks(boards)))
        assert not boards_equivalent(boards[0], boards[1], 9)
        # The transpose alone, and a relabelling alone, are in the group.
        transposed = boards.reshape(-1, 9, 9).transpose(0, 2, 1).reshape(-1, 81)
        relabelled = np.array([0, 1, 10, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.uint8)[boards]
        assert all(boards_equivalent(a, b, 9) for a, b in zip(boards, transposed))
        assert all(boards_equivalent(a, b, 9) for a, b in zip(boards, relabelled))


def test_equivalence_index_matches_images_only():
    puzzles = _unique_puzzles(8)
    index = EquivalenceIndex(puzzles[:4], 9)
    images = _augmented(puzzles, seed=3)
    assert index.matches(images).tolist() == [True] * 4 + [False] * 4
    assert index.matches(_swap_columns_across_stacks(puzzles[:4])).tolist() == [False] * 4
    assert index.matches(np.zeros((0, 81), dtype=np.uint8)).shape == (0,)


# ---------------------------------------------------------------------------------------------
# Generated splits
# ---------------------------------------------------------------------------------------------


def test_generated_4x4_train_has_no_puzzle_equivalent_to_a_test_puzzle(tmp_path):
    kwargs = dict(board_size=4, unique=False, min_givens=3, max_givens=6, num_train_puzzles=300,
                  num_test_puzzles=40, num_val_puzzles=10, batch_size=16, num_proc=1)
    dm = SudokuDataModule(cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.setup()
    train, test = dm.splits["train"].inputs.numpy(), dm.splits["test"].inputs.numpy()
    assert len(train) == 300 and len(test) == 40
    leaked = set().union(*(_reference_orbit(board, 4) for board in test))
    assert not {row.tobytes() for row in train} & leaked
    # Without the equivalence filter the same stream draws such puzzles: the filter is needed.
    test_source = generate_split("test", 40, n=4, unique=False, min_givens=3, max_givens=6)
    unfiltered = generate_split("train", 300, n=4, unique=False, min_givens=3, max_givens=6,
                                exclude=split_keys(test_source))
    assert np.array_equal(_inputs(test_source), test)
    assert len({row.tobytes() for row in _inputs(unfiltered)} & leaked) > 50


def test_generation_leaves_out_equivalents_of_excluded_9x9_puzzles():
    kwargs = dict(n=9, unique=True, min_guesses=0, seed=3)
    first = generate_split("train", 3, **kwargs)
    images = _augmented(_inputs(first), seed=0)
    filtered = generate_split("train", 3, exclude_equivalent=EquivalenceIndex(images, 9), **kwargs)
    assert not EquivalenceIndex(images, 9).matches(_inputs(filtered)).any()
    assert not {row.tobytes() for row in _inputs(filtered)} & {row.tobytes() for row in _inputs(first)}
