"""Sudoku boards as tokens: the token values, box sides, the columns of a Sudoku dataset and the validity checks.

Token conventions (shared with the model through ``vocab_size = n + 2``):

    0       PAD (unused by Sudoku itself, reserved for the model)
    1       blank cell of an input board
    2..n+1  digits 1..n

A board is a flat row-major sequence of ``n * n`` tokens; ``n`` is 4, 9 or 16 and the boxes are
``sqrt(n) x sqrt(n)``. The pure-Python solver and generator work on *digits* instead (0 = blank,
1..n = digits); ``digits + 1`` turns a digit board into tokens (blank 0 -> token 1).
"""

from __future__ import annotations

import math
from typing import Iterator

import datasets
import numpy as np
import torch

from datamodules.tables import puzzle_features

PAD_TOKEN = 0
BLANK_TOKEN = 1
FIRST_DIGIT_TOKEN = 2
SUPPORTED_SIZES = (4, 9, 16)


def box_side(n: int) -> int:
    """Side of the boxes of an n x n board (n a perfect square)."""
    box = math.isqrt(n)
    if box * box != n or n < 1:
        raise ValueError(f"board size must be a perfect square (4, 9, 16, ...), got {n}")
    return box


def row_keys(boards: np.ndarray) -> Iterator[bytes]:
    """Hashable key of each (L,) uint8 board row."""
    return (row.tobytes() for row in boards.astype(np.uint8, copy=False))


def sudoku_features(n: int) -> datasets.Features:
    """Columns of every Sudoku dataset: ``inputs`` (the puzzle, blanks as token 1), ``solutions`` (all of them;
    unique puzzles: one), ``num_solutions`` and ``guesses`` (the solver's effort, see `solver.SolveResult`; -1 =
    unknown)."""
    return puzzle_features(n * n, n * n, "guesses")


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
