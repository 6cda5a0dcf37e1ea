"""What the puzzle generators share: the random stream of a split, and the error when a split cannot be filled."""

from __future__ import annotations

import zlib

import numpy as np

from gram_lightning.errors import GramError


class GenerationError(GramError, RuntimeError):
    """The generator could not produce what was asked (too few distinct puzzles or graphs, too strict a filter)."""


def split_rng(seed: int, split: str, *keys: int) -> np.random.Generator:
    """The generator of ``(seed, split, *keys)``: e.g. puzzle ``keys[0]`` of a split, a function of its own key
    alone, so a split does not depend on who builds which puzzle, and train and test draw different streams."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), *keys])
