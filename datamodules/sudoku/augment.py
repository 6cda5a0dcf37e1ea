"""Sudoku augmentation: a random validity-preserving transform of each training row (digit relabelling,
transpose, band / row / stack / column permutations). `datamodules.sudoku.equivalence` decides equivalence under
this group."""

from __future__ import annotations

import math
from typing import Callable

import torch

from datamodules.sudoku.boards import FIRST_DIGIT_TOKEN, box_side


def augment_batch(
    inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply an independent random validity-preserving transform to each row.

    The transform of a row: relabel digits (tokens 2..n+1 permuted; PAD and blank fixed),
    transpose with probability 1/2, permute the bands and the rows within each band, and the
    stacks and the columns within each stack. The input and its target get the same transform:
    (B, L) token boards, L = n * n, as a `datamodules.puzzle_data.Augment`.
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
