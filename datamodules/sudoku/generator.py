"""Sudoku generation: random solved grids, minimal unique puzzles filtered by hardness, multi-solution puzzles
with a chosen number of givens, and whole splits of distinct puzzles, generated in parallel.

Puzzles are digit boards (0 = blank) until `generate_split` writes them as token rows (see
`datamodules.sudoku.boards`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from contextlib import contextmanager
from typing import Iterator

import datasets
import numpy as np

from datamodules.generation import GenerationError, split_rng
from datamodules.sudoku.boards import box_side, row_keys, sudoku_features
from datamodules.sudoku.equivalence import EquivalenceIndex
from datamodules.sudoku.solver import solve
from datamodules.tables import board_matrix, ragged_boards, split_table
from gram_lightning.processes import children_die_with_parent

log = logging.getLogger(__name__)

# Default hardness filter per board size (see `generate_puzzle`); the cost of 9x9 values is in
# `SudokuDataModule`'s docstring.
DEFAULT_MIN_GUESSES = {4: 0, 9: 8, 16: 0}
# Bump when the generation algorithm changes, so that old cache folders are not reused.
GENERATOR_VERSION = 2


def generate_full_grid(n: int, rng: np.random.Generator) -> list[int]:
    """A random solved ``n x n`` grid (flat digits 1..n).

    The boxes on the main diagonal do not see each other, so they are filled with random
    permutations first and a randomized search completes the rest. For 9x9 every such start can
    be completed; for 4x4 some cannot, and a new start is drawn.
    """
    box = box_side(n)
    while True:
        board = [0] * (n * n)
        for b in range(box):
            for i, digit in enumerate(rng.permutation(n).tolist()):
                board[(b * box + i // box) * n + b * box + i % box] = digit + 1
        result = solve(board, n, limit=1, rng=rng)
        if result.solutions:
            return result.solutions[0]


def generate_puzzle(
    n: int,
    rng: np.random.Generator,
    *,
    unique: bool,
    num_givens: int | None = None,
    min_guesses: int = 0,
    max_attempts: int = 1000,
) -> tuple[list[int], list[list[int]]]:
    """A random puzzle and all its solutions (flat digit lists, 0 = blank).

    Args:
        n: Board side.
        rng: Source of randomness; the result is a function of its state.
        unique: True: remove cells of a random full grid in random order as long as the solution
            stays unique, giving a minimal puzzle; keep it only if solving it takes at least
            ``min_guesses`` guesses (see `SolveResult`), otherwise retry with a new grid.
            False: keep ``num_givens`` random cells of a random full grid and return every
            solution of the result.
        num_givens: Number of givens when ``unique`` is False.
        min_guesses: Hardness filter when ``unique`` is True.
        max_attempts: Grids tried before giving up on the hardness filter.
    """
    puzzle, solutions, _ = _make_puzzle(
        n, rng, unique=unique, num_givens=num_givens, min_guesses=min_guesses, max_attempts=max_attempts
    )
    return puzzle, solutions


def _make_puzzle(
    n: int,
    rng: np.random.Generator,
    *,
    unique: bool,
    num_givens: int | None,
    min_guesses: int,
    max_attempts: int = 1000,
) -> tuple[list[int], list[list[int]], int]:
    """`generate_puzzle`, also returning the guesses of the final solve."""
    if not unique:
        if num_givens is None or not 0 <= num_givens <= n * n:
            raise ValueError(f"multi-solution puzzles need 0 <= num_givens <= {n * n}, got {num_givens}")
        grid = generate_full_grid(n, rng)
        keep = set(rng.choice(n * n, size=num_givens, replace=False).tolist())
        puzzle = [d if cell in keep else 0 for cell, d in enumerate(grid)]
        result = solve(puzzle, n, limit=None)
        return puzzle, result.solutions, result.guesses

    for _ in range(max_attempts):
        grid = generate_full_grid(n, rng)
        puzzle = _minimal_puzzle(grid, n, rng)
        result = solve(puzzle, n, limit=2)
        if result.guesses >= min_guesses:
            return puzzle, [grid], result.guesses
    raise GenerationError(
        f"no {n}x{n} puzzle needed >= {min_guesses} guesses in {max_attempts} attempts; lower min_guesses"
    )


def _minimal_puzzle(grid: list[int], n: int, rng: np.random.Generator) -> list[int]:
    """Blank the cells of ``grid`` in random order whenever the solution stays unique.

    One pass gives a minimal puzzle: a cell that could not be blanked cannot be blanked later
    either, since blanking more cells only adds solutions.
    """
    puzzle = list(grid)
    for cell in rng.permutation(n * n).tolist():
        digit = puzzle[cell]
        puzzle[cell] = 0
        # Still unique iff no solution puts another digit in this cell.
        if solve(puzzle, n, limit=1, forbid=(cell, digit)).solutions:
            puzzle[cell] = digit
    return puzzle


def _generate_rows(
    batch: dict[str, list[int]],
    *,
    split: str,
    n: int,
    unique: bool,
    min_givens: int | None,
    max_givens: int | None,
    min_guesses: int,
    seed: int,
    unconditional: bool = False,
) -> dict[str, list]:
    """`datasets.Dataset.map` function: puzzle indices -> rows (runs in the worker processes)."""
    out: dict[str, list] = {"inputs": [], "solutions": [], "num_solutions": [], "guesses": []}
    for index in batch["index"]:
        rng = split_rng(seed, split, index)  # puzzle `index` alone: independent of who builds it
        if unconditional:  # a blank board whose target is one random solved grid
            puzzle, solutions, guesses = [0] * (n * n), [generate_full_grid(n, rng)], -1
        else:
            num_givens = None if unique else int(rng.integers(min_givens, max_givens + 1))
            puzzle, solutions, guesses = _make_puzzle(
                n, rng, unique=unique, num_givens=num_givens, min_guesses=min_guesses
            )
        out["inputs"].append([d + 1 for d in puzzle])  # digits -> tokens: blank 0 -> 1, d -> d + 1
        out["solutions"].append([[d + 1 for d in s] for s in solutions])
        out["num_solutions"].append(len(solutions))
        out["guesses"].append(guesses)
    return out


def generate_split(
    split: str,
    count: int,
    *,
    n: int,
    unique: bool,
    min_givens: int | None = None,
    max_givens: int | None = None,
    min_guesses: int = 0,
    seed: int = 0,
    num_proc: int = 1,
    exclude: set[bytes] | None = None,
    unconditional: bool = False,
    exclude_equivalent: EquivalenceIndex | None = None,
) -> datasets.Dataset:
    """Generate ``count`` distinct puzzles whose inputs are not in ``exclude`` nor equivalent to a
    board of ``exclude_equivalent``.

    Puzzle i comes from `split_rng` (seed, split, i); the split is the first ``count`` distinct,
    non-excluded puzzles in index order, so it does not depend on ``num_proc``. Indices are
    generated in rounds until enough distinct puzzles were found.

    Args:
        split: Split name, part of each puzzle's seed ("train", "test").
        count: Number of puzzles.
        n: Board side.
        unique: See `generate_puzzle`.
        min_givens: Multi-solution mode: fewest givens (drawn uniformly per puzzle).
        max_givens: Multi-solution mode: most givens.
        min_guesses: Unique mode: hardness filter.
        seed: Generation seed.
        num_proc: Worker processes (`datasets.Dataset.map`).
        exclude: Inputs to leave out, as returned by `split_keys` (e.g. the test split's).
        unconditional: Blank inputs, each with one random solved grid as its target; the grids are
            what is distinct and excluded.
        exclude_equivalent: Boards (inputs, or grids when unconditional) whose whole equivalence
            class under the augmentation group is left out, e.g. the test inputs: augmenting a
            training puzzle equivalent to a test puzzle would show that test puzzle in training.

    Raises:
        GenerationError: Too few distinct puzzles exist for ``count`` (tiny 4x4 spaces), or the
            hardness filter is too strict.
    """
    seen = set(exclude or ())
    parts: list[datasets.Dataset] = []
    found, next_index, num_equivalent = 0, 0, 0
    max_index = 20 * count + 1000  # give up when duplicates dominate (tiny puzzle space)
    fn_kwargs = dict(
        split=split, n=n, unique=unique, min_givens=min_givens, max_givens=max_givens,
        min_guesses=min_guesses, seed=seed, unconditional=unconditional,
    )
    while found < count:
        if next_index >= max_index:
            raise GenerationError(
                f"only {found} distinct {n}x{n} {split} puzzles in {next_index} tries (of {count} asked; "
                f"{num_equivalent} left out as equivalent to an excluded board): the puzzle space is too "
                f"small; ask for fewer puzzles or change the givens range"
            )
        missing = count - found
        # Ask for enough indices to cover the duplicates seen so far (few, unless the space of
        # puzzles is small), plus a little extra.
        keep_rate = max(found / next_index, 0.01) if next_index else 1.0
        round_size = min(math.ceil(1.1 * missing / keep_rate) + 4, max_index - next_index)
        indices = list(range(next_index, next_index + round_size))
        next_index += round_size
        # One bar for the first round; the top-up rounds (a few, or hundreds of tiny ones in the
        # coupon-collector tail of a 4x4 space) are one log line at the end instead of a bar each.
        # The workers must not outlive a killed parent.
        with _progress_bars(enabled=len(parts) == 0), children_die_with_parent():
            rows = datasets.Dataset.from_dict({"index": indices}).map(
                _generate_rows,
                batched=True,
                batch_size=max(1, min(64, round_size // max(num_proc, 1))),
                num_proc=min(num_proc, round_size) if num_proc > 1 else None,
                remove_columns=["index"],
                features=sudoku_features(n),
                fn_kwargs=fn_kwargs,
                desc=f"generating {n}x{n} {split} puzzles",
            )
        keys = key_matrix(rows, unconditional)
        equivalent = (
            exclude_equivalent.matches(keys) if exclude_equivalent is not None else np.zeros(len(keys), dtype=bool)
        )
        keep = []
        for i, key in enumerate(row_keys(keys)):
            if equivalent[i]:
                num_equivalent += 1
            elif key not in seen and found + len(keep) < count:
                seen.add(key)
                keep.append(i)
        found += len(keep)
        parts.append(rows.select(keep))
    if len(parts) > 1 or num_equivalent:
        log.info(
            "%d distinct %dx%d %s puzzles from %d tries in %d rounds (%d left out as equivalent to an excluded board)",
            count, n, n, split, next_index, len(parts), num_equivalent,
        )
    return datasets.concatenate_datasets(parts).flatten_indices()


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """`datasets` progress bars as they are (enabled) or off for the block."""
    switch_off = not enabled and not datasets.are_progress_bars_disabled()
    if switch_off:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if switch_off:
            datasets.enable_progress_bars()


def key_matrix(ds: datasets.Dataset, unconditional: bool = False) -> np.ndarray:
    """(R, L) boards that tell the rows of ``ds`` apart: the inputs, or for unconditional data (all inputs
    blank, one solution each) the solved grids."""
    if not unconditional:
        return board_matrix(split_table(ds).column("inputs"))
    return ragged_boards(split_table(ds).column("solutions"))[0]


def split_keys(ds: datasets.Dataset, unconditional: bool = False) -> set[bytes]:
    """The rows of ``ds`` as hashable keys (see `key_matrix`), e.g. for `generate_split`'s ``exclude``."""
    return set(row_keys(key_matrix(ds, unconditional)))


def inputs_fingerprint(ds: datasets.Dataset, unconditional: bool = False) -> str:
    """Hash of a dataset's keys, to key caches that depend on them (e.g. train excludes test)."""
    return hashlib.sha256(np.ascontiguousarray(key_matrix(ds, unconditional)).tobytes()).hexdigest()[:16]
