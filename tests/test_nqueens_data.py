"""Tests of the N-Queens data pipeline: solver, partial boards, checker, augmentation, DataModule.

Solutions and completion sets are checked against references written here (a permutation filter
and set arithmetic on queen positions) that share no code with the module under test.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

import datamodules.nqueens.data as nqueens_data
from datamodules.nqueens import NQueensDataModule
from datamodules.nqueens.boards import (
    EMPTY_TOKEN,
    PAD_TOKEN,
    QUEEN_TOKEN,
    augment_batch,
    check_nqueens,
    dihedral_permutations,
    is_valid_nqueens,
    queen_conflicts,
)
from datamodules.nqueens.solutions import default_num_removed, partial_boards, solve_nqueens
from datamodules.nqueens.split import TEST_FRACTION, orbit_ids, split_rows

datasets.disable_progress_bars()

# A solution of the 8x8 board (queen of row r in column SOLUTION_8[r]) and another one that puts
# a different queen in row 0.
SOLUTION_8 = (0, 4, 7, 5, 2, 6, 1, 3)
OTHER_SOLUTION_8 = (1, 3, 5, 7, 2, 0, 6, 4)


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def _reference_solutions(n: int) -> set[tuple[int, ...]]:
    """All solutions by filtering every permutation (one queen per row and column) for distinct
    diagonals and anti-diagonals."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)
    rows = np.arange(n)

    def distinct(values: np.ndarray) -> np.ndarray:
        return (np.diff(np.sort(values, axis=1), axis=1) != 0).all(1)

    ok = distinct(perms + rows) & distinct(perms - rows)
    return {tuple(p) for p in perms[ok].tolist()}


def _is_solution(cols: tuple[int, ...]) -> bool:
    n = len(cols)
    return sorted(cols) == list(range(n)) and all(
        abs(cols[i] - cols[j]) != j - i for i in range(n) for j in range(i + 1, n)
    )


def _queens(board: np.ndarray | torch.Tensor, n: int) -> frozenset[tuple[int, int]]:
    cells = np.flatnonzero(np.asarray(board) == QUEEN_TOKEN)
    return frozenset((int(c) // n, int(c) % n) for c in cells)


def _board(cols: tuple[int, ...] | list[int], n: int | None = None) -> torch.Tensor:
    """Column list (-1 = no queen in that row) -> (n * n,) long tokens."""
    n = n or len(cols)
    board = torch.full((n, n), EMPTY_TOKEN, dtype=torch.long)
    for r, c in enumerate(cols):
        if c >= 0:
            board[r, c] = QUEEN_TOKEN
    return board.view(-1)


def _symmetric_images(board: np.ndarray, n: int) -> list[bytes]:
    """The 8 images of a token board under the rotations and reflections of the square, by
    numpy's rot90 and transpose (no code shared with `dihedral_permutations`)."""
    grid = np.asarray(board).reshape(n, n)
    return [np.rot90(g, k).tobytes() for g in (grid, grid.T) for k in range(4)]


def _reference_inputs(n: int, num_removed: list[int]) -> dict[frozenset, set[frozenset]]:
    """Every partial board (as a set of queen positions) -> the set of its completions."""
    solutions = [frozenset(enumerate(s)) for s in _reference_solutions(n)]
    inputs: dict[frozenset, set[frozenset]] = {}
    for solution in solutions:
        for k in num_removed:
            for kept in itertools.combinations(sorted(solution), n - k):
                inputs.setdefault(frozenset(kept), set())
    for kept, completions in inputs.items():
        completions.update(s for s in solutions if kept <= s)
    return inputs


# ---------------------------------------------------------------------------------------------
# Solver and partial boards
# ---------------------------------------------------------------------------------------------


def test_solver_counts_and_matches_reference():
    for n, count in ((4, 2), (5, 10), (6, 4), (7, 40), (8, 92)):
        solutions = solve_nqueens(n)
        assert len(solutions) == count
        assert set(solutions) == _reference_solutions(n)
        assert solutions == sorted(solutions)  # lexicographic order
    ten = solve_nqueens(10)
    assert len(ten) == len(set(ten)) == 724 and all(_is_solution(s) for s in ten)
    with pytest.raises(ValueError, match="positive integer"):
        solve_nqueens(0)


def test_default_num_removed():
    assert default_num_removed(8) == [5, 6, 7] and default_num_removed(10) == [7, 8, 9]
    assert default_num_removed(6) == [3, 4, 5] and default_num_removed(4) == [1, 2, 3]


@pytest.mark.parametrize("n", [6, 8])
def test_partial_boards_match_reference(n):
    num_removed = default_num_removed(n)
    puzzles = partial_boards(n)
    reference = _reference_inputs(n, num_removed)
    inputs = [_queens(row, n) for row in puzzles.inputs]
    assert len(set(inputs)) == len(inputs) == len(reference)  # de-duplicated, none missing
    assert set(inputs) == set(reference)
    for i, kept in enumerate(inputs):
        ids = puzzles.solution_ids[puzzles.offsets[i] : puzzles.offsets[i + 1]]
        assert {_queens(puzzles.boards[j], n) for j in ids} == reference[kept]
        assert len(ids) == len(reference[kept])
        assert puzzles.num_removed[i] == n - len(kept)
    assert set(((puzzles.inputs == QUEEN_TOKEN).sum(1)).tolist()) == {n - k for k in num_removed}


def test_partial_boards_10x10_sizes():
    puzzles = partial_boards(10)
    # Every (solution, removal set) pair is one (input, completion) pair: 724 * (C(10,7) + C(10,8) + C(10,9)).
    assert int(puzzles.num_solutions.sum()) == 724 * (120 + 45 + 10)
    assert len(puzzles) == 43420
    assert len({row.tobytes() for row in puzzles.inputs}) == len(puzzles)
    # Spot-check completion sets against a brute-force filter over all solutions.
    queens = puzzles.boards == QUEEN_TOKEN  # (724, L)
    for i in np.random.default_rng(0).choice(len(puzzles), 100, replace=False):
        kept = puzzles.inputs[i] == QUEEN_TOKEN
        expected = np.flatnonzero((queens | ~kept).all(1))
        assert puzzles.solution_ids[puzzles.offsets[i] : puzzles.offsets[i + 1]].tolist() == expected.tolist()


# ---------------------------------------------------------------------------------------------
# Checker and augmentation
# ---------------------------------------------------------------------------------------------


def test_check_nqueens_hand_made_cases():
    solution, other = _board(SOLUTION_8), _board(OTHER_SOLUTION_8)
    puzzle = _board([0, 4, 7, -1, -1, -1, -1, -1])  # rows 0..2 of SOLUTION_8
    blank = torch.full_like(puzzle, EMPTY_TOKEN)
    diagonal = solution.clone().view(8, 8)  # move row 3's queen next to row 2's: shared diagonal
    diagonal[3], diagonal[4] = _board(SOLUTION_8)[32:40], _board(SOLUTION_8)[24:32]  # swap rows 3 and 4
    seven = solution.clone()
    seven[7 * 8 + SOLUTION_8[7]] = EMPTY_TOKEN
    padded = solution.clone()
    padded[5] = PAD_TOKEN  # an empty cell written as PAD
    identity = _board(list(range(8)))  # all queens on the main diagonal
    inputs = torch.stack([puzzle, puzzle, puzzle, blank, blank, blank, blank])
    preds = torch.stack([solution, other, diagonal.view(-1), seven, padded, identity, other])
    assert check_nqueens(inputs, preds, 8).tolist() == [True, False, False, False, False, False, True]
    assert is_valid_nqueens(preds, 8).tolist() == [True, True, False, False, False, False, True]
    assert check_nqueens(inputs.view(7, 1, 64), preds.view(7, 1, 64)).shape == (7, 1)  # any leading shape


def _reference_conflicts(given: list[int], board: list[int], n: int) -> int:
    """Attacking pairs by looping over every pair of queens, plus missing and dropped queens and non-board cells."""
    queens = [divmod(i, n) for i, t in enumerate(board) if t == QUEEN_TOKEN]
    pairs = sum(
        r1 == r2 or c1 == c2 or r1 - c1 == r2 - c2 or r1 + c1 == r2 + c2
        for (r1, c1), (r2, c2) in itertools.combinations(queens, 2)
    )
    dropped = sum(g == QUEEN_TOKEN and t != QUEEN_TOKEN for g, t in zip(given, board))
    unknown = sum(t not in (EMPTY_TOKEN, QUEEN_TOKEN) for t in board)
    return pairs + max(0, n - len(queens)) + dropped + unknown


def test_queen_conflicts_hand_made_cases():
    solution, other = _board(SOLUTION_8), _board(OTHER_SOLUTION_8)
    puzzle = _board([0, 4, 7, -1, -1, -1, -1, -1])  # rows 0..2 of SOLUTION_8
    blank = torch.full_like(puzzle, EMPTY_TOKEN)
    identity = _board(list(range(8)))  # all 8 queens on the main diagonal: 28 attacking pairs
    seven = solution.clone()
    seven[7 * 8 + SOLUTION_8[7]] = EMPTY_TOKEN  # one queen missing
    padded = solution.clone()
    padded[5] = PAD_TOKEN  # an empty cell written as PAD
    inputs = torch.stack([puzzle, puzzle, blank, blank, blank, blank])
    preds = torch.stack([solution, other, identity, seven, padded, blank])
    # `other` keeps none of the puzzle's 3 queens; the blank board misses all 8.
    assert queen_conflicts(inputs, preds, 8).tolist() == [0, 3, 28, 1, 1, 8]


def test_queen_conflicts_match_reference_and_checker():
    gen = torch.Generator().manual_seed(0)
    n = 6
    boards = torch.full((400, n * n), EMPTY_TOKEN)
    for b in range(len(boards)):  # 0 to 9 queens anywhere, some boards with a stray PAD
        boards[b, torch.randperm(n * n, generator=gen)[: int(torch.randint(10, (1,), generator=gen))]] = QUEEN_TOKEN
        if b % 7 == 0:
            boards[b, int(torch.randint(n * n, (1,), generator=gen))] = PAD_TOKEN
    solutions = [s for s in itertools.permutations(range(n)) if _is_solution(s)]
    boards[:len(solutions)] = torch.stack([_board(s) for s in solutions])  # valid boards too
    givens = torch.where(torch.rand(boards.shape, generator=gen) < 0.3, boards, EMPTY_TOKEN)
    givens[givens == PAD_TOKEN] = EMPTY_TOKEN
    givens[1::3] = givens.roll(1, 0)[1::3]  # some givens from another board: dropped queens
    counts = queen_conflicts(givens, boards, n)
    expected = [_reference_conflicts(g.tolist(), b.tolist(), n) for g, b in zip(givens, boards)]
    assert counts.tolist() == expected
    assert torch.equal(counts == 0, check_nqueens(givens, boards, n))
    assert (counts == 0).sum() >= 1 and (counts > 0).sum() > 300
    assert queen_conflicts(givens.view(20, 20, -1), boards.view(20, 20, -1)).shape == (20, 20)


def test_check_nqueens_rejects_malformed_shapes():
    board = _board(SOLUTION_8)[None]
    with pytest.raises(ValueError, match="6x6 board has 36 cells, got boards of 64 tokens"):
        check_nqueens(board, board, 6)
    with pytest.raises(ValueError, match="differ in shape"):
        check_nqueens(board, board.repeat(2, 1), 8)
    with pytest.raises(ValueError, match="not square"):
        check_nqueens(board[:, :60], board[:, :60])


def test_dihedral_symmetries_map_solutions_to_solutions():
    perms = dihedral_permutations(8)
    assert perms.shape == (8, 64) and (perms.sort(1).values == torch.arange(64)).all()  # permutations
    solutions = torch.stack([_board(s) for s in solve_nqueens(8)])  # (92, 64)
    keys = {tuple(b) for b in solutions.tolist()}
    for perm in perms:
        assert {tuple(b) for b in solutions[:, perm].tolist()} == keys  # closed under each symmetry
    orbit = {tuple(solutions[0, perm].tolist()) for perm in perms}
    assert len(orbit) == 8  # 8 distinct symmetries


def test_augmentation_keeps_boards_valid_and_consistent():
    solutions = torch.stack([_board(s) for s in solve_nqueens(8)])  # (92, 64)
    generator = torch.Generator().manual_seed(0)
    drop = torch.rand(solutions.shape, generator=generator) < 0.6
    inputs = solutions.masked_fill(drop, EMPTY_TOKEN)
    inputs, targets = inputs.repeat(5, 1), solutions.repeat(5, 1)
    aug_inputs, aug_targets = augment_batch(inputs, targets, torch.Generator().manual_seed(1))
    assert aug_inputs.shape == inputs.shape and aug_inputs.dtype == torch.long
    assert is_valid_nqueens(aug_targets, 8).all()
    assert check_nqueens(aug_inputs, aug_targets).all()  # input queens kept in the label
    assert torch.equal((aug_inputs == 2).sum(1), (inputs == 2).sum(1))
    assert (aug_targets != targets).any(1).float().mean() > 0.75  # 7 of 8 symmetries change a board
    again = augment_batch(inputs, targets, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], aug_inputs) and torch.equal(again[1], aug_targets)
    # One asymmetric board augmented many times reaches all 8 symmetries.
    one = _board(SOLUTION_8)[None].repeat(400, 1)
    assert len({tuple(b) for b in augment_batch(one, one)[1].tolist()}) == 8


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


def _datamodule(tmp_path: Path, **kwargs) -> NQueensDataModule:
    defaults = dict(cache_dir=str(tmp_path / "cache"), batch_size=8)
    return NQueensDataModule(**{**defaults, **kwargs})


def _check_batch(batch: dict, batch_size: int, n: int) -> None:
    assert set(batch) == {"inputs", "labels", "num_solutions", "index"}
    assert batch["inputs"].shape == batch["labels"].shape == (batch_size, n * n)
    assert batch["num_solutions"].shape == batch["index"].shape == (batch_size,)
    assert all(v.dtype == torch.long for v in batch.values())
    assert check_nqueens(batch["inputs"], batch["labels"], n).all()


def _keys(inputs: torch.Tensor) -> list[bytes]:
    return [row.tobytes() for row in inputs.numpy()]


def test_datamodule_attributes_before_setup(tmp_path):
    for n in (6, 8, 10):
        dm = _datamodule(tmp_path, board_size=n)
        assert (dm.vocab_size, dm.seq_len, dm.out_len, dm.num_puzzle_ids) == (3, n * n, n * n, 0)
        assert dm.num_removed == default_num_removed(n) and not dm.splits
    assert not (tmp_path / "cache").exists()  # nothing built before prepare_data/setup
    assert _datamodule(tmp_path, num_removed=[7, 5]).num_removed == [5, 7]


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(board_size=3), "board_size must be in 4..11"),
        (dict(board_size=12), "board_size must be in 4..11"),
        (dict(board_size=8.0), "board_size must be an integer"),
        (dict(num_removed=[0]), r"integers in 1..8"),
        (dict(num_removed=[9]), r"integers in 1..8"),
        (dict(num_removed=[5, 5]), "repeated"),
        (dict(num_removed=[]), "must not be empty"),
        (dict(num_removed=5), "list of queen counts"),
        (dict(num_val_puzzles=-1), "num_val_puzzles"),
        (dict(max_train_puzzles=0), "max_train_puzzles"),
        (dict(max_test_puzzles=10, num_val_puzzles=20), "exceeds max_test_puzzles"),
        (dict(epoch_multiplier=0), "epoch_multiplier"),
        (dict(batch_size=0), "batch_size"),
        (dict(eval_batch_size=0), "eval_batch_size"),
        (dict(seed=-1), "seed"),
        (dict(split="random"), "split must be one of"),
    ],
)
def test_datamodule_rejects_bad_arguments(tmp_path, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        _datamodule(tmp_path, **kwargs)


def test_datamodule_8x8_splits_and_batches(tmp_path):
    dm = _datamodule(tmp_path, board_size=8, num_val_puzzles=100, batch_size=32, eval_batch_size=50)
    dm.prepare_data()
    dm.setup("fit")
    train, val, test = dm.splits["train"], dm.splits["val"], dm.splits["test"]
    assert (len(train), len(test), len(val)) == (4372, 776, 100)  # 5,148 inputs in 648 orbits, about 85:15
    train_keys, test_keys = _keys(train.inputs), _keys(test.inputs)
    assert len(set(train_keys)) == len(train_keys) and len(set(test_keys)) == len(test_keys)
    assert not set(train_keys) & set(test_keys)
    assert torch.equal(val.inputs, test.inputs[:100])
    # Every stored completion is a valid board keeping the input's queens, and each input has
    # exactly the completions of the independent reference.
    reference = _reference_inputs(8, [5, 6, 7])
    for data in (train, test):
        sols = data.padded(torch.arange(len(data)))  # (P, S, L)
        present = torch.arange(sols.shape[1]) < data.num_solutions[:, None]  # (P, S)
        ok = check_nqueens(data.inputs[:, None].long().expand_as(sols), sols, 8)
        assert ok[present].all() and (sols[~present] == PAD_TOKEN).all()
        for row in range(0, len(data), 7):
            expected = reference[_queens(data.inputs[row], 8)]
            assert {_queens(s, 8) for s in sols[row, : data.num_solutions[row]]} == expected
        assert torch.equal(data.columns["num_removed"], 8 - (data.inputs == 2).sum(1))

    loader = dm.train_dataloader()
    assert len(loader) == 4372 // 32
    batch = next(iter(loader))
    _check_batch(batch, 32, 8)
    assert torch.equal(batch["num_solutions"], train.num_solutions[batch["index"]])

    val_batch = next(iter(dm.val_dataloader()))
    _check_batch(val_batch, 50, 8)
    assert val_batch["index"].tolist() == list(range(50))
    assert torch.equal(val_batch["inputs"], test.inputs[:50].long())
    solutions, counts = dm.solutions(val_batch["index"], "val")
    assert solutions.shape == (50, int(counts.max()), 64) and solutions.dtype == torch.long
    assert torch.equal(counts, val_batch["num_solutions"])
    assert torch.equal(solutions[:, 0], val_batch["labels"])  # eval labels: the first completion
    assert dm.check(val_batch["inputs"], val_batch["labels"]).all()
    assert len(dm.test_dataloader()) == -(-776 // 50)


def test_datamodule_draws_random_completions_for_training(tmp_path):
    dm = _datamodule(tmp_path, board_size=8, augment=False)
    dm.setup()
    train = dm.splits["train"]
    row = int(train.num_solutions.argmax())
    assert train.num_solutions[row] > 10
    batch = dm.train_dataloader().dataset.__getitems__([row] * 1000)
    assert (batch["inputs"] == train.inputs[row].long()).all()
    solutions, count = dm.solutions(torch.tensor([row]), "train")
    expected = {tuple(s) for s in solutions[0, : count[0]].tolist()}
    assert {tuple(s) for s in batch["labels"].tolist()} == expected  # every completion gets drawn


def test_datamodule_augments_training_batches(tmp_path):
    dm = _datamodule(tmp_path, board_size=8, batch_size=256)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    _check_batch(batch, 256, 8)
    stored = dm.splits["train"].inputs[batch["index"]].long()
    assert (batch["inputs"] != stored).any(1).float().mean() > 0.5  # most rows were transformed


def test_datamodule_cache_reuse_and_subsets(tmp_path, monkeypatch):
    kwargs = dict(board_size=6, num_val_puzzles=5, batch_size=8)
    dm = _datamodule(tmp_path, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    train, test = dm.splits["train"], dm.splits["test"]
    assert (len(train), len(test)) == (136, 28)  # 164 distinct 6x6 inputs in 22 orbits, each with 1 completion
    assert (train.num_solutions == 1).all()
    _check_batch(next(iter(dm.train_dataloader())), 8, 6)

    def no_build(*args, **kwargs):
        raise AssertionError("the cached splits should have been loaded")

    monkeypatch.setattr(nqueens_data, "partial_boards", no_build)
    again = _datamodule(tmp_path, **kwargs)
    again.setup("fit")
    for split in ("train", "val", "test"):
        a, b = dm.splits[split], again.splits[split]
        for name in ("inputs", "solutions", "offsets", "num_solutions"):
            assert torch.equal(getattr(a, name), getattr(b, name)), (split, name)
        assert torch.equal(a.columns["num_removed"], b.columns["num_removed"]), split
    subset = _datamodule(tmp_path, max_train_puzzles=50, max_test_puzzles=10, **kwargs)
    subset.setup()
    assert torch.equal(subset.splits["train"].inputs, train.inputs[:50])
    assert torch.equal(subset.splits["test"].inputs, test.inputs[:10])
    assert torch.equal(subset.splits["test"].padded(torch.arange(10)), test.padded(torch.arange(10)))
    assert not list((tmp_path / "cache").glob("*.tmp-*"))
    monkeypatch.undo()

    other_seed = _datamodule(tmp_path, **{**kwargs, "seed": 1})
    other_seed.setup()
    assert set(_keys(other_seed.splits["test"].inputs)) != set(_keys(test.inputs))
    assert len(list((tmp_path / "cache").iterdir())) == 4  # train and test for each seed


def test_datamodule_errors(tmp_path):
    with pytest.raises(RuntimeError, match="setup"):
        _datamodule(tmp_path).train_dataloader()
    dm = _datamodule(tmp_path, board_size=6, num_val_puzzles=30)
    with pytest.raises(ValueError, match="num_val_puzzles=30 but the test split has only 28"):
        dm.setup()
    dm = _datamodule(tmp_path, board_size=6, batch_size=200)
    dm.setup()
    with pytest.raises(ValueError, match="fewer than batch_size"):
        dm.train_dataloader()
    with pytest.raises(ValueError, match="unknown split"):
        dm.solutions(torch.tensor([0]), "dev")
    tiny = _datamodule(tmp_path, board_size=4, num_removed=[4])  # only the empty board
    with pytest.raises(ValueError, match="too few to split"):
        tiny.setup()


def test_datamodule_with_workers(tmp_path):
    dm = _datamodule(tmp_path, board_size=6, batch_size=16, num_workers=1)
    dm.setup()
    _check_batch(next(iter(dm.train_dataloader())), 16, 6)


# ---------------------------------------------------------------------------------------------
# Train/test split by symmetry orbit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [6, 8])
def test_orbit_ids_match_brute_force_orbits(n):
    inputs = partial_boards(n).inputs
    ids = orbit_ids(inputs, n)
    keys = [min(_symmetric_images(board, n)) for board in inputs]
    assert len(set(zip(ids.tolist(), keys))) == len(set(ids.tolist())) == len(set(keys))  # the same partition
    assert sorted(set(ids.tolist())) == list(range(len(set(keys))))
    shuffled = np.random.default_rng(0).permutation(len(inputs))
    assert torch.equal(torch.from_numpy(orbit_ids(inputs[shuffled], n)), torch.from_numpy(ids[shuffled]))
    with pytest.raises(ValueError, match="token boards of a 8x8 board"):
        orbit_ids(inputs[:, :-1], 8)
    with pytest.raises(ValueError, match="split must be one of"):
        split_rows(partial_boards(n), 0, "random")


def _leaked_test_inputs(dm: NQueensDataModule) -> int:
    """Test inputs one of whose 8 symmetric images is a training input."""
    n = dm.board_size
    train = set(_keys(dm.splits["train"].inputs))
    return sum(any(image in train for image in _symmetric_images(board, n)) for board in dm.splits["test"].inputs.numpy())


@pytest.mark.parametrize("n, sizes", [(8, (4372, 776)), (10, (36908, 6512))])
def test_orbit_split_keeps_every_symmetric_image_of_test_out_of_train(tmp_path, n, sizes):
    dm = _datamodule(tmp_path, board_size=n)
    dm.setup()
    train, test = dm.splits["train"], dm.splits["test"]
    assert (len(train), len(test)) == sizes
    assert abs(len(test) / (len(train) + len(test)) - TEST_FRACTION) < 0.02
    train_keys, test_keys = _keys(train.inputs), _keys(test.inputs)
    assert not set(train_keys) & set(test_keys) and len(set(train_keys + test_keys)) == len(partial_boards(n))
    assert _leaked_test_inputs(dm) == 0
    # Augmented training batches never show a test input either.
    shown = dm.train_dataloader().collate_fn(dm.train_dataloader().dataset.__getitems__(list(range(len(train)))))
    assert not set(_keys(shown["inputs"].to(torch.uint8))) & set(test_keys)
    # The splits are stored shuffled, not orbit by orbit, so the validation prefix is a uniform
    # random sample of the test split: few neighbours share an orbit (7 in 8 would, orbit by orbit).
    ids = orbit_ids(test.inputs.numpy(), n)
    assert (ids[1:] == ids[:-1]).mean() < 0.05


def test_paper_split_leaks_test_inputs_into_training(tmp_path):
    dm = _datamodule(tmp_path, board_size=8, split="paper")
    dm.setup()
    train, test = dm.splits["train"], dm.splits["test"]
    assert (len(train), len(test)) == (4376, 772)  # the paper's 85:15 of the 5,148 inputs
    assert not set(_keys(train.inputs)) & set(_keys(test.inputs))  # disjoint as inputs...
    assert _leaked_test_inputs(dm) == len(test)  # ...but every test input is a training input up to symmetry
    orbit = _datamodule(tmp_path, board_size=8)
    orbit.setup()
    assert not torch.equal(orbit.splits["test"].inputs[:10], test.inputs[:10])  # separate cache entries
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_orbit_split_cached_rebuild_is_equal(tmp_path, monkeypatch):
    dm = _datamodule(tmp_path, board_size=8)
    dm.setup()
    monkeypatch.setattr(nqueens_data, "partial_boards", lambda *a, **k: pytest.fail("the cache should have been used"))
    again = _datamodule(tmp_path, board_size=8)
    again.setup()
    monkeypatch.undo()
    rebuilt = _datamodule(tmp_path / "fresh", board_size=8)
    rebuilt.setup()
    for other in (again, rebuilt):
        for split in ("train", "val", "test"):
            assert torch.equal(dm.splits[split].inputs, other.splits[split].inputs), split
            assert torch.equal(dm.splits[split].num_solutions, other.splits[split].num_solutions), split
