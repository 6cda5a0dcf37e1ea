"""Sudoku data: solver, generator, Sudoku-Extreme CSV reader, augmentation and the DataModule.

Token conventions (shared with the model through ``vocab_size = n + 2``):

    0       PAD (unused by Sudoku itself, reserved for the model)
    1       blank cell of an input board
    2..n+1  digits 1..n

A board is a flat row-major sequence of ``n * n`` tokens; ``n`` is 4, 9 or 16 and the boxes are
``sqrt(n) x sqrt(n)``. The pure-Python solver and generator work on *digits* instead (0 = blank,
1..n = digits); ``digits + 1`` turns a digit board into tokens (blank 0 -> token 1).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import datasets
import numpy as np
import pyarrow as pa
import torch

from datamodules.board_columns import board_matrix, ragged_boards, ragged_slots, split_table
from datamodules.cache import cached_dataset
from datamodules.puzzle_data import PuzzleBatches, PuzzleDataModule, require
from datamodules.sudoku_equivalence import (  # noqa: F401 (the token values are re-exported)
    BLANK_TOKEN,
    FIRST_DIGIT_TOKEN,
    PAD_TOKEN,
    EquivalenceIndex,
    box_side,
    row_keys,
)
from gram_lightning.errors import GramError, GramUserError
from gram_lightning.processes import children_die_with_parent
from gram_lightning.render import PALETTE, grid_image
from gram_lightning.sample_set_metrics import SampleSetMetrics
from gram_lightning.task import Task

log = logging.getLogger(__name__)

SUPPORTED_SIZES = (4, 9, 16)
# Default hardness filter per board size (see `generate_puzzle`); the cost of 9x9 values is in
# `SudokuDataModule`'s docstring.
DEFAULT_MIN_GUESSES = {4: 0, 9: 8, 16: 0}
# Bump when the generation algorithm changes, so that old cache folders are not reused.
GENERATOR_VERSION = 2


# ---------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolveResult:
    """Outcome of `solve`.

    Attributes:
        solutions: Up to ``limit`` solutions, each a flat list of ``n * n`` digits (1..n), in the
            order the deterministic search finds them.
        guesses: Branching effort of the search. At every branch point (an unfilled cell with
            k >= 2 candidates left after propagation) the search tries candidates one by one; each
            attempt after the first counts as one guess. So a board solved by naked + hidden
            singles alone has 0 guesses, and, for a unique puzzle searched with ``limit >= 2``
            (the whole tree is explored to prove uniqueness), guesses = sum over branch points of
            (k - 1). Deterministic given the board and ``limit``.
    """

    solutions: list[list[int]]
    guesses: int


@dataclass(frozen=True)
class _Tables:
    """Index tables of an n x n board (cells are row-major indices 0..n*n-1)."""

    n: int
    full: int  # bitmask with all n digit bits set; bit d-1 stands for digit d
    units: tuple[tuple[int, ...], ...]  # the n rows, n columns and n boxes
    peers: tuple[tuple[int, ...], ...]  # per cell: the other cells sharing a row, column or box


@lru_cache(maxsize=None)
def _tables(n: int) -> _Tables:
    box = box_side(n)
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [
        tuple((br * box + r) * n + bc * box + c for r in range(box) for c in range(box))
        for br in range(box)
        for bc in range(box)
    ]
    units = tuple(rows + cols + boxes)
    peers = tuple(
        tuple(sorted({p for unit in units if cell in unit for p in unit} - {cell})) for cell in range(n * n)
    )
    return _Tables(n=n, full=(1 << n) - 1, units=units, peers=peers)


def _initial_candidates(board: Sequence[int], t: _Tables) -> tuple[list[int], list[int]]:
    """Candidate bitmask per cell, and the given cells (still to be eliminated from their peers)."""
    n = t.n
    if len(board) != n * n:
        raise ValueError(f"a {n}x{n} board has {n * n} cells, got {len(board)}")
    cand, queue = [], []
    for cell, digit in enumerate(board):
        digit = int(digit)
        if not 0 <= digit <= n:
            raise ValueError(f"cell {cell} holds {digit}; digits must be 0 (blank) .. {n}")
        if digit:
            cand.append(1 << (digit - 1))
            queue.append(cell)
        else:
            cand.append(t.full)
    return cand, queue


def _propagate(cand: list[int], queue: list[int], t: _Tables) -> bool:
    """Apply naked and hidden singles in place until nothing changes; False on a contradiction.

    ``queue`` holds the cells whose mask became a single digit and that were not yet eliminated
    from their peers.
    """
    peers, full = t.peers, t.full
    while True:
        # Naked singles: a decided cell removes its digit from all peers.
        while queue:
            cell = queue.pop()
            bit = cand[cell]
            for p in peers[cell]:
                m = cand[p]
                if m & bit:
                    m ^= bit
                    if not m:
                        return False
                    cand[p] = m
                    if not m & (m - 1):
                        queue.append(p)
        # Hidden singles: a digit with a single possible cell in a unit goes there.
        for unit in t.units:
            once = twice = 0
            for c in unit:
                m = cand[c]
                twice |= once & m
                once |= m
            if once != full:
                return False  # some digit has no place left in this unit
            hidden = once & ~twice
            if not hidden:
                continue
            for c in unit:
                m = cand[c]
                h = m & hidden
                if h and m & (m - 1):  # undecided cell that is the only home of some digit(s)
                    if h & (h - 1):
                        return False  # the only home of two digits at once
                    cand[c] = h
                    queue.append(c)
        if not queue:
            return True


class _Search:
    """Depth-first search with MRV branching over propagated candidate masks."""

    def __init__(self, t: _Tables, limit: int | None, rng: np.random.Generator | None = None) -> None:
        self.t, self.limit, self.rng = t, limit, rng
        self.solutions: list[list[int]] = []
        self.guesses = 0

    def done(self) -> bool:
        return self.limit is not None and len(self.solutions) >= self.limit

    def run(self, cand: list[int]) -> None:
        cell = self._most_constrained_cell(cand)
        if cell < 0:
            self.solutions.append([m.bit_length() for m in cand])  # single bit -> digit
            return
        mask = cand[cell]
        bits = [1 << d for d in range(self.t.n) if mask >> d & 1]
        if self.rng is not None:
            bits = [bits[i] for i in self.rng.permutation(len(bits))]
        for attempt, bit in enumerate(bits):
            if attempt:
                self.guesses += 1
            child = cand.copy()
            child[cell] = bit
            if _propagate(child, [cell], self.t):
                self.run(child)
            if self.done():
                return

    @staticmethod
    def _most_constrained_cell(cand: list[int]) -> int:
        """Undecided cell with the fewest candidates (lowest index on ties); -1 when all decided."""
        best, best_count = -1, 1 << 30
        for cell, m in enumerate(cand):
            if m & (m - 1):
                count = m.bit_count()
                if count < best_count:
                    best, best_count = cell, count
                    if count == 2:
                        break
        return best


def solve(board: Sequence[int], n: int, limit: int | None = 2) -> SolveResult:
    """Solve a Sudoku by naked/hidden-single propagation plus MRV depth-first search.

    Args:
        board: ``n * n`` digits, row-major, 0 for blank.
        n: Board side (4, 9, 16).
        limit: Stop after this many solutions (None: find all). ``limit=2`` tells whether the
            solution is unique.
    """
    return _solve(board, n, limit)


def _solve(
    board: Sequence[int],
    n: int,
    limit: int | None,
    forbid: tuple[int, int] | None = None,
    rng: np.random.Generator | None = None,
) -> SolveResult:
    """`solve`, optionally forbidding digit ``forbid[1]`` in cell ``forbid[0]`` (which must be
    blank) and trying candidates in random order (``rng``)."""
    t = _tables(n)
    cand, queue = _initial_candidates(board, t)
    if forbid is not None:
        cell, digit = forbid
        cand[cell] &= ~(1 << (digit - 1))
    search = _Search(t, limit, rng)
    if _propagate(cand, queue, t):
        search.run(cand)
    return SolveResult(solutions=search.solutions, guesses=search.guesses)


def count_solutions(board: Sequence[int], n: int, limit: int | None = None) -> int:
    """Number of solutions of ``board``, counting at most ``limit`` (None: all)."""
    return len(_solve(board, n, limit).solutions)


def enumerate_solutions(board: Sequence[int], n: int) -> list[list[int]]:
    """All solutions of ``board`` (only practical when there are few, e.g. 4x4 boards)."""
    return _solve(board, n, None).solutions


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class GenerationError(GramError, RuntimeError):
    """The generator could not produce what was asked (e.g. too strict a hardness filter)."""


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
        result = _solve(board, n, limit=1, rng=rng)
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
        result = _solve(puzzle, n, limit=None)
        return puzzle, result.solutions, result.guesses

    for _ in range(max_attempts):
        grid = generate_full_grid(n, rng)
        puzzle = _minimal_puzzle(grid, n, rng)
        result = _solve(puzzle, n, limit=2)
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
        if _solve(puzzle, n, limit=1, forbid=(cell, digit)).solutions:
            puzzle[cell] = digit
    return puzzle


# ---------------------------------------------------------------------------------------------
# Datasets: generated splits, CSV files, conversion to tensors
# ---------------------------------------------------------------------------------------------


def sudoku_features(n: int) -> datasets.Features:
    """Columns of every Sudoku dataset: token boards (int8, see the module docstring)."""
    # `Sequence` rather than `List`: the same Arrow types (fixed-size lists) on datasets 3.x and 4+.
    board = datasets.Sequence(datasets.Value("int8"), length=n * n)
    return datasets.Features(
        {
            "inputs": board,  # the puzzle, blanks as token 1
            "solutions": datasets.Sequence(board),  # all solutions (unique puzzles: one)
            "num_solutions": datasets.Value("int32"),
            "guesses": datasets.Value("int32"),  # solver effort (see SolveResult); -1 = unknown
        }
    )


def dataset_from_arrays(
    inputs: np.ndarray, solutions: np.ndarray, guesses: np.ndarray | None = None
) -> datasets.Dataset:
    """A Sudoku dataset of unique puzzles from token arrays ``inputs`` (R, L) and ``solutions``
    (R, L); ``guesses`` (R,) defaults to -1 (unknown)."""
    rows, length = inputs.shape
    n = math.isqrt(length)

    def boards(values: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.int8).reshape(-1)), length)

    offsets = pa.array(np.arange(rows + 1, dtype=np.int32))
    guesses = np.full(rows, -1, dtype=np.int32) if guesses is None else guesses.astype(np.int32)
    features = sudoku_features(n)
    table = pa.Table.from_arrays(
        [
            boards(inputs),
            pa.ListArray.from_arrays(offsets, boards(solutions)),
            pa.array(np.ones(rows, dtype=np.int32)),
            pa.array(guesses),
        ],
        schema=features.arrow_schema,
    )
    return datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features))


def _split_code(split: str) -> int:
    """Stable integer for a split name, part of each puzzle's seed."""
    return zlib.crc32(split.encode())


def puzzle_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of puzzle ``index`` of ``split``: independent of who builds which puzzle."""
    return np.random.default_rng([seed, _split_code(split), index])


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
        rng = puzzle_rng(seed, split, index)
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

    Puzzle i comes from `puzzle_rng` (seed, split, i); the split is the first ``count`` distinct,
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
        keys = _key_matrix(rows, unconditional)
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


def _key_matrix(ds: datasets.Dataset, unconditional: bool = False) -> np.ndarray:
    """(R, L) boards that tell the rows of ``ds`` apart: the inputs, or for unconditional data (all inputs
    blank, one solution each) the solved grids."""
    if not unconditional:
        return board_matrix(split_table(ds).column("inputs"))
    return ragged_boards(split_table(ds).column("solutions"))[0]


def split_keys(ds: datasets.Dataset, unconditional: bool = False) -> set[bytes]:
    """The rows of ``ds`` as hashable keys (see `_key_matrix`), e.g. for `generate_split`'s ``exclude``."""
    return set(row_keys(_key_matrix(ds, unconditional)))


def inputs_fingerprint(ds: datasets.Dataset, unconditional: bool = False) -> str:
    """Hash of a dataset's keys, to key caches that depend on them (e.g. train excludes test)."""
    return hashlib.sha256(np.ascontiguousarray(_key_matrix(ds, unconditional)).tobytes()).hexdigest()[:16]


class SudokuFormatError(GramUserError):
    """A malformed row in a Sudoku CSV file; the message names the file and line."""


CSV_HEADER = ("source", "question", "answer", "rating")
_CSV_CHUNK = 65536  # rows validated at once (bounds the memory of the vectorized checks)


def read_sudoku_csv(path: str | Path, n: int | None = 9, limit: int | None = None) -> datasets.Dataset:
    """Read a Sudoku CSV in the Sudoku-Extreme format (``source,question,answer,rating``).

    ``question`` uses '.' or '0' for blanks and '1'..'n' for digits; ``answer`` is all digits.
    Every row is checked: column count, lengths, characters, the answer agreeing with every given
    and the answer being a valid Sudoku.

    Args:
        path: The CSV file.
        n: Board side (4 or 9), or None to infer it from the first question's length.
        limit: Read only the first ``limit`` rows.

    Raises:
        SudokuFormatError: On the first malformed row, naming the file, line number and problem.
    """
    path = Path(path)
    questions, answers, lines, n, pending = _read_csv_rows(path, n, limit)
    length = n * n
    q = np.frombuffer("".join(questions).encode("ascii"), dtype=np.uint8).reshape(-1, length)
    a = np.frombuffer("".join(answers).encode("ascii"), dtype=np.uint8).reshape(-1, length)
    # Rows before a structural error are checked first: the earliest problem in the file wins.
    for start in range(0, len(q), _CSV_CHUNK):
        row, problem = _first_bad_row(q[start : start + _CSV_CHUNK], a[start : start + _CSV_CHUNK], n)
        if row is not None:
            raise SudokuFormatError(f"{path}, line {lines[start + row]}: {problem}")
    if pending is not None:
        raise pending
    if not questions:  # checked before anything is cached: an empty dataset would be cached as if it were data
        raise SudokuFormatError(f"{path} has no puzzles: it holds the header and no rows")
    q_digits = np.where((q == ord(".")) | (q == ord("0")), 0, q - ord("0"))
    a_digits = a - ord("0")
    return dataset_from_arrays(q_digits + 1, a_digits + 1)  # digits -> tokens


def _read_csv_rows(
    path: Path, n: int | None, limit: int | None
) -> tuple[list[str], list[str], list[int], int, SudokuFormatError | None]:
    """Questions, answers and line numbers; stops at the first structural error and returns it
    (the caller reports an earlier content error first, if any)."""
    questions, answers, lines = [], [], []

    def error(line: int, problem: str) -> SudokuFormatError:
        return SudokuFormatError(f"{path}, line {line}: {problem}")

    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(CSV_HEADER):
            raise error(1, f"expected the header {','.join(CSV_HEADER)!r}, got {','.join(header or [])!r}")
        for row in reader:
            if limit is not None and len(questions) >= limit:
                break
            if not row:
                continue  # blank line (e.g. at the end of the file)
            line = reader.line_num
            if len(row) != len(CSV_HEADER):
                return questions, answers, lines, n or 9, error(
                    line, f"expected {len(CSV_HEADER)} columns, got {len(row)}"
                )
            question, answer = row[1].strip(), row[2].strip()
            if n is None:
                n = _infer_size(len(question), error(line, f"question length {len(question)} is not 16 or 81"))
            problem = _length_problem("question", question, n) or _length_problem("answer", answer, n)
            if problem:
                return questions, answers, lines, n, error(line, problem)
            questions.append(question)
            answers.append(answer)
            lines.append(line)
    return questions, answers, lines, n or 9, None


def _length_problem(name: str, board: str, n: int) -> str | None:
    if len(board) != n * n:
        return f"{name} has {len(board)} characters, expected {n * n} for a {n}x{n} board"
    if not board.isascii():
        return f"{name} has non-ASCII characters"
    return None


def _infer_size(length: int, err: SudokuFormatError) -> int:
    for n in (4, 9):
        if n * n == length:
            return n
    raise err


def _first_bad_row(q: np.ndarray, a: np.ndarray, n: int) -> tuple[int | None, str]:
    """First row (and its problem) failing a content check, on ASCII code arrays (R, L)."""
    digit_lo, digit_hi = ord("1"), ord("0") + n
    q_digit = (q >= digit_lo) & (q <= digit_hi)
    a_digit = (a >= digit_lo) & (a <= digit_hi)
    bad_q_char = ~(q_digit | (q == ord(".")) | (q == ord("0")))
    bad_a_char = ~a_digit
    contradiction = q_digit & (q != a)
    checks = [
        (bad_q_char.any(1), "question has a character other than '.', '0' or '1'..'{n}': {char!r}", bad_q_char, q),
        (bad_a_char.any(1), "answer has a character other than '1'..'{n}': {char!r}", bad_a_char, a),
        (contradiction.any(1), "answer contradicts the given {char!r} of the question", contradiction, q),
    ]
    valid = _valid_digit_boards(np.where(a_digit, a - ord("0"), 0), n)
    bad = np.zeros(len(q), dtype=bool)
    for rows, *_ in checks:
        bad |= rows
    bad |= ~valid
    if not bad.any():
        return None, ""
    row = int(bad.argmax())
    for rows, message, cells, chars in checks:
        if rows[row]:
            cell = int(cells[row].argmax())
            char = chr(chars[row, cell])
            return row, message.format(n=n, char=char) + f" at cell {cell} (row {cell // n + 1}, column {cell % n + 1})"
    return row, "answer is not a valid Sudoku (a row, column or box repeats a digit)"


def _valid_digit_boards(digits: np.ndarray, n: int) -> np.ndarray:
    """(R, L) digits 1..n (0 = invalid) -> (R,) bool: every row, column and box holds 1..n."""
    box = math.isqrt(n)
    digits = digits.astype(np.int32)  # uint8 shifts would overflow past 8 digits
    bits = np.where(digits > 0, np.left_shift(1, np.maximum(digits, 1) - 1), 0)
    grid = bits.reshape(-1, n, n)
    boxes = grid.reshape(-1, box, box, box, box).transpose(0, 1, 3, 2, 4).reshape(-1, n, n)
    full = (1 << n) - 1
    # n cells whose bits OR to all n digits hold each digit exactly once.
    return (
        (np.bitwise_or.reduce(grid, axis=2) == full).all(1)
        & (np.bitwise_or.reduce(grid, axis=1) == full).all(1)
        & (np.bitwise_or.reduce(boxes, axis=2) == full).all(1)
    )


@dataclass
class PuzzleTensors:
    """One split in memory.

    Attributes:
        inputs: (P, L) uint8 input tokens.
        solutions: (P, S_max, L) uint8 solution tokens, zero (PAD) beyond each puzzle's count.
        num_solutions: (P,) int64.
        guesses: (P,) int64 solver guesses, -1 when unknown.
    """

    inputs: torch.Tensor
    solutions: torch.Tensor
    num_solutions: torch.Tensor
    guesses: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset) -> "PuzzleTensors":
        table = split_table(ds)
        inputs = board_matrix(table.column("inputs"))  # (P, L)
        num_puzzles, length = inputs.shape
        flat, counts = ragged_boards(table.column("solutions"))  # (total solutions, L), (P,)
        padded = np.zeros((num_puzzles, int(counts.max(initial=1)), length), dtype=np.uint8)
        padded[ragged_slots(counts)] = flat
        guesses = table.column("guesses").to_numpy().astype(np.int64)
        return cls(
            inputs=torch.from_numpy(inputs.copy()),
            solutions=torch.from_numpy(padded),
            num_solutions=torch.from_numpy(counts),
            guesses=torch.from_numpy(guesses),
        )

    def subset(self, keep: torch.Tensor) -> "PuzzleTensors":
        return PuzzleTensors(self.inputs[keep], self.solutions[keep], self.num_solutions[keep], self.guesses[keep])


# ---------------------------------------------------------------------------------------------
# Augmentation and checking (batched torch)
# ---------------------------------------------------------------------------------------------


def augment_batch(
    inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply an independent random validity-preserving transform to each row.

    The transform of a row: relabel digits (tokens 2..n+1 permuted; PAD and blank fixed),
    transpose with probability 1/2, permute the bands and the rows within each band, and the
    stacks and the columns within each stack. The input and its target get the same transform.

    Args:
        inputs: (B, L) token boards, L = n * n.
        targets: (B, L) token boards.
        generator: Source of randomness (None: torch's global generator, which DataLoader
            workers seed differently).
    """
    batch, length = inputs.shape
    n = math.isqrt(length)
    box = box_side(n)
    device = inputs.device
    rand_device = generator.device if generator is not None else torch.device("cpu")

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=rand_device)

    # Digit relabeling as a per-row lookup table over all tokens.
    digit_perm = rand(batch, n).argsort(1) + FIRST_DIGIT_TOKEN  # (B, n)
    fixed = torch.arange(FIRST_DIGIT_TOKEN, device=rand_device).expand(batch, -1)  # (B, 2)
    lookup = torch.cat([fixed, digit_perm], 1).to(device)  # (B, n + 2)

    # Output cell (i, j) reads source cell (rows[i], cols[j]), or (cols[j], rows[i]) if transposed.
    rows = _line_permutation(rand, batch, box)[:, :, None]  # (B, n, 1)
    cols = _line_permutation(rand, batch, box)[:, None, :]  # (B, 1, n)
    transpose = (rand(batch) < 0.5)[:, None, None]  # (B, 1, 1)
    source = torch.where(transpose, cols * n + rows, rows * n + cols)  # (B, n, n) flat source cells
    source = source.reshape(batch, length).to(device)  # (B, L)

    def apply(boards: torch.Tensor) -> torch.Tensor:
        return lookup.gather(1, boards.gather(1, source))

    return apply(inputs), apply(targets)


def _line_permutation(rand: Callable[..., torch.Tensor], batch: int, box: int) -> torch.Tensor:
    """(B, n) random row (or column) orders that keep the lines of each band together."""
    bands = rand(batch, box).argsort(1)  # (B, box): which source band goes to each band
    within = rand(batch, box, box).argsort(2)  # (B, box, box): line order inside each band
    return (bands[:, :, None] * box + within).reshape(batch, box * box)


def is_valid_sudoku(preds: torch.Tensor, n: int) -> torch.Tensor:
    """(..., L) tokens -> (...) bool: a complete board whose rows, columns and boxes each hold
    every digit exactly once. Blanks, PAD or out-of-range tokens make a board invalid."""
    box = box_side(n)
    lead = preds.shape[:-1]
    digits = preds.reshape(-1, n * n).long() - FIRST_DIGIT_TOKEN  # (B, L), digits 0..n-1
    complete = ((digits >= 0) & (digits < n)).all(1)
    onehot = torch.nn.functional.one_hot(digits.clamp(0, n - 1), n)  # (B, L, n)
    grid = onehot.view(-1, n, n, n)  # (B, row, col, digit)
    boxes = grid.view(-1, box, box, box, box, n)  # (B, band, row in band, stack, col in stack, digit)
    valid = (
        complete
        & (grid.sum(2) == 1).flatten(1).all(1)  # each row holds each digit once
        & (grid.sum(1) == 1).flatten(1).all(1)  # each column
        & (boxes.sum((2, 4)) == 1).flatten(1).all(1)  # each box
    )
    return valid.view(lead)


def check_solution(inputs: torch.Tensor, preds: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """(B, L) inputs and predictions -> (B,) bool: ``preds`` is a valid complete Sudoku that keeps
    every given of ``inputs``. ``n`` defaults to sqrt(L)."""
    n = n if n is not None else math.isqrt(preds.shape[-1])
    givens = inputs >= FIRST_DIGIT_TOKEN
    keeps_givens = ((preds == inputs) | ~givens).all(-1)
    return is_valid_sudoku(preds, n) & keeps_givens


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


class _PuzzleBatches(PuzzleBatches):
    """Sudoku batches; with ``random_label`` a uniformly random solution of each puzzle."""

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = self.data.num_solutions[index]  # (B,)
        return {
            "inputs": self.data.inputs[index].long(),  # (B, L)
            "labels": self.data.solutions[index, self.solution_choice(counts)].long(),  # (B, L)
            "num_solutions": counts,  # (B,)
            "index": index,  # (B,)
        }


class SudokuDataModule(PuzzleDataModule, Task):
    """Sudoku puzzles: generated (and cached) on the fly, or read from Sudoku-Extreme CSV files.

    Batches are dicts of ``inputs`` (B, L) and ``labels`` (B, L) tokens, ``num_solutions`` (B,)
    and ``index`` (B,), the puzzle's index in its split (see `solutions`). Tokens: 0 = PAD,
    1 = blank, 2..n+1 = digits 1..n; L = n * n. Validation uses the first ``num_val_puzzles``
    puzzles of the test split. Train and test inputs are disjoint; generated training puzzles are
    moreover never equivalent to a test puzzle under the augmentation group (digit relabelling,
    transpose, band/row/stack/column permutations), since augmenting such a puzzle would show the
    test puzzle in training. That matters for small 4x4 spaces: with 3-6 givens, 2000 training and
    256 test puzzles (experiments/demo.yaml), half of the training puzzles drawn are equivalent to
    a test puzzle and are replaced, which leaves few 3-given puzzles in training. CSV files are
    only checked for identical inputs.

    Generating 1000 unique 9x9 puzzles takes 22, 44, 87, 209 and 368 CPU-seconds for
    min_guesses = 1, 3, 5, 8 and 10 (median guesses 2, 5, 7, 10, 13; about 24 givens), so about
    11, 22, 43, 105 and 185 s with num_proc=2 on 2 free cores: the filter rejects more grids as it
    rises. Puzzles with guesses >= 1 cannot be solved by naked and hidden singles alone. Splits are
    built once and cached.

    Args:
        board_size: Board side n: 4, 9 or 16 (boxes are sqrt(n) x sqrt(n)).
        num_train_puzzles: Number of training puzzles. With ``train_csv``: a seeded random subset
            of this many rows, -1 for all rows.
        num_test_puzzles: Number of test puzzles. With ``test_csv``: a seeded random subset of
            this many rows, -1 for all rows.
        num_val_puzzles: Validation puzzles, taken as the first ones of the test split.
        unique: Generate puzzles with a unique solution (minimal puzzles from random grids).
            False: multi-solution mode, where each puzzle keeps a random number of givens in
            [min_givens, max_givens] and all its solutions are stored.
        min_givens: Fewest givens per puzzle in multi-solution mode (required when unique=False).
        max_givens: Most givens per puzzle in multi-solution mode (required when unique=False).
        min_guesses: Hardness filter for unique puzzles: keep only puzzles whose solver search
            needs at least this many guesses. None: 8 for 9x9 and 0 otherwise.
        augment: Randomly relabel digits, transpose and permute bands/rows/stacks/columns of
            each training puzzle every time it is drawn.
        epoch_multiplier: One training epoch draws each puzzle this many times (each time freshly
            augmented), like the 1000x augmented copies of the paper's data.
        train_csv: Sudoku-Extreme style CSV replacing the generated training split.
        test_csv: Sudoku-Extreme style CSV replacing the generated test (and validation) split.
        cache_dir: Folder of the cached datasets (one subfolder per set of parameters).
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        num_proc: Processes that generate puzzles.
        seed: Seed of puzzle generation and of the random subsets of CSV files.
        unconditional: Unconditional generation p(x): every input is a blank board and the targets are
            ``num_train_puzzles`` distinct random solved grids (50,000 in sudoku_uncond.yaml; 9x9 grids
            take about 1.5 ms each to generate). Test inputs are ``num_test_puzzles`` blank boards; any
            valid board is a right answer, so val/exact_acc is the validity of the samples, and
            `generation_metrics` adds uniqueness and novelty (not a training grid, nor with
            ``augment`` equivalent to one). Ignores ``unique``,
            ``min_guesses`` and ``augment`` is still applied (a transformed grid is another valid grid).
    """

    def __init__(
        self,
        board_size: int = 9,
        num_train_puzzles: int = 1000,
        num_test_puzzles: int = 1000,
        num_val_puzzles: int = 200,
        unique: bool = True,
        min_givens: int | None = None,
        max_givens: int | None = None,
        min_guesses: int | None = None,
        augment: bool = True,
        epoch_multiplier: int = 1000,
        train_csv: str | None = None,
        test_csv: str | None = None,
        cache_dir: str = "data/cache",
        batch_size: int = 768,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 2,
        seed: int = 0,
        unconditional: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if min_guesses is None:
            min_guesses = DEFAULT_MIN_GUESSES.get(board_size, 0)
        _validate_args(
            board_size=board_size, num_train_puzzles=num_train_puzzles, num_test_puzzles=num_test_puzzles,
            num_val_puzzles=num_val_puzzles, unique=unique, min_givens=min_givens, max_givens=max_givens,
            min_guesses=min_guesses, epoch_multiplier=epoch_multiplier, train_csv=train_csv, test_csv=test_csv,
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
            num_proc=num_proc, seed=seed, unconditional=unconditional,
        )
        self.board_size = board_size
        self.unconditional = unconditional
        self.num_train_puzzles, self.num_test_puzzles = num_train_puzzles, num_test_puzzles
        self.num_val_puzzles = num_val_puzzles
        self.unique, self.min_givens, self.max_givens = unique, min_givens, max_givens
        self.min_guesses = min_guesses
        self.augment, self.epoch_multiplier = augment, epoch_multiplier
        self.train_csv, self.test_csv = train_csv, test_csv
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers, self.num_proc, self.seed = num_workers, num_proc, seed

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = board_size + 2  # PAD, blank, n digits
        self.seq_len = board_size * board_size
        self.out_len = self.seq_len
        self.num_puzzle_ids = 0

        self.splits: dict[str, PuzzleTensors] = {}
        self._train_grid_index: EquivalenceIndex | None = None

    # -- building ---------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Generate (or read) and cache both splits; runs once per node before `setup`."""
        self._train_source(self._test_source())

    def setup(self, stage: str | None = None) -> None:
        """Load the cached splits into memory as tensors (all stages share them)."""
        if self.splits:
            return
        test_source = self._test_source()
        test = PuzzleTensors.from_dataset(self._take(test_source, self.num_test_puzzles, "test"))
        train_source = self._train_source(test_source)
        train = PuzzleTensors.from_dataset(self._take(train_source, self.num_train_puzzles, "train"))
        if not self.unconditional:  # blank inputs are all equal by design
            train = _without_overlap(train, test)
            if len(train) == 0:
                raise GramUserError(
                    f"every training puzzle is also a test puzzle (train: {self.train_csv or 'generated'}, test: "
                    f"{self.test_csv or 'generated'}), and training leaves test puzzles out: give a train_csv "
                    f"with other puzzles"
                )
        if self.num_val_puzzles > len(test):
            raise GramUserError(f"num_val_puzzles={self.num_val_puzzles} but the test split has only {len(test)} puzzles")
        val = test.subset(torch.arange(self.num_val_puzzles))
        self.splits = {"train": train, "val": val, "test": test}

    def _test_source(self) -> datasets.Dataset:
        if self.test_csv:
            return self._csv_source(self.test_csv)
        return self._generated_split("test", self.num_test_puzzles, exclude=None)

    def _train_source(self, test_source: datasets.Dataset) -> datasets.Dataset:
        if self.train_csv:
            return self._csv_source(self.train_csv)
        return self._generated_split("train", self.num_train_puzzles, exclude=test_source)

    def _generated_split(self, split: str, count: int, exclude: datasets.Dataset | None) -> datasets.Dataset:
        n = self.board_size
        params: dict[str, Any] = {
            "kind": "generated", "version": GENERATOR_VERSION, "board_size": n, "split": split,
            "count": count, "unique": self.unique, "min_givens": self.min_givens,
            "max_givens": self.max_givens, "min_guesses": self.min_guesses if self.unique else None,
            "seed": self.seed,
            # Train leaves out every test input (test grid when unconditional), so its content depends on them.
            "exclude_inputs": inputs_fingerprint(exclude, self.unconditional) if exclude is not None else None,
        }
        if self.unconditional:
            params.update(kind="unconditional", unique=None, min_guesses=None)

        def build() -> datasets.Dataset:
            excluded = split_keys(exclude, self.unconditional) if exclude is not None else None
            # Test inputs are blank when unconditional: nothing to leak but the grids themselves.
            equivalent = None
            if exclude is not None and not self.unconditional:
                equivalent = EquivalenceIndex(_key_matrix(exclude), n)
            return generate_split(
                split, count, n=n, unique=self.unique, min_givens=self.min_givens, max_givens=self.max_givens,
                min_guesses=self.min_guesses, seed=self.seed, num_proc=self.num_proc, exclude=excluded,
                unconditional=self.unconditional, exclude_equivalent=equivalent,
            )

        name = f"sudoku{n}-uncond-{split}" if self.unconditional else f"sudoku{n}-{split}"
        return cached_dataset(self.cache_dir, name, params, build)

    def _csv_source(self, csv_path: str) -> datasets.Dataset:
        path = Path(csv_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"Sudoku CSV file not found: {path}")
        stat = path.stat()
        # Size and modification time stand in for the content: an edited file is read again.
        params = {
            "kind": "csv", "version": GENERATOR_VERSION, "board_size": self.board_size, "path": str(path),
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        }
        return cached_dataset(
            self.cache_dir, f"sudoku{self.board_size}-csv-{path.stem}", params,
            lambda: read_sudoku_csv(path, self.board_size),
        )

    def _take(self, source: datasets.Dataset, count: int, split: str) -> datasets.Dataset:
        """All of ``source``, or a seeded random subset of ``count`` rows (CSV files)."""
        if count < 0 or count >= len(source):
            if count > len(source):
                log.warning("%s: asked for %d puzzles but the source has only %d", split, count, len(source))
            return source
        rng = np.random.default_rng([self.seed, _split_code(split)])
        rows = np.sort(rng.choice(len(source), size=count, replace=False))
        return source.select(rows)

    # -- loading ----------------------------------------------------------------------------

    def batches(self, data: PuzzleTensors, *, repeat: int = 1, random_label: bool = False) -> _PuzzleBatches:
        return _PuzzleBatches(data, repeat=repeat, random_label=random_label)

    def augment_fn(self):
        return augment_batch

    # -- evaluation helpers -----------------------------------------------------------------

    def check(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, L) inputs and predicted tokens -> (B,) bool: a valid Sudoku keeping all givens."""
        return check_solution(inputs, preds, self.board_size)

    def generation_metrics(self) -> SampleSetMetrics | None:
        """Unconditional mode: validity, uniqueness and novelty of sampled boards (None otherwise).

        A valid sample is novel when no training grid equals it, or, with ``augment``, when no
        training grid is equivalent to it under the augmentation group (`EquivalenceIndex`).
        """
        if not self.unconditional:
            return None
        grids = self._split("train").solutions[:, 0]
        if self.augment:
            # Training shows every image of a grid under the augmentation group, so a sample
            # equivalent to a training grid is not new. Built once (50,000 9x9 grids: about 12 s).
            if self._train_grid_index is None:
                self._train_grid_index = EquivalenceIndex(grids, self.board_size)
            return SampleSetMetrics(self.check, known=self._train_grid_index.known)
        return SampleSetMetrics(self.check, reference=grids.long())

    def format(self, output: torch.Tensor) -> str:
        """One board as text: n lines of digits, '.' for a blank or a token that is not a digit."""
        n = self.board_size
        digits = output.long().view(n, n) - BLANK_TOKEN
        chars = "." + "123456789ABCDEFG"[:n]
        return "\n".join("".join(chars[d] if 0 <= d <= n else "." for d in row.tolist()) for row in digits)

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """One board as a (3, H, W) image: a colour per digit, white blanks, givens framed."""
        n = self.board_size
        digits = (output.long() - BLANK_TOKEN).clamp(0, len(PALETTE) - 1)  # blank / PAD -> white
        return grid_image(PALETTE[digits].view(n, n, 3), frame=(inputs >= FIRST_DIGIT_TOKEN).view(n, n))

    def solutions(self, index: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All stored solutions of the puzzles ``index`` (B,) of ``split``.

        Returns:
            (B, S_max, L) long solution tokens, PAD (0) beyond each count, and (B,) counts, on
            ``index``'s device. Only meaningful for unaugmented batches (val/test).
        """
        data = self._split(split)
        rows = index.detach().cpu().long()
        return data.solutions[rows].long().to(index.device), data.num_solutions[rows].to(index.device)


def _validate_args(
    *,
    board_size: int,
    num_train_puzzles: int,
    num_test_puzzles: int,
    num_val_puzzles: int,
    unique: bool,
    min_givens: int | None,
    max_givens: int | None,
    min_guesses: int,
    epoch_multiplier: int,
    train_csv: str | None,
    test_csv: str | None,
    batch_size: int,
    eval_batch_size: int | None,
    num_workers: int,
    num_proc: int,
    seed: int,
    unconditional: bool = False,
) -> None:
    """Raise a ValueError naming the first bad `SudokuDataModule` argument."""

    cells = board_size * board_size
    require(board_size in SUPPORTED_SIZES, f"board_size must be one of {SUPPORTED_SIZES}, got {board_size}")
    for name, count, csv_path in (("num_train_puzzles", num_train_puzzles, train_csv),
                                  ("num_test_puzzles", num_test_puzzles, test_csv)):
        if csv_path:
            require(count == -1 or count >= 1, f"{name} must be >= 1, or -1 for all CSV rows; got {count}")
        else:
            require(count >= 1, f"{name} must be >= 1 for generated puzzles (-1 only with a CSV), got {count}")
    require(num_val_puzzles >= 0, f"num_val_puzzles must be >= 0, got {num_val_puzzles}")
    require(test_csv is not None or num_test_puzzles == -1 or num_val_puzzles <= num_test_puzzles,
            f"num_val_puzzles={num_val_puzzles} exceeds num_test_puzzles={num_test_puzzles}: "
            f"validation uses the first test puzzles")
    if unconditional:
        require(train_csv is None and test_csv is None, "unconditional=True generates solved grids; it does not read CSV files")
        require(min_givens is None and max_givens is None, "unconditional=True has blank inputs: drop min_givens/max_givens")
    elif unique:
        require(min_givens is None and max_givens is None,
                "min_givens/max_givens only apply to multi-solution puzzles (unique=False); unique puzzles "
                "are minimal, their number of givens is not chosen")
    else:
        require(min_givens is not None and max_givens is not None,
                "unique=False (multi-solution puzzles) needs min_givens and max_givens")
        require(0 <= min_givens <= max_givens <= cells,
                f"need 0 <= min_givens <= max_givens <= {cells}, got min_givens={min_givens}, max_givens={max_givens}")
    require(min_guesses >= 0, f"min_guesses must be >= 0, got {min_guesses}")
    require(epoch_multiplier >= 1, f"epoch_multiplier must be >= 1, got {epoch_multiplier}")
    require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    require(eval_batch_size is None or eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {eval_batch_size}")
    require(num_workers >= 0, f"num_workers must be >= 0, got {num_workers}")
    require(num_proc >= 1, f"num_proc must be >= 1, got {num_proc}")
    require(seed >= 0, f"seed must be >= 0 (it seeds numpy SeedSequences), got {seed}")
    require(not (train_csv and test_csv and Path(train_csv).resolve() == Path(test_csv).resolve()),
            f"train_csv and test_csv are the same file ({train_csv}): every training puzzle would be a test puzzle, "
            f"and training leaves test puzzles out")
    require((train_csv is None and test_csv is None) or board_size in (4, 9),
            f"CSV files hold 4x4 or 9x9 boards (one character per cell), not {board_size}x{board_size}")


def _without_overlap(train: PuzzleTensors, test: PuzzleTensors) -> PuzzleTensors:
    """Drop training puzzles whose input is also a test input (possible with CSV files only)."""
    test_keys = set(row_keys(test.inputs.numpy()))
    keep = torch.tensor([key not in test_keys for key in row_keys(train.inputs.numpy())], dtype=torch.bool)
    dropped = int((~keep).sum())
    if dropped:
        log.warning("dropped %d training puzzles whose input is also in the test split", dropped)
        return train.subset(keep)
    return train
