"""The train / test split of the N-Queens inputs: by symmetry orbit, so that no test input is a symmetric image
(and so an augmentation) of a training input, or the paper's split by unique input, which leaks."""

from __future__ import annotations

import numpy as np

from datamodules.nqueens.boards import QUEEN_TOKEN, dihedral_permutations
from datamodules.nqueens.solutions import PartialBoards
from datamodules.symmetry import lexicographic_min

TEST_FRACTION = 0.15  # the paper's 85:15 split of the inputs
# How the inputs are split: by symmetry orbit (no leak), or the paper's split by unique input.
SPLIT_METHODS = ("orbit", "paper")


def split_rows(puzzles: PartialBoards, seed: int, split: str = "orbit") -> dict[str, np.ndarray]:
    """Seeded 85:15 split of the distinct inputs of ``puzzles``: row indices per split.

    Each split's rows are in a seeded random order, so its first rows (the validation set, or a
    ``max_*_puzzles`` subsample) are a uniform random sample of it.

    Args:
        puzzles: The inputs to split.
        seed: Seed of the shuffle.
        split: "orbit": whole symmetry orbits go to one side (`orbit_split_rows`). "paper": the
            paper's split by unique input (`paper_split_rows`), which leaks test inputs into
            training through the symmetry augmentation.
    """
    if split == "orbit":
        return orbit_split_rows(puzzles.inputs, seed, puzzles.n)
    if split == "paper":
        return paper_split_rows(len(puzzles), seed, puzzles.n)
    raise ValueError(f"split must be one of {SPLIT_METHODS}, got {split!r}")


def paper_split_rows(num_inputs: int, seed: int, n: int) -> dict[str, np.ndarray]:
    """The paper's split: the first ``round(0.15 * num_inputs)`` rows of a seeded permutation are
    test, the rest train. The set of inputs is closed under the symmetries of the square, so
    almost every test input has a symmetric image among the training inputs (all of them for the
    default 8x8 and 10x10 splits)."""
    perm = np.random.default_rng([seed, n]).permutation(num_inputs)
    num_test = int(round(TEST_FRACTION * num_inputs))
    return {"train": perm[num_test:], "test": perm[:num_test]}


def orbit_ids(inputs: np.ndarray, n: int) -> np.ndarray:
    """(U, L) token boards -> (U,) int64 orbit ids, equal for two boards exactly when a symmetry of
    the square (`dihedral_permutations`) maps one onto the other.

    An orbit's key is its lexicographically smallest board over the 8 images of any member (the
    token order, empty < queen, is the order of the packed queen bits); ids number the keys in
    increasing order, so they depend only on the set of boards, not on their order.
    """
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or inputs.shape[1] != n * n:
        raise ValueError(f"inputs must be (U, {n * n}) token boards of a {n}x{n} board, got {inputs.shape}")
    images = inputs[:, dihedral_permutations(n).numpy()] == QUEEN_TOKEN  # (U, 8, L)
    packed = np.packbits(images, axis=2)  # (U, 8, ceil(L / 8)), first cell in the highest bit
    width = -(-packed.shape[2] // 8) * 8
    packed = np.pad(packed, ((0, 0), (0, 0), (0, width - packed.shape[2])))
    words = np.ascontiguousarray(packed).view(">u8")  # (U, 8, W) big-endian: word order is board order
    _, ids = np.unique(lexicographic_min(words), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def orbit_split_rows(inputs: np.ndarray, seed: int, n: int) -> dict[str, np.ndarray]:
    """Split by symmetry orbit: no test input has a symmetric image among the training inputs.

    The orbits (`orbit_ids`; 1, 2, 4 or 8 inputs each) are shuffled with the seeded generator and
    the test split is the prefix of that order whose input count is closest to
    ``TEST_FRACTION * U`` (at least one orbit, and at least one left for training when there are
    two or more). An orbit holds at most 8 inputs, so the test count is within 4 inputs of the
    target. Each split's rows are then shuffled, so every prefix of a split is a uniform random
    sample of it.
    """
    ids = orbit_ids(inputs, n)
    num_orbits = int(ids.max()) + 1 if len(ids) else 0
    rng = np.random.default_rng([seed, n])
    order = rng.permutation(num_orbits)  # order[i]: the orbit drawn i-th
    sizes = np.bincount(ids, minlength=num_orbits)[order]
    cumulative = np.cumsum(sizes)
    target = TEST_FRACTION * len(ids)
    if num_orbits >= 2:
        num_test_orbits = 1 + int(np.abs(cumulative[: num_orbits - 1] - target).argmin())
    else:
        num_test_orbits = 0  # one orbit cannot be split; the caller reports the empty split
    in_test = np.zeros(num_orbits, dtype=bool)
    in_test[order[:num_test_orbits]] = True
    test, train = np.flatnonzero(in_test[ids]), np.flatnonzero(~in_test[ids])
    return {"train": train[rng.permutation(len(train))], "test": test[rng.permutation(len(test))]}
