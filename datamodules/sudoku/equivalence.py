"""Equivalence of Sudoku boards under the training augmentation group.

`datamodules.sudoku.augment.augment_batch` relabels digits, transposes, and permutes bands, rows within
bands, stacks and columns within stacks. This module gives canonical forms, invariants and exact
equivalence checks of token boards under that group: the generator uses them to keep every
board equivalent to a test puzzle out of the generated training split, and `EquivalenceIndex`
counts sampled boards that are novel (not equivalent to any training board).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch

from datamodules.sudoku.boards import BLANK_TOKEN, FIRST_DIGIT_TOKEN, box_side, row_keys
from datamodules.symmetry import lexicographic_min


# Training augments with digit relabelling, transposition and band/row/stack/column permutations
# (`datamodules.sudoku.augment.augment_batch`), so a training board equivalent to a test board under that
# group shows the test board during training. The group has 2 * (b! * b!^b)^2 * n! elements
# (b = box side): 3,072 for 4x4, about 1.2e12 for 9x9. 4x4 boards get an exact canonical form; 9x9
# boards an invariant that is equal for equivalent boards (so it never misses an equivalent pair)
# plus an exact check of the few pairs whose invariants agree; 16x16 boards only the invariant, so
# invariant-equal boards count as equivalent there (the filter stays on the safe side).

# Boards whose geometric group (transpose and line permutations) has at most this many elements
# are canonicalised by trying them all.
_MAX_EXACT_GEOMETRIC = 4096
# Boards per chunk of `equivalence_invariants` (bounds the memory of the (B, P, n) arrays).
_INVARIANT_CHUNK = 1024
# Odd 64-bit multipliers that fold a feature vector into one int64 (a hash of an invariant is
# still an invariant; collisions only add pairs to check).
_FEATURE_MIXERS = np.random.default_rng(20240613).integers(1, 2**62, size=64, dtype=np.int64) | 1


@lru_cache(maxsize=None)
def _line_maps(n: int) -> np.ndarray:
    """(b! * b!^b, n) int64: every order of the n rows that keeps the rows of each band together
    (b = box side): 8 for 4x4, 1,296 for 9x9."""
    box = box_side(n)
    if box > 3:
        raise ValueError(f"the line permutations of a {n}x{n} board are too many to enumerate")
    orders = list(itertools.permutations(range(box)))
    maps = [
        [band * box + line for band, inner in zip(bands, inners) for line in inner]
        for bands in orders
        for inners in itertools.product(orders, repeat=box)
    ]
    return np.array(maps, dtype=np.int64)


@lru_cache(maxsize=None)
def _geometric_maps(n: int) -> np.ndarray:
    """(T, L) int64: the source cell of every output cell for each geometric transform of the
    augmentation (transpose or not, then any row and column orders of `_line_maps`)."""
    lines = _line_maps(n)
    if 2 * len(lines) ** 2 > _MAX_EXACT_GEOMETRIC:
        raise ValueError(f"the geometric group of a {n}x{n} board is too large to enumerate")
    rows, cols = lines[:, None, :, None], lines[None, :, None, :]  # (R, 1, n, 1), (1, C, 1, n)
    straight = (rows * n + cols).reshape(-1, n * n)
    transposed = (cols * n + rows).reshape(-1, n * n)
    return np.concatenate([straight, transposed])


def relabel_by_first_occurrence(boards: np.ndarray) -> np.ndarray:
    """(..., L) tokens with the digits renamed in order of first occurrence (the first digit in
    row-major order becomes token 2, the next new one 3, ...); PAD and blank stay. Two boards are
    equal up to a digit relabelling exactly when their results are equal."""
    boards = np.asarray(boards)
    flat = boards.reshape(-1, boards.shape[-1]).astype(np.int64)
    length = flat.shape[1]
    positions = np.arange(length)
    same = flat[:, :, None] == flat[:, None, :]  # (B, L, L)
    first = np.where(same, positions, length).min(2)  # first cell holding each cell's token
    is_digit = flat >= FIRST_DIGIT_TOKEN
    rank = np.cumsum(is_digit & (first == positions), 1) - 1  # new digits seen before each first occurrence
    relabelled = FIRST_DIGIT_TOKEN + np.take_along_axis(rank, first, 1)
    return np.where(is_digit, relabelled, flat).astype(boards.dtype).reshape(boards.shape)


def canonical_boards(boards: np.ndarray, n: int) -> np.ndarray:
    """(B, L) tokens -> (B, L) the smallest board equivalent to each under the augmentation group
    (any of the geometric transforms, then digits relabelled by first occurrence). Exact; only for
    boards whose geometric group is small (4x4: 128 transforms)."""
    boards = np.asarray(boards)
    maps = _geometric_maps(n)
    images = relabel_by_first_occurrence(boards[:, maps])  # (B, T, L)
    return lexicographic_min(images)


def invariants_are_exact(n: int) -> bool:
    """Whether `equivalence_invariants` of n x n boards are canonical forms (equal only for
    equivalent boards): the geometric group is small enough to try whole."""
    box = box_side(n)
    return 2 * math.factorial(box) ** (2 * (box + 1)) <= _MAX_EXACT_GEOMETRIC


def _line_pair_features(digits: np.ndarray, box: int) -> np.ndarray:
    """(B, n, n) digits (0 = blank) -> (B, P) int64, one hash per pair of rows (P = n(n-1)/2).

    A pair's features do not change under any column permutation or digit relabelling, and
    follow the rows under row permutations: whether the rows share a band, their given counts,
    the columns given in both, the digits they share, and the cycle lengths of the partial map
    "digit of the first row -> digit of the second row in the same column" (a relabelling conjugates
    it, which keeps cycle lengths; swapping the rows inverts it, which does too).
    """
    count, n = digits.shape[0], digits.shape[1]
    first, second = np.triu_indices(n, 1)
    a, b = digits[:, first], digits[:, second]  # (B, P, n)
    filled_a, filled_b = a > 0, b > 0
    counts = np.sort(np.stack([filled_a.sum(2), filled_b.sum(2)], 2), 2)  # (B, P, 2)
    both = (filled_a & filled_b).sum(2)
    present_a = np.zeros((count, len(first), n + 1), dtype=bool)
    present_b = np.zeros_like(present_a)
    np.put_along_axis(present_a, a, True, 2)
    np.put_along_axis(present_b, b, True, 2)
    shared = (present_a & present_b)[:, :, 1:].sum(2)
    # The map as a table over digits 0..n; 0 (blank or unmapped) is a sink.
    table = np.zeros((count, len(first), n + 1), dtype=np.int64)
    np.put_along_axis(table, np.where(filled_a & filled_b, a, 0), np.where(filled_a & filled_b, b, 0), 2)
    table[:, :, 0] = 0
    start = np.broadcast_to(np.arange(1, n + 1), table.shape[:2] + (n,))
    current, cycle = start.copy(), np.zeros(start.shape, dtype=np.int64)
    for step in range(1, n + 1):
        current = np.take_along_axis(table, current, 2)
        cycle = np.where((cycle == 0) & (current == start), step, cycle)
    same_band = (first // box == second // box)[None, :, None].repeat(count, 0)
    features = np.concatenate([same_band, counts, both[..., None], shared[..., None], np.sort(cycle, 2)], 2)
    return (features.astype(np.int64) * _FEATURE_MIXERS[: features.shape[2]]).sum(2)


def equivalence_invariants(boards: np.ndarray, n: int) -> list[bytes]:
    """(B, L) tokens -> one key per board, equal for two boards equivalent under the augmentation
    group (digit relabelling, transpose, band/row/stack/column permutations).

    Exact for boards small enough for `canonical_boards` (equal keys iff equivalent). Otherwise the
    key is, for the rows and for the columns, the sorted per-pair hashes of `_line_pair_features`,
    as the smaller of (rows, columns) and (columns, rows) so that transposing does not change it;
    non-equivalent boards can share a key (`boards_equivalent` tells them apart).
    """
    boards = np.asarray(boards)
    if boards.ndim != 2 or boards.shape[1] != n * n:
        raise ValueError(f"boards must be (B, {n * n}) tokens of a {n}x{n} board, got {boards.shape}")
    keys: list[bytes] = []
    for start in range(0, len(boards), _INVARIANT_CHUNK):  # bounds the memory of the (B, P, n) arrays
        keys.extend(_chunk_invariants(boards[start : start + _INVARIANT_CHUNK], n))
    return keys


def _chunk_invariants(boards: np.ndarray, n: int) -> list[bytes]:
    box = box_side(n)
    if invariants_are_exact(n):
        return list(row_keys(canonical_boards(boards, n)))
    digits = (np.clip(boards.astype(np.int64), BLANK_TOKEN, None) - BLANK_TOKEN).reshape(-1, n, n)
    rows = np.sort(_line_pair_features(digits, box), 1)
    cols = np.sort(_line_pair_features(digits.transpose(0, 2, 1), box), 1)
    keys = []
    for r, c in zip(rows, cols):
        a, b = r.tobytes(), c.tobytes()
        keys.append(min(a + b, b + a))
    return keys


def boards_equivalent(a: np.ndarray, b: np.ndarray, n: int) -> bool:
    """Whether some element of the augmentation group maps token board ``a`` onto ``b``.

    Exact for 4x4 (canonical forms) and 9x9 (solved grids: `_grids_equivalent`; boards with
    blanks: `_puzzles_equivalent`). 16x16 boards have no exact check: equal invariants count as
    equivalent, which can only over-report.
    """
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != (n * n,) or b.shape != (n * n,):
        raise ValueError(f"boards must have {n * n} tokens for a {n}x{n} board, got {a.shape} and {b.shape}")
    box = box_side(n)
    if invariants_are_exact(n):
        canonical = canonical_boards(np.stack([a, b]), n)
        return bool((canonical[0] == canonical[1]).all())
    if box > 3:
        keys = equivalence_invariants(np.stack([a, b]), n)
        return keys[0] == keys[1]
    if (a >= FIRST_DIGIT_TOKEN).sum() != (b >= FIRST_DIGIT_TOKEN).sum():
        return False
    if (a >= FIRST_DIGIT_TOKEN).all() and (b >= FIRST_DIGIT_TOKEN).all():
        return _grids_equivalent(a.reshape(n, n), b.reshape(n, n))
    return _puzzles_equivalent(a.reshape(n, n), b.reshape(n, n))


def _grids_equivalent(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact check for two solved (n, n) token grids.

    For each orientation and row order of ``a`` and each choice of the column sent to column 0,
    the digit relabelling is fixed (a column holds every digit once); the relabelled columns must
    then be ``b``'s columns (each found at most once, columns of a grid being distinct) in an order
    that keeps the stacks together.
    """
    n = a.shape[0]
    box = box_side(n)
    lines = _line_maps(n)
    for oriented in (a, a.T):
        rows = oriented[lines]  # (R, n, n)
        for first in range(n):
            relabel = np.zeros((len(lines), int(rows.max()) + 1), dtype=np.int64)
            np.put_along_axis(relabel, rows[:, :, first], np.broadcast_to(b[:, 0], (len(lines), n)), 1)
            mapped = np.take_along_axis(relabel, rows.reshape(len(lines), -1), 1).reshape(rows.shape)
            match = (mapped[:, :, :, None] == b[None, :, None, :]).all(1)  # (R, source col, target col)
            complete = match.any(1).all(1)
            source = match.argmax(1)  # (R, n): the source column of every target column
            stacks = (source // box).reshape(-1, box, box)  # (R, target stack, column in it)
            whole = (stacks == stacks[:, :, :1]).all(2)
            distinct = np.sort(stacks[:, :, 0], 1)
            if (complete & whole.all(1) & (distinct == np.arange(box)).all(1)).any():
                return True
    return False


def _puzzles_equivalent(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact check for two (n, n) token boards with blanks: for each orientation and row order of
    ``a``, the column orders that carry its given cells onto ``b``'s (compared column by column as
    bit codes) are tried with a digit relabelling by first occurrence."""
    n = a.shape[0]
    lines = _line_maps(n)
    weights = 1 << np.arange(n)
    target_codes = ((b >= FIRST_DIGIT_TOKEN) * weights[:, None]).sum(0)  # (n,) per column of b
    target = relabel_by_first_occurrence(b.reshape(-1))
    for oriented in (a, a.T):
        rows = oriented[lines]  # (R, n, n)
        codes = ((rows >= FIRST_DIGIT_TOKEN) * weights[None, :, None]).sum(1)  # (R, n) per column
        fits = (codes[:, lines] == target_codes).all(2)  # (R, C): given cells land on b's
        for r, c in zip(*np.nonzero(fits)):
            image = rows[r][:, lines[c]].reshape(-1)
            if (relabel_by_first_occurrence(image) == target).all():
                return True
    return False


class EquivalenceIndex:
    """Token boards indexed by `equivalence_invariants`, to ask which boards are equivalent to one
    of them under the augmentation group.

    Args:
        boards: (R, L) token boards.
        n: Board side.
    """

    def __init__(self, boards: np.ndarray | torch.Tensor, n: int) -> None:
        self.n = n
        self.boards = np.asarray(torch.as_tensor(boards).cpu(), dtype=np.uint8)
        # An indexed board itself needs no search (a model that memorizes repeats them).
        self.identical = set(row_keys(self.boards))
        self.by_key: dict[bytes, list[int]] = {}
        for row, key in enumerate(equivalence_invariants(self.boards, n)):
            self.by_key.setdefault(key, []).append(row)

    def __len__(self) -> int:
        return len(self.boards)

    def matches(self, boards: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, L) token boards -> (B,) bool: equivalent to some indexed board."""
        boards = np.asarray(torch.as_tensor(boards).cpu(), dtype=np.uint8)
        if not len(boards):
            return np.zeros(0, dtype=bool)
        keys = equivalence_invariants(boards, self.n)
        if invariants_are_exact(self.n):
            return np.array([key in self.by_key for key in keys], dtype=bool)
        return np.array([
            board.tobytes() in self.identical
            or any(boards_equivalent(board, self.boards[row], self.n) for row in self.by_key.get(key, ()))
            for board, key in zip(boards, keys)
        ], dtype=bool)

    def known(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens -> (B,) bool tensor: `matches`, for `SampleSetMetrics`' ``known``."""
        return torch.from_numpy(self.matches(samples))
