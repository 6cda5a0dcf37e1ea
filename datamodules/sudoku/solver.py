"""Sudoku solver: naked and hidden singles propagated over candidate bitmasks, plus MRV depth-first search.

It works on digit boards (0 = blank, 1..n; see `datamodules.sudoku.boards`). The generator uses it to complete
random grids, to prove uniqueness and to measure hardness (`SolveResult.guesses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from datamodules.sudoku.boards import box_side


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


def solve(
    board: Sequence[int],
    n: int,
    limit: int | None = 2,
    *,
    forbid: tuple[int, int] | None = None,
    rng: np.random.Generator | None = None,
) -> SolveResult:
    """Solve a Sudoku by naked/hidden-single propagation plus MRV depth-first search.

    Args:
        board: ``n * n`` digits, row-major, 0 for blank.
        n: Board side (4, 9, 16).
        limit: Stop after this many solutions (None: find all). ``limit=2`` tells whether the
            solution is unique.
        forbid: (cell, digit): the digit is not allowed in that cell, which must be blank (the generator asks
            whether a blanked cell could hold another digit).
        rng: Try the candidates of a branch in this generator's random order (completing random grids) rather
            than in increasing order.
    """
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
    return len(solve(board, n, limit).solutions)


def enumerate_solutions(board: Sequence[int], n: int) -> list[list[int]]:
    """All solutions of ``board`` (only practical when there are few, e.g. 4x4 boards)."""
    return solve(board, n, None).solutions
