"""N-Queens boards as tokens: the token values, the 8 symmetries of the square, the augmentation that applies
them, and the validity checks.

Token conventions (shared with the model through ``vocab_size = 3``):

    0   PAD (unused by N-Queens itself, reserved for the model)
    1   empty cell
    2   queen

A board is a flat row-major sequence of ``n * n`` tokens.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

PAD_TOKEN = 0
EMPTY_TOKEN = 1
QUEEN_TOKEN = 2
VOCAB_SIZE = 3


@lru_cache(maxsize=None)
def dihedral_permutations(n: int) -> torch.Tensor:
    """(8, L) long: for each symmetry of the square, the source cell of every output cell.

    Identity, the three rotations, and the transpose followed by each rotation: the 8 elements
    of the dihedral group, all of which map N-Queens solutions to solutions (rows, columns,
    diagonals and anti-diagonals are permuted among themselves).
    """
    grid = torch.arange(n * n).view(n, n)
    perms = [(grid.t() if flip else grid).rot90(k).reshape(-1) for flip in (False, True) for k in range(4)]
    return torch.stack(perms)


def augment_batch(
    inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a uniformly random one of the 8 board symmetries to each row, the same to an input
    and its target: (B, L) token boards, L = n * n, as a `datamodules.puzzle_data.Augment`."""
    batch, length = inputs.shape
    n = _side_of(length)
    if targets.shape != inputs.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} differ in shape")
    rand_device = generator.device if generator is not None else torch.device("cpu")
    symmetry = torch.randint(8, (batch,), generator=generator, device=rand_device).cpu()
    source = dihedral_permutations(n)[symmetry].to(inputs.device)  # (B, L)
    return inputs.gather(1, source), targets.gather(1, source)


def is_valid_nqueens(preds: torch.Tensor, n: int) -> torch.Tensor:
    """(..., L) tokens -> (...) bool: exactly one queen in every row and every column, at most one
    on every diagonal and anti-diagonal, and no token other than empty (1) and queen (2)."""
    length = n * n
    if preds.shape[-1] != length:
        raise ValueError(f"a {n}x{n} board has {length} cells, got boards of {preds.shape[-1]} tokens")
    lead = preds.shape[:-1]
    boards = preds.reshape(-1, length)
    queens = boards == QUEEN_TOKEN  # (B, L)
    known_tokens = (queens | (boards == EMPTY_TOKEN)).all(1)
    counts = _line_counts(queens, n)  # (B, 6n - 2)
    # One per row and one per column (n queens, each row and column used once), at most one per diagonal.
    valid = known_tokens & (counts[:, : 2 * n] == 1).all(1) & (counts[:, 2 * n :] <= 1).all(1)
    return valid.view(lead)


def check_nqueens(inputs: torch.Tensor, preds: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """(..., L) inputs and predictions -> (...) bool: ``preds`` is a valid N-Queens board (see
    `is_valid_nqueens`) that keeps every queen of ``inputs``. ``n`` defaults to sqrt(L)."""
    n = n if n is not None else _side_of(preds.shape[-1])
    if inputs.shape != preds.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and preds {tuple(preds.shape)} differ in shape")
    keeps_queens = ((inputs != QUEEN_TOKEN) | (preds == QUEEN_TOKEN)).all(-1)
    return is_valid_nqueens(preds, n) & keeps_queens


def queen_conflicts(inputs: torch.Tensor, preds: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """(..., L) inputs and predictions -> (...) long: how far ``preds`` is from a valid completion, 0 exactly when
    `check_nqueens` accepts it.

    The sum of: pairs of queens that attack each other (sharing a row, column, diagonal or anti-diagonal; k queens
    on one line are k(k-1)/2 pairs), queens missing to make n, queens of the input that ``preds`` drops, and cells
    that hold neither an empty cell nor a queen. Accuracy says nothing until whole boards come out right; this
    count falls from the first steps of training, so early validations and sweeps can tell runs apart by it.
    """
    n = n if n is not None else _side_of(preds.shape[-1])
    if inputs.shape != preds.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and preds {tuple(preds.shape)} differ in shape")
    if preds.shape[-1] != n * n:
        raise ValueError(f"a {n}x{n} board has {n * n} cells, got boards of {preds.shape[-1]} tokens")
    lead = preds.shape[:-1]
    boards, givens = preds.reshape(-1, n * n), inputs.reshape(-1, n * n)
    queens = boards == QUEEN_TOKEN  # (B, L)
    lines = _line_counts(queens, n)
    attacking_pairs = (lines * (lines - 1) // 2).sum(1)
    missing = (n - queens.sum(1)).clamp(min=0)
    dropped = ((givens == QUEEN_TOKEN) & (boards != QUEEN_TOKEN)).sum(1)
    unknown = ((boards != QUEEN_TOKEN) & (boards != EMPTY_TOKEN)).sum(1)
    return (attacking_pairs + missing + dropped + unknown).view(lead)


def _line_counts(queens: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n * n) bool queens -> (B, 6n - 2) long: the queens on each row (slots 0..n-1), column (n..2n-1),
    diagonal r - c (2n..4n-2) and anti-diagonal r + c (4n-1..6n-3)."""
    index = torch.arange(n, device=queens.device)
    row, col = index.repeat_interleave(n), index.repeat(n)  # (L,) row and column of each cell
    slot = torch.cat([row, col + n, row - col + 3 * n - 1, row + col + 4 * n - 1])  # (4L,)
    counts = torch.zeros(len(queens), 6 * n - 2, dtype=torch.long, device=queens.device)
    return counts.scatter_add_(1, slot.expand(len(queens), -1), queens.long().repeat(1, 4))


def _side_of(length: int) -> int:
    n = math.isqrt(length)
    if n * n != length:
        raise ValueError(f"boards of {length} tokens are not square (n * n cells)")
    return n
