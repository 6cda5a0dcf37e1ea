"""Canonical forms under a symmetry group: the smallest of a board's images."""

from __future__ import annotations

import numpy as np


def lexicographic_min(images: np.ndarray) -> np.ndarray:
    """(B, K, W) non-negative ints (K images of B boards) -> (B, W): per board, its lexicographically smallest image.

    Equal for two boards exactly when one is an image of the other, when the K images are those of a group.
    """
    best = images[:, 0]
    rows = np.arange(len(best))
    for k in range(1, images.shape[1]):
        candidate = images[:, k]
        differs = candidate != best
        first = differs.argmax(1)  # the first differing position decides (0 when equal: no change)
        smaller = differs.any(1) & (candidate[rows, first] < best[rows, first])
        best = np.where(smaller[:, None], candidate, best)
    return best
