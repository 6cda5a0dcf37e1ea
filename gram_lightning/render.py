"""Small boards as images (for TensorBoard), drawn with plain tensor ops: no plotting library needed."""

from __future__ import annotations

import torch

# Distinct, colour-blind-friendly-ish colours (Okabe-Ito, then Tableau); index 0 is white.
PALETTE = torch.tensor([
    [255, 255, 255], [0, 114, 178], [230, 159, 0], [0, 158, 115], [204, 121, 167], [86, 180, 233],
    [213, 94, 0], [240, 228, 66], [120, 120, 120], [148, 103, 189], [140, 86, 75], [23, 190, 207],
    [188, 189, 34], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
], dtype=torch.float32) / 255
BLACK = torch.zeros(3)
RED = torch.tensor([0.85, 0.1, 0.1])
GREEN = torch.tensor([0.1, 0.7, 0.2])
# A token that belongs to no answer of the task (PAD, out of vocabulary): an unfinished sample shows.
PURPLE = torch.tensor([0.55, 0.2, 0.8])


def grid_image(colors: torch.Tensor, cell: int = 8, frame: torch.Tensor | None = None, gap: int = 1) -> torch.Tensor:
    """colors (R, C, 3) in [0, 1] -> (3, H, W): one `cell`-pixel square per entry, grey grid lines between.

    frame (R, C) bool marks cells drawn with a dark inner frame (e.g. the givens of a puzzle).
    """
    R, C, _ = colors.shape
    img = colors.float().repeat_interleave(cell, 0).repeat_interleave(cell, 1)  # (R*cell, C*cell, 3)
    if frame is not None and frame.any():
        ring = torch.zeros(cell, cell, dtype=torch.bool)
        ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
        mask = frame.repeat_interleave(cell, 0).repeat_interleave(cell, 1) & ring.repeat(R, C)
        img[mask] = 0.15
    lines = torch.zeros(R * cell, C * cell, dtype=torch.bool)
    lines[::cell] = True
    lines[:, ::cell] = True
    if gap:
        img[lines] = 0.6
    return img.permute(2, 0, 1).contiguous()


def with_border(img: torch.Tensor, color: torch.Tensor, width: int = 2) -> torch.Tensor:
    """(3, H, W) -> (3, H + 2w, W + 2w) framed in `color` (green: valid, red: not)."""
    out = color.view(3, 1, 1).expand(3, img.shape[1] + 2 * width, img.shape[2] + 2 * width).clone()
    out[:, width:-width, width:-width] = img
    return out


def tile(images: list[list[torch.Tensor]], pad: int = 4) -> torch.Tensor:
    """Rows of (3, h, w) images -> one (3, H, W) image on white, each tile top-left aligned."""
    h = max(im.shape[1] for row in images for im in row)
    w = max(im.shape[2] for row in images for im in row)
    cols = max(len(row) for row in images)
    out = torch.ones(3, len(images) * (h + pad) + pad, cols * (w + pad) + pad)
    for i, row in enumerate(images):
        for j, im in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y : y + im.shape[1], x : x + im.shape[2]] = im
    return out
