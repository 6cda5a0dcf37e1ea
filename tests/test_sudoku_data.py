"""Tests of the Sudoku data pipeline: solver, generator, CSV reader, augmentation, cache, DataModule.

Solutions are checked against `_reference_solutions`, a plain backtracking solver written here so
that it shares no code with the solver under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

import datamodules.sudoku.data as sudoku_data
from datamodules.cache import CacheError, cached_dataset
from datamodules.generation import GenerationError
from datamodules.sudoku import SudokuDataModule
from datamodules.sudoku.augment import augment_batch
from datamodules.sudoku.boards import BLANK_TOKEN, check_solution, is_valid_sudoku
from datamodules.sudoku.csv import SudokuFormatError, read_sudoku_csv
from datamodules.sudoku.generator import generate_full_grid, generate_puzzle, generate_split, split_keys
from datamodules.sudoku.solver import count_solutions, enumerate_solutions, solve

datasets.disable_progress_bars()

# The classic puzzle from Wikipedia's Sudoku article and its solution ('.' = blank).
QUESTION = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
ANSWER = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


# ---------------------------------------------------------------------------------------------
# Independent reference solver (plain backtracking on digit lists, 0 = blank)
# ---------------------------------------------------------------------------------------------


def _legal_digits(board: list[int], cell: int, n: int) -> list[int]:
    box = math.isqrt(n)
    r, c = divmod(cell, n)
    br, bc = r - r % box, c - c % box
    used = {board[r * n + j] for j in range(n)}
    used |= {board[i * n + c] for i in range(n)}
    used |= {board[(br + i) * n + bc + j] for i in range(box) for j in range(box)}
    return [d for d in range(1, n + 1) if d not in used]


def _reference_solutions(board: list[int], n: int, limit: int | None = None) -> list[list[int]]:
    """All (or the first ``limit``) solutions, branching on the blank cell with fewest options."""
    board = list(board)
    found: list[list[int]] = []

    def search() -> None:
        blanks = [cell for cell, d in enumerate(board) if d == 0]
        if not blanks:
            found.append(list(board))
            return
        options = {cell: _legal_digits(board, cell, n) for cell in blanks}
        cell = min(blanks, key=lambda b: len(options[b]))
        for digit in options[cell]:
            board[cell] = digit
            search()
            board[cell] = 0
            if limit is not None and len(found) >= limit:
                return

    search()
    return found


def _reference_is_valid(board: list[int], n: int) -> bool:
    box = math.isqrt(n)
    units = [[r * n + c for c in range(n)] for r in range(n)]
    units += [[r * n + c for r in range(n)] for c in range(n)]
    units += [
        [(br + i) * n + bc + j for i in range(box) for j in range(box)]
        for br in range(0, n, box)
        for bc in range(0, n, box)
    ]
    return all(sorted(board[i] for i in unit) == list(range(1, n + 1)) for unit in units)


def _digits(text: str) -> list[int]:
    return [0 if ch in ".0" else int(ch) for ch in text]


def _tokens(digits: list[int]) -> torch.Tensor:
    return torch.tensor(digits) + 1  # blank 0 -> token 1, digit d -> token d + 1


def _rows(ds: datasets.Dataset) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


# ---------------------------------------------------------------------------------------------
# Solver and generator
# ---------------------------------------------------------------------------------------------


def test_solver_matches_reference_on_classic_puzzle():
    puzzle = _digits(QUESTION)
    result = solve(puzzle, 9)
    assert result.solutions == [_digits(ANSWER)] == _reference_solutions(puzzle, 9)
    assert result.guesses == 0  # this one falls to singles alone


def test_solver_counts_all_4x4_grids_and_respects_limit():
    assert count_solutions([0] * 16, 4) == 288  # the known number of 4x4 Sudoku grids
    grids = enumerate_solutions([0] * 16, 4)
    assert len({tuple(g) for g in grids}) == 288 and all(_reference_is_valid(g, 4) for g in grids)
    assert len(solve([0] * 81, 9, limit=2).solutions) == 2


def test_solver_rejects_malformed_boards():
    with pytest.raises(ValueError, match="81 cells"):
        solve([0] * 80, 9)
    with pytest.raises(ValueError, match="digits must be"):
        solve([10] + [0] * 80, 9)
    assert solve([1, 1] + [0] * 79, 9).solutions == []  # contradictory givens: no solution


def test_full_grids_are_valid_and_seeded():
    for n in (4, 9):
        grids = [generate_full_grid(n, np.random.default_rng(i)) for i in range(5)]
        assert all(_reference_is_valid(g, n) for g in grids)
        assert len({tuple(g) for g in grids}) > 1
        assert generate_full_grid(n, np.random.default_rng(3)) == grids[3]


def test_unique_9x9_puzzles_have_one_solution_and_respect_hardness():
    min_guesses = 2
    ds = generate_split("test", 3, n=9, unique=True, min_guesses=min_guesses, seed=1)
    for row in _rows(ds):
        puzzle = [t - 1 for t in row["inputs"]]  # tokens -> digits
        reference = _reference_solutions(puzzle, 9, limit=2)
        assert len(reference) == 1
        assert row["num_solutions"] == 1
        assert [[t - 1 for t in s] for s in row["solutions"]] == reference
        assert row["guesses"] >= min_guesses
        assert row["guesses"] == solve(puzzle, 9).guesses  # stored effort is the solver's


def test_unique_puzzles_are_minimal():
    puzzle, (solution,) = generate_puzzle(4, np.random.default_rng(0), unique=True)
    for cell, digit in enumerate(puzzle):
        if digit:
            fewer = list(puzzle)
            fewer[cell] = 0
            assert len(_reference_solutions(fewer, 4, limit=2)) == 2
    assert _reference_solutions(puzzle, 4) == [solution]


def test_hardness_filter_gives_up_with_clear_error():
    with pytest.raises(GenerationError, match="min_guesses"):
        generate_puzzle(4, np.random.default_rng(0), unique=True, min_guesses=10**6, max_attempts=3)


def test_multi_solution_4x4_puzzles_store_all_solutions():
    ds = generate_split("train", 30, n=4, unique=False, min_givens=2, max_givens=6, seed=0)
    assert len({tuple(r["inputs"]) for r in _rows(ds)}) == 30  # de-duplicated
    counts = []
    for row in _rows(ds):
        puzzle = [t - 1 for t in row["inputs"]]
        assert 2 <= sum(d > 0 for d in puzzle) <= 6
        reference = {tuple(s) for s in _reference_solutions(puzzle, 4)}
        stored = {tuple(t - 1 for t in s) for s in row["solutions"]}
        assert stored == reference and row["num_solutions"] == len(reference)
        counts.append(row["num_solutions"])
    assert max(counts) > 1


def test_generation_does_not_depend_on_process_count_and_respects_exclusion():
    kwargs = dict(n=4, unique=False, min_givens=4, max_givens=6, seed=7)
    one = generate_split("test", 12, num_proc=1, **kwargs)
    two = generate_split("test", 12, num_proc=2, **kwargs)
    assert one["inputs"] == two["inputs"] and one["solutions"] == two["solutions"]
    excluded = split_keys(one.select(range(6)))
    other = generate_split("test", 12, exclude=excluded, **kwargs)
    assert len(other) == 12 and not excluded & split_keys(other)


def test_generation_fails_clearly_when_puzzle_space_is_too_small():
    # Complete 4x4 boards (16 givens): only the 288 grids exist.
    with pytest.raises(GenerationError, match="only 288 distinct 4x4 train puzzles"):
        generate_split("train", 289, n=4, unique=False, min_givens=16, max_givens=16)


# ---------------------------------------------------------------------------------------------
# Augmentation and solution checks
# ---------------------------------------------------------------------------------------------


def _boards(n: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, L) puzzle and solution tokens, with about half the cells blank."""
    rng = np.random.default_rng(0)
    grids = torch.stack([_tokens(generate_full_grid(n, rng)) for _ in range(count)])
    blank = torch.from_numpy(rng.random(grids.shape) < 0.5)
    return grids.masked_fill(blank, BLANK_TOKEN), grids


@pytest.mark.parametrize("n", [4, 9])
def test_augmentation_keeps_boards_valid_and_consistent(n):
    inputs, targets = _boards(n, 64)
    generator = torch.Generator().manual_seed(0)
    aug_inputs, aug_targets = augment_batch(inputs, targets, generator)
    assert aug_inputs.shape == inputs.shape and aug_inputs.dtype == torch.long
    assert is_valid_sudoku(aug_targets, n).all()
    assert check_solution(aug_inputs, aug_targets).all()  # every given agrees with its target
    assert ((aug_inputs == BLANK_TOKEN).sum(1) == (inputs == BLANK_TOKEN).sum(1)).all()
    assert (aug_targets != targets).any(1).all()  # every board changed
    again = augment_batch(inputs, targets, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], aug_inputs) and torch.equal(again[1], aug_targets)


def test_augmentation_uses_every_symmetry():
    # One board augmented many times: nearly every copy differs and the top-left digit takes
    # every value.
    inputs, targets = _boards(9, 1)
    aug_inputs, aug_targets = augment_batch(inputs.repeat(2000, 1), targets.repeat(2000, 1))
    assert len(set(aug_targets[:, 0].tolist())) == 9  # digit relabeling reaches every digit
    assert len({tuple(row) for row in aug_targets.tolist()}) > 1900
    assert is_valid_sudoku(aug_targets, 9).all()


def test_check_solution_hand_made_cases():
    puzzle, solution = _tokens(_digits(QUESTION)), _tokens(_digits(ANSWER))
    blank_puzzle = torch.full_like(puzzle, BLANK_TOKEN)
    swapped = solution.clone()  # swap two cells of row 0: the columns now repeat a digit
    swapped[[2, 3]] = solution[[3, 2]]
    relabeled = solution.clone()  # digits 1 <-> 2 everywhere: valid, but changes givens
    relabeled[solution == 2], relabeled[solution == 3] = 3, 2
    with_blank = solution.clone()
    with_blank[40] = BLANK_TOKEN
    inputs = torch.stack([puzzle, blank_puzzle, puzzle, puzzle])
    preds = torch.stack([solution, swapped, relabeled, with_blank])
    assert check_solution(inputs, preds).tolist() == [True, False, False, False]
    assert is_valid_sudoku(preds, 9).tolist() == [True, False, True, False]
    assert is_valid_sudoku(preds.view(2, 2, 81), 9).shape == (2, 2)  # any leading shape


# ---------------------------------------------------------------------------------------------
# CSV reader
# ---------------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[str], header: str = "source,question,answer,rating") -> Path:
    path.write_text("\n".join([header, *rows] if header else rows) + "\n")
    return path


def test_read_good_csv(tmp_path):
    zero_blanks = QUESTION.replace(".", "0")
    path = _write_csv(tmp_path / "good.csv", [f"a,{QUESTION},{ANSWER},3", f"b,{zero_blanks},{ANSWER},0"])
    ds = read_sudoku_csv(path)
    assert len(ds) == 2
    row = ds[0]
    assert row["inputs"] == _tokens(_digits(QUESTION)).tolist()
    assert row["solutions"] == [_tokens(_digits(ANSWER)).tolist()]
    assert row["num_solutions"] == 1 and row["guesses"] == -1
    assert ds[1]["inputs"] == row["inputs"]
    assert len(read_sudoku_csv(path, limit=1)) == 1
    assert len(read_sudoku_csv(path, n=None)) == 2  # size inferred


def _bad_answer() -> str:
    """A full answer with two cells of row 0 swapped: the columns repeat digits."""
    a = list(ANSWER)
    a[2], a[3] = a[3], a[2]
    return "".join(a)


BAD_ROWS = {
    "columns": (f"x,{QUESTION},{ANSWER}", "columns"),
    "length": (f"x,{QUESTION[:-1]},{ANSWER},0", "80 characters"),
    "character": (f"x,{'x' + QUESTION[1:]},{ANSWER},0", "character"),
    "answer character": (f"x,{QUESTION},{'.' + ANSWER[1:]},0", "character"),
    "contradiction": (f"x,{QUESTION},{'6' + ANSWER[1:]},0", "contradicts"),
    "invalid answer": (f"x,{'.' * 81},{_bad_answer()},0", "not a valid Sudoku"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_malformed_csv_row_names_file_and_line(tmp_path, kind):
    bad_row, problem = BAD_ROWS[kind]
    good = f"ok,{QUESTION},{ANSWER},0"
    path = _write_csv(tmp_path / f"{kind.replace(' ', '_')}.csv", [good, good, good, bad_row, good])
    with pytest.raises(SudokuFormatError, match=problem) as info:
        read_sudoku_csv(path)
    assert path.name in str(info.value) and "line 5:" in str(info.value)


def test_malformed_csv_header_and_earliest_error(tmp_path):
    no_header = _write_csv(tmp_path / "no_header.csv", [f"ok,{QUESTION},{ANSWER},0"], header="")
    with pytest.raises(SudokuFormatError, match=r"no_header\.csv, line 1: expected the header"):
        read_sudoku_csv(no_header)
    # A content error (line 3) comes before a structural one (line 4): line 3 is reported.
    rows = [f"ok,{QUESTION},{ANSWER},0", BAD_ROWS["character"][0], BAD_ROWS["columns"][0]]
    with pytest.raises(SudokuFormatError, match=r"line 3: question has a character"):
        read_sudoku_csv(_write_csv(tmp_path / "two.csv", rows))
    with pytest.raises(SudokuFormatError, match="expected 16"):
        read_sudoku_csv(_write_csv(tmp_path / "size.csv", [f"ok,{QUESTION},{ANSWER},0"]), n=4)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def _counting_build(calls: list[int], value: int = 1):
    def build() -> datasets.Dataset:
        calls.append(value)
        return datasets.Dataset.from_dict({"x": [value, value + 1]})

    return build


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_cache_builds_once_then_loads(tmp_path):
    calls: list[int] = []
    first = cached_dataset(tmp_path, "demo", {"a": 1, "b": [2]}, _counting_build(calls))
    second = cached_dataset(tmp_path, "demo", {"b": [2], "a": 1}, _counting_build(calls))  # key order irrelevant
    assert calls == [1] and first["x"] == second["x"] == [1, 2]
    cached_dataset(tmp_path, "demo", {"a": 2, "b": [2]}, _counting_build(calls))
    assert calls == [1, 1]  # other params: another folder
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2 and all((f / "params.json").is_file() for f in folders)
    assert not _leftovers(tmp_path)


def test_cache_corruption_raises_cache_error(tmp_path):
    cached_dataset(tmp_path, "demo", {"a": 1}, _counting_build([]))
    (folder,) = tmp_path.iterdir()
    for arrow_file in folder.glob("*.arrow"):
        arrow_file.write_bytes(b"not an arrow file")
    with pytest.raises(CacheError, match="delete the folder") as info:
        cached_dataset(tmp_path, "demo", {"a": 1}, _counting_build([]))
    assert str(folder) in str(info.value)


def test_cache_race_keeps_the_first_finished_copy(tmp_path):
    calls: list[int] = []

    def slow_build() -> datasets.Dataset:
        # Another process finishes the same build while this one is still running.
        cached_dataset(tmp_path, "demo", {"a": 1}, _counting_build(calls, value=10))
        return _counting_build(calls, value=20)()

    result = cached_dataset(tmp_path, "demo", {"a": 1}, slow_build)
    assert result["x"] == [10, 11] and calls == [10, 20]
    assert len(list(tmp_path.iterdir())) == 1 and not _leftovers(tmp_path)


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


def _datamodule(tmp_path: Path, **kwargs) -> SudokuDataModule:
    defaults = dict(num_proc=1, cache_dir=str(tmp_path / "cache"), epoch_multiplier=4, batch_size=8)
    return SudokuDataModule(**{**defaults, **kwargs})


def _four(tmp_path: Path, **kwargs) -> SudokuDataModule:
    return _datamodule(
        tmp_path, board_size=4, unique=False, min_givens=4, max_givens=7,
        num_train_puzzles=40, num_test_puzzles=20, num_val_puzzles=10, **kwargs,
    )


def test_datamodule_attributes_before_setup():
    for n in (4, 9):
        dm = SudokuDataModule(board_size=n)
        assert (dm.vocab_size, dm.seq_len, dm.out_len, dm.num_puzzle_ids) == (n + 2, n * n, n * n, 0)
        assert not dm.splits


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(board_size=5), "board_size"),
        (dict(board_size=4, unique=False), "min_givens and max_givens"),
        (dict(board_size=4, unique=False, min_givens=5, max_givens=17), "max_givens <= 16"),
        (dict(min_givens=20), "only apply"),
        (dict(num_val_puzzles=2000), "num_val_puzzles"),
        (dict(num_train_puzzles=-1), "-1 only with a CSV"),
        (dict(epoch_multiplier=0), "epoch_multiplier"),
        (dict(board_size=16, test_csv="x.csv"), "CSV"),
    ],
)
def test_datamodule_rejects_bad_arguments(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        SudokuDataModule(**kwargs)


def _check_batch(batch: dict, batch_size: int, n: int) -> None:
    assert set(batch) == {"inputs", "labels", "num_solutions", "index"}
    assert batch["inputs"].shape == batch["labels"].shape == (batch_size, n * n)
    assert batch["num_solutions"].shape == batch["index"].shape == (batch_size,)
    assert all(v.dtype == torch.long for v in batch.values())
    assert check_solution(batch["inputs"], batch["labels"], n).all()


def test_datamodule_4x4_multi_solution(tmp_path):
    dm = _four(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    train, test = dm.splits["train"], dm.splits["test"]
    assert len(train) == 40 and len(test) == 20 and len(dm.splits["val"]) == 10
    assert train.solutions.shape == (int(train.num_solutions.sum()), 16) and train.offsets[-1] == len(train.solutions)
    assert not {bytes(r) for r in train.inputs.numpy()} & {bytes(r) for r in test.inputs.numpy()}

    loader = dm.train_dataloader()
    assert len(loader) == 40 * 4 // 8
    _check_batch(next(iter(loader)), 8, 4)

    val = next(iter(dm.val_dataloader()))
    _check_batch(val, 8, 4)
    assert val["index"].tolist() == list(range(8))
    solutions, counts = dm.solutions(val["index"], "val")
    assert solutions.shape == (8, int(counts.max()), 16) and torch.equal(counts, val["num_solutions"])
    assert torch.equal(solutions[:, 0], val["labels"])  # eval labels: the first solution
    for row, count in enumerate(counts.tolist()):  # every stored solution valid and distinct, PAD beyond
        assert dm.check(val["inputs"][row].expand(count, -1), solutions[row, :count]).all()
        assert len({tuple(s) for s in solutions[row, :count].tolist()}) == count and not solutions[row, count:].any()


def test_datamodule_draws_random_solutions_for_training(tmp_path):
    dm = _four(tmp_path, augment=False)
    dm.setup()
    train = dm.splits["train"]
    puzzle = int(train.num_solutions.argmax())
    assert train.num_solutions[puzzle] > 1
    dataset = dm.train_dataloader().dataset
    labels = dataset.__getitems__([puzzle] * 200)["labels"]
    assert len({tuple(row) for row in labels.tolist()}) == int(train.num_solutions[puzzle])


def test_datamodule_9x9_and_cache_reuse(tmp_path, monkeypatch):
    kwargs = dict(num_train_puzzles=4, num_test_puzzles=3, num_val_puzzles=2, min_guesses=1, batch_size=4)
    dm = _datamodule(tmp_path, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), 4, 9)
    _check_batch(next(iter(dm.val_dataloader())), 2, 9)
    assert (dm.splits["train"].columns["guesses"] >= 1).all()

    def no_generation(*args, **kwargs):
        raise AssertionError("the cached splits should have been loaded")

    monkeypatch.setattr(sudoku_data, "generate_split", no_generation)
    again = _datamodule(tmp_path, **kwargs)
    again.setup("fit")
    assert torch.equal(again.splits["train"].inputs, dm.splits["train"].inputs)
    assert not _leftovers(tmp_path / "cache")


def test_datamodule_from_csv_with_workers(tmp_path):
    # Train and test CSVs share one puzzle: it is dropped from training.
    other = ANSWER[27:] + ANSWER[:27]  # bands cycled: still a valid grid
    train_csv = _write_csv(tmp_path / "train.csv", [f"a,{QUESTION},{ANSWER},0", f"b,{'.' * 40 + other[40:]},{other},0"])
    test_csv = _write_csv(tmp_path / "test.csv", [f"c,{QUESTION},{ANSWER},0"])
    dm = _datamodule(
        tmp_path, train_csv=str(train_csv), test_csv=str(test_csv), num_train_puzzles=-1,
        num_test_puzzles=-1, num_val_puzzles=1, batch_size=2, num_workers=1,
    )
    dm.setup("fit")
    assert len(dm.splits["train"]) == 1 and len(dm.splits["test"]) == 1
    _check_batch(next(iter(dm.train_dataloader())), 2, 9)
    assert dm.check(dm.splits["test"].inputs.long(), dm.splits["test"].solutions.long()).all()
