"""ARC grids: validation, TRM's augmentations (dihedral x colour permutation) and the 30x30 token canvas.

An ARC grid is a 2-D integer array, 1x1 to 30x30, of colours 0..9. The model reads and writes grids as a
30x30 canvas flattened to 900 tokens over a vocabulary of 12: 0 PAD, 1 EOS, 2..11 the colours 0..9. EOS
tokens close the grid's bottom and right edges so that a prediction can be cropped back to a grid.

Everything here is pure numpy and follows TinyRecursiveModels' (TRM) conventions, so augmented datasets
and de-augmented predictions line up with the published recipe.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from gram_lightning.errors import GramUserError

CANVAS = 30
SEQ_LEN = CANVAS * CANVAS
PAD = 0
EOS = 1
COLOR_OFFSET = 2
NUM_COLORS = 10
VOCAB_SIZE = COLOR_OFFSET + NUM_COLORS
NUM_DIHEDRAL = 8

# dihedral(dihedral(g, k), DIHEDRAL_INVERSE[k]) == g: rotations by 90 and 270 undo each other, every
# other element of the group is its own inverse.
DIHEDRAL_INVERSE: tuple[int, ...] = (0, 3, 2, 1, 4, 5, 6, 7)


class ARCFormatError(GramUserError):
    """A malformed ARC grid or task; the message names where (task id, pair, which grid) and what is wrong."""


def check_grid(grid, where: str) -> np.ndarray:
    """Validate one ARC grid (nested lists or an array) and return it as a 2-D np.uint8 array.

    Raises ARCFormatError, prefixed by `where`, when the grid is ragged, not 2-D, empty, larger than 30
    on a side, not made of integers, or has values outside 0..9.
    """
    if isinstance(grid, (list, tuple)):
        # np.asarray would either raise an unhelpful message or build an object array from ragged rows.
        if not all(isinstance(row, (list, tuple)) for row in grid):
            raise ARCFormatError(f"{where}: grid must be a list of rows (a 2-D array)")
        widths = {len(row) for row in grid}
        if len(widths) > 1:
            raise ARCFormatError(f"{where}: grid is not rectangular (row lengths {sorted(widths)})")
        # np.asarray turns true / false beside integers into 1 / 0: JSON booleans are not colours.
        if any(isinstance(v, (bool, np.bool_)) for row in grid for v in row):
            raise ARCFormatError(f"{where}: grid values must be integers (colours 0..{NUM_COLORS - 1}), found true/false")
    arr = np.asarray(grid)
    if arr.ndim != 2:
        raise ARCFormatError(f"{where}: grid must be 2-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ARCFormatError(f"{where}: grid is empty (shape {arr.shape})")
    if arr.shape[0] > CANVAS or arr.shape[1] > CANVAS:
        raise ARCFormatError(f"{where}: grid is {arr.shape[0]}x{arr.shape[1]}, larger than {CANVAS}x{CANVAS}")
    # bool is a numpy integer kind "b", not "i"/"u": True/False are not colours.
    if arr.dtype.kind not in "iu":
        raise ARCFormatError(f"{where}: grid values must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= NUM_COLORS:
        raise ARCFormatError(f"{where}: grid values must be colours 0..{NUM_COLORS - 1}, found {lo if lo < 0 else hi}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square, numbered as in TRM.

    0 identity, 1 rot90, 2 rot180, 3 rot270 (counter-clockwise, np.rot90), 4 flip left-right,
    5 flip up-down, 6 transpose, 7 anti-transpose.
    """
    if k == 0:
        out = grid
    elif k in (1, 2, 3):
        out = np.rot90(grid, k=k)
    elif k == 4:
        out = np.fliplr(grid)
    elif k == 5:
        out = np.flipud(grid)
    elif k == 6:
        out = grid.T
    elif k == 7:
        out = np.fliplr(np.rot90(grid, k=1))
    else:
        raise ValueError(f"dihedral transform index must be in 0..{NUM_DIHEDRAL - 1}, got {k}")
    # rot90 / flips return strided views; a contiguous copy keeps tobytes() and hashing cheap downstream.
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class Variant:
    """One augmentation of a task: recolour every grid, then apply a dihedral transform.

    colors[c] is the new colour of colour c; colour 0 (black, usually background) is never remapped,
    as in TRM.
    """

    dihedral: int
    colors: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "colors", tuple(int(c) for c in self.colors))
        if not 0 <= self.dihedral < NUM_DIHEDRAL:
            raise ValueError(f"Variant.dihedral must be in 0..{NUM_DIHEDRAL - 1}, got {self.dihedral}")
        if sorted(self.colors) != list(range(NUM_COLORS)):
            raise ValueError(f"Variant.colors must be a permutation of 0..{NUM_COLORS - 1}, got {self.colors}")
        if self.colors[0] != 0:
            raise ValueError(f"Variant.colors must keep black fixed (colors[0] == 0), got {self.colors}")

    # Lookup tables are cached: invert runs once per model prediction at evaluation time.
    @cached_property
    def _lut(self) -> np.ndarray:
        return np.asarray(self.colors, dtype=np.uint8)

    @cached_property
    def _inverse_lut(self) -> np.ndarray:
        return np.argsort(self._lut).astype(np.uint8)

    def apply(self, grid: np.ndarray) -> np.ndarray:
        return dihedral(self._lut[np.asarray(grid)], self.dihedral)

    def invert(self, grid: np.ndarray) -> np.ndarray:
        return self._inverse_lut[dihedral(np.asarray(grid), DIHEDRAL_INVERSE[self.dihedral])]


IDENTITY = Variant(0, tuple(range(NUM_COLORS)))


def _task_key(grids: Sequence[np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for g in grids:
        h.update(struct.pack("<II", *g.shape))
        h.update(np.ascontiguousarray(g, dtype=np.uint8).tobytes())
    return h.digest()


def task_variants(grids: Sequence[np.ndarray], max_variants: int, seed: int, max_tries_factor: int = 5) -> list[Variant]:
    """Up to `max_variants` augmentations of one task that change it, IDENTITY first.

    `grids` are all of the task's grids in a fixed order. Random variants (uniform dihedral, uniform
    permutation of colours 1..9) are kept only when they turn the task into one not produced yet, so a
    task with symmetries gets fewer variants; drawing stops after max_variants * max_tries_factor tries.
    """
    if max_variants < 1:
        raise ValueError(f"max_variants must be >= 1, got {max_variants}")
    grids = [np.asarray(g) for g in grids]
    rng = np.random.default_rng(seed)
    kept = [IDENTITY]
    seen = {_task_key(grids)}
    for _ in range(max_variants * max_tries_factor):
        if len(kept) >= max_variants:
            break
        k = int(rng.integers(NUM_DIHEDRAL))
        colors = (0, *(int(c) + 1 for c in rng.permutation(NUM_COLORS - 1)))
        variant = Variant(k, colors)
        key = _task_key([variant.apply(g) for g in grids])
        if key not in seen:
            seen.add(key)
            kept.append(variant)
    return kept


def encode_canvas(grid: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A grid placed at `offset` (row, col) on the 30x30 canvas -> (900,) uint8 tokens.

    Colours become tokens c + 2; EOS marks the row just below the grid (including the corner) and the
    column just right of it, where those fall inside the canvas; everything else is PAD.
    """
    grid = check_grid(grid, "encode_canvas")
    (h, w), (r0, c0) = grid.shape, offset
    if r0 < 0 or c0 < 0:
        raise ValueError(f"encode_canvas: offset must be non-negative, got {offset}")
    if r0 + h > CANVAS or c0 + w > CANVAS:
        raise ValueError(f"encode_canvas: a {h}x{w} grid at offset {offset} does not fit the {CANVAS}x{CANVAS} canvas")
    canvas = np.full((CANVAS, CANVAS), PAD, dtype=np.uint8)
    draw_on_canvas(canvas, grid, offset)
    return canvas.reshape(SEQ_LEN)


def draw_on_canvas(canvas: np.ndarray, grid: np.ndarray, offset: tuple[int, int]) -> None:
    """Write a grid and its EOS markers into a (30, 30) PAD canvas in place, unchecked: the batch hot path,
    for grids `check_grid` accepted when the tasks were read and offsets that keep them on the canvas."""
    (h, w), (r0, c0) = grid.shape, offset
    canvas[r0:r0 + h, c0:c0 + w] = grid + COLOR_OFFSET
    if r0 + h < CANVAS:
        canvas[r0 + h, c0:c0 + w + 1] = EOS  # slicing past the edge clips a 30-wide grid's corner away
    if c0 + w < CANVAS:
        canvas[r0:r0 + h, c0 + w] = EOS


def _crop_sizes(tokens: np.ndarray) -> np.ndarray:
    """(R, 900) token rows -> (R, 2) int64 (height, width) of the grid crop_canvas would cut from each.

    TRM's rule: the largest-area rectangle anchored at the top-left corner made only of colour tokens;
    the smallest height wins ties. (0, 0) when the first token is not a colour.
    """
    tokens = np.asarray(tokens).reshape(-1, CANVAS, CANVAS)
    is_color = (tokens >= COLOR_OFFSET) & (tokens < VOCAB_SIZE)  # (R, 30, 30)
    # Length of the run of colour tokens from column 0, per row.
    run = np.where(is_color.all(-1), CANVAS, is_color.argmin(-1))  # (R, 30)
    width = np.minimum.accumulate(run, axis=1)  # (R, 30) widest rectangle with r + 1 rows
    area = width * np.arange(1, CANVAS + 1)  # (R, 30)
    best = area.argmax(-1)  # (R,) first maximum: the smallest height, as TRM's strict ">" scan
    rows = np.arange(len(tokens))
    found = area[rows, best] > 0
    return np.stack([np.where(found, best + 1, 0), np.where(found, width[rows, best], 0)], axis=-1)


def crop_canvas(tokens: np.ndarray) -> np.ndarray:
    """(900,) tokens (a model prediction: any ints) -> the grid it shows, colours 0..9 as a 2-D uint8 array.

    Inverts encode_canvas(grid, (0, 0)); a (0, 0) array when the canvas does not start with a colour.
    """
    tokens = np.asarray(tokens)
    if tokens.size != SEQ_LEN:
        raise ValueError(f"crop_canvas: expected {SEQ_LEN} tokens, got shape {tokens.shape}")
    h, w = _crop_sizes(tokens.reshape(1, SEQ_LEN))[0]
    return (tokens.reshape(CANVAS, CANVAS)[:h, :w] - COLOR_OFFSET).astype(np.uint8)


def grid_hash(grid: np.ndarray) -> int:
    """A 63-bit content hash of a grid (shape and colours), the same in every process and on every machine.

    Non-negative and below 2**63 so it fits an int64 tensor; negative values stay free as sentinels.
    """
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise ValueError(f"grid_hash: grid must be 2-D, got shape {grid.shape}")
    h = hashlib.blake2b(digest_size=8)
    # The shape goes in so that a 2x3 and a 3x2 grid with the same cells hash differently.
    h.update(struct.pack("<II", *grid.shape))
    h.update(np.ascontiguousarray(grid, dtype=np.uint8).tobytes())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)
