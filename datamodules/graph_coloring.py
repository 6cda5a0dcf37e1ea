"""Graph coloring data: Erdos-Renyi graphs, coloring enumeration, checks and the DataModule.

Token conventions (shared with the model through ``vocab_size = 3 + num_colors``):

    0                PAD (unused by the task itself, reserved for the model)
    1                no edge (input)
    2                edge (input)
    3..2+num_colors  colors 1..num_colors (output)

The input is the strict upper triangle of the adjacency matrix in row-major order (pairs (i, j)
with i < j: (0, 1), (0, 2), ..., (0, n-1), (1, 2), ...), ``n(n-1)/2`` tokens; the output is the
color of each node, ``n`` tokens. The enumeration and the generator work on *colors* 0..k-1 instead;
``colors + 3`` turns them into tokens.

Colorings are stored up to color permutation, in canonical form: colors relabelled in order of
first occurrence over nodes 0..n-1, so node 0 has color 0, the first node not colored 0 has
color 1, and so on (`canonical_output`).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from datamodules.board_columns import board_matrix, ragged_boards, split_table
from datamodules.cache import cached_dataset
from datamodules.puzzle_data import PuzzleBatches, PuzzleDataModule, require
from gram_lightning.errors import GramError
from gram_lightning.render import PALETTE, RED, grid_image
from gram_lightning.task import Task

log = logging.getLogger(__name__)

PAD_TOKEN = 0
NO_EDGE_TOKEN = 1
EDGE_TOKEN = 2
FIRST_COLOR_TOKEN = 3
# Paper sizes (train, test) per number of nodes (GRAM_SPEC.md section 3).
DEFAULT_SIZES = {8: (7002, 255), 10: (13465, 192)}
# Bump when the generation algorithm changes, so that old cache folders are not reused.
GENERATOR_VERSION = 1
# Graphs drawn per round of the generator. Fixed, so that graph i of a split is the same whatever
# the number of graphs asked for: a smaller split is a prefix of a larger one.
_ROUND_SIZE = 4096
# Graphs whose colorings are enumerated at once (bounds the memory of sparse graphs, which have
# thousands of colorings each).
_ENUMERATION_CHUNK = 512


class GenerationError(GramError, RuntimeError):
    """The generator could not produce what was asked (too few distinct colorable graphs)."""


# ---------------------------------------------------------------------------------------------
# Graphs: pair indexing, enumeration of colorings, isomorphism keys
# ---------------------------------------------------------------------------------------------


def num_pairs(n: int) -> int:
    """Input length of an n-node graph: the n(n-1)/2 node pairs i < j."""
    return n * (n - 1) // 2


@lru_cache(maxsize=None)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pairs i < j in input order (row-major upper triangle)."""
    rows, cols = np.triu_indices(n, 1)
    return rows, cols


def _torch_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(n, n, 1, device=device)  # row-major, the same order as `_pairs`
    return rows, cols


def enumerate_colorings(edges: np.ndarray, n: int, num_colors: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Every proper coloring of each graph, up to color permutation.

    A breadth-first backtracker, vectorized over graphs and partial colorings: node i extends
    each proper coloring of nodes 0..i-1 with every color no earlier neighbour has, restricted
    to the colors used so far plus one new color. Restricting new colors that way makes it
    produce exactly the canonical colorings (module docstring), one per class of colorings
    equal up to color permutation.

    Args:
        edges: (G, n(n-1)/2) bool upper triangles (input order).
        n: Number of nodes.
        num_colors: Colors available.

    Returns:
        (T, n) int8 colors 0..num_colors-1, grouped by graph (graph 0 first) and sorted
        lexicographically within each graph, and (G,) int64 counts (0: not colorable).
    """
    edges = np.asarray(edges, dtype=bool)
    if edges.ndim != 2 or edges.shape[1] != num_pairs(n):
        raise ValueError(f"edges must be (G, {num_pairs(n)}) for {n} nodes, got {edges.shape}")
    num_graphs = edges.shape[0]
    adjacency = np.zeros((num_graphs, n, n), dtype=bool)
    rows, cols = _pairs(n)
    adjacency[:, rows, cols] = edges  # only [j, i] with j < i is read: the earlier neighbours of i

    graph = np.arange(num_graphs)  # (T,) owner of each partial coloring
    colors = np.zeros((num_graphs, n), dtype=np.int8)  # node 0 always takes color 0
    top = np.zeros(num_graphs, dtype=np.int8)  # highest color used so far
    palette = np.arange(num_colors, dtype=np.int8)
    for i in range(1, n):
        earlier = adjacency[graph, :i, i]  # (T, i)
        taken = (earlier[:, :, None] & (colors[:, :i, None] == palette)).any(1)  # (T, k)
        allowed = ~taken & (palette <= top[:, None] + 1)
        # Row-major nonzero: parents in order, then colors ascending, which keeps the children
        # grouped by graph and lexicographically sorted.
        parent, color = np.nonzero(allowed)
        graph, colors, top = graph[parent], colors[parent], np.maximum(top[parent], color.astype(np.int8))
        colors[:, i] = color
    return colors, np.bincount(graph, minlength=num_graphs).astype(np.int64)


def _neighbour_masks(edges: np.ndarray, n: int) -> list[int]:
    """An upper triangle (input order) as one neighbour bitmask per node."""
    masks = [0] * n
    rows, cols = _pairs(n)
    for e in np.flatnonzero(edges):
        i, j = int(rows[e]), int(cols[e])
        masks[i] |= 1 << j
        masks[j] |= 1 << i
    return masks


def _refine(adj: list[int], cells: list[list[int]]) -> list[list[int]]:
    """Split the cells of an ordered partition until it is equitable (every node of a cell has
    the same number of neighbours in each cell).

    Sub-cells are ordered by their neighbour counts, which do not depend on the node labels: a
    relabelled graph refines to the relabelled partition, so everything built on it is invariant.
    """
    while True:
        masks = [sum(1 << v for v in cell) for cell in cells]
        refined: list[list[int]] = []
        for cell in cells:
            if len(cell) == 1:
                refined.append(cell)
                continue
            groups: dict[tuple[int, ...], list[int]] = {}
            for v in cell:
                groups.setdefault(tuple((adj[v] & m).bit_count() for m in masks), []).append(v)
            refined.extend(groups[key] for key in sorted(groups))
        if len(refined) == len(cells):
            return cells
        cells = refined


def isomorphism_key(edges: np.ndarray, n: int) -> int:
    """An integer equal for two graphs exactly when they are isomorphic.

    Individualization-refinement without automorphism pruning: refine the partition of the nodes,
    then branch on each node of the first non-singleton cell; every discrete leaf orders the
    nodes, and the key is the smallest upper-triangle bit string over the leaves. Two nodes with
    the same neighbours apart from each other (twins) can be swapped by an automorphism, so only
    one of them is branched on; this keeps empty and complete(-multipartite) parts cheap. About
    0.05 ms per graph of 8-10 nodes.

    Args:
        edges: (n(n-1)/2,) bool upper triangle (input order).
        n: Number of nodes.
    """
    adj = _neighbour_masks(edges, n)
    best = -1

    def leaf_code(order: list[int]) -> int:
        code = 0
        for a in range(n):
            row = adj[order[a]]
            for b in range(a + 1, n):
                code = (code << 1) | ((row >> order[b]) & 1)
        return code

    def search(cells: list[list[int]]) -> None:
        nonlocal best
        cells = _refine(adj, cells)
        target = next((k for k, cell in enumerate(cells) if len(cell) > 1), None)
        if target is None:
            code = leaf_code([cell[0] for cell in cells])
            best = code if best < 0 else min(best, code)
            return
        cell = cells[target]
        branches: list[int] = []
        for v in cell:
            if not any(adj[v] & ~(1 << u) == adj[u] & ~(1 << v) for u in branches):
                branches.append(v)
        for v in branches:
            search(cells[:target] + [[v], [u for u in cell if u != v]] + cells[target + 1 :])

    search([list(range(n))])
    return best


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


def graph_features(n: int) -> datasets.Features:
    """Columns of every graph coloring dataset (tokens, see the module docstring)."""
    # `Sequence` rather than `List`: the same Arrow types (fixed-size lists) on datasets 3.x and 4+.
    return datasets.Features(
        {
            "inputs": datasets.Sequence(datasets.Value("int8"), length=num_pairs(n)),  # upper triangle
            "solutions": datasets.Sequence(datasets.Sequence(datasets.Value("int8"), length=n)),  # canonical
            "num_solutions": datasets.Value("int32"),
            "num_edges": datasets.Value("int32"),
        }
    )


def _dataset_from_arrays(n: int, edges: np.ndarray, colorings: np.ndarray, counts: np.ndarray) -> datasets.Dataset:
    """A dataset from (P, n(n-1)/2) bool edges, (T, n) colors grouped by graph and (P,) counts."""
    features = graph_features(n)

    def fixed(values: np.ndarray, length: int) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.int8).reshape(-1)), length)

    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    table = pa.Table.from_arrays(
        [
            fixed(edges.astype(np.int8) + NO_EDGE_TOKEN, num_pairs(n)),
            pa.ListArray.from_arrays(offsets, fixed(colorings.astype(np.int8) + FIRST_COLOR_TOKEN, n)),
            pa.array(counts.astype(np.int32)),
            pa.array(edges.sum(1).astype(np.int32)),
        ],
        schema=features.arrow_schema,
    )
    return datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features))


def _split_code(split: str) -> int:
    """Stable integer for a split name, part of each round's seed."""
    return zlib.crc32(split.encode())


def sample_graphs(n: int, edge_prob: float, seed: int, split: str, round_index: int) -> np.ndarray:
    """Round ``round_index`` of a split's stream of G(n, p) graphs: (_ROUND_SIZE, n(n-1)/2) bool."""
    rng = np.random.default_rng([seed, _split_code(split), round_index])
    return rng.random((_ROUND_SIZE, num_pairs(n))) < edge_prob


def generate_split(
    split: str,
    count: int,
    *,
    n: int,
    edge_prob: float = 0.4,
    num_colors: int = 3,
    seed: int = 0,
    exclude: set[int] | None = None,
    unique_up_to_isomorphism: bool = False,
) -> datasets.Dataset:
    """The first ``count`` acceptable graphs of a split's G(n, p) stream, with all their colorings.

    A graph is acceptable when it has at least one proper coloring with ``num_colors`` colors, its
    adjacency differs from every earlier accepted graph, and it is not isomorphic to a graph of
    ``exclude``. The stream (`sample_graphs`) depends only on (seed, split), so the split is a
    prefix of any larger one.

    Args:
        split: Split name, part of the seed ("train", "test").
        count: Number of graphs.
        n: Number of nodes.
        edge_prob: Probability of each edge.
        num_colors: Colors available.
        seed: Generation seed.
        exclude: `isomorphism_key`s of graphs to leave out (e.g. the test split's).
        unique_up_to_isomorphism: Also reject graphs isomorphic to an earlier accepted one.

    Raises:
        GenerationError: Too few acceptable graphs in the first 50 * count + 20000 draws (too
            few colorable graphs at this size and edge probability, or too few isomorphism classes).
    """
    exclude = exclude or set()
    seen_edges: set[bytes] = set()
    seen_classes: set[int] = set()
    kept_edges: list[np.ndarray] = []
    kept_colorings: list[np.ndarray] = []
    kept_counts: list[int] = []
    max_draws = 50 * count + 20_000
    drawn = uncolorable = excluded = duplicates = 0
    round_index = 0
    while len(kept_counts) < count:
        if drawn >= max_draws:
            raise GenerationError(
                f"only {len(kept_counts)} of {count} {split} graphs (n={n}, edge_prob={edge_prob}, "
                f"{num_colors} colors) in {drawn} draws ({uncolorable} not colorable, {duplicates} duplicates, "
                f"{excluded} isomorphic to an excluded graph): ask for fewer graphs, change edge_prob, or allow "
                f"isomorphic graphs (unique_up_to_isomorphism=False)"
            )
        edges = sample_graphs(n, edge_prob, seed, split, round_index)
        round_index += 1
        for start in range(0, len(edges), _ENUMERATION_CHUNK):
            if len(kept_counts) == count:
                break
            chunk = edges[start : start + _ENUMERATION_CHUNK]
            colorings, counts = enumerate_colorings(chunk, n, num_colors)
            ends = np.cumsum(counts)
            for g, row in enumerate(chunk):
                if len(kept_counts) == count:
                    break
                drawn += 1
                if not counts[g]:
                    uncolorable += 1
                    continue
                key = np.packbits(row).tobytes()
                if key in seen_edges:
                    duplicates += 1
                    continue
                if exclude or unique_up_to_isomorphism:
                    iso = isomorphism_key(row, n)
                    if iso in exclude:
                        excluded += 1
                        continue
                    if unique_up_to_isomorphism:
                        if iso in seen_classes:
                            duplicates += 1
                            continue
                        seen_classes.add(iso)
                seen_edges.add(key)
                kept_edges.append(row)
                kept_colorings.append(colorings[ends[g] - counts[g] : ends[g]])
                kept_counts.append(int(counts[g]))
    log.info(
        "%s: %d graphs from %d draws (%d not %d-colorable, %d duplicates, %d isomorphic to excluded graphs)",
        split, count, drawn, uncolorable, num_colors, duplicates, excluded,
    )
    return _dataset_from_arrays(
        n, np.stack(kept_edges), np.concatenate(kept_colorings), np.asarray(kept_counts, dtype=np.int64)
    )


def _edge_matrix(ds: datasets.Dataset) -> np.ndarray:
    """The input column as (P, n(n-1)/2) bool edges, without going through Python lists."""
    return board_matrix(split_table(ds).column("inputs")) == EDGE_TOKEN


def isomorphism_keys(ds: datasets.Dataset, n: int) -> set[int]:
    """The `isomorphism_key`s of a dataset's graphs, e.g. for `generate_split`'s ``exclude``."""
    return {isomorphism_key(row, n) for row in _edge_matrix(ds)}


# ---------------------------------------------------------------------------------------------
# Splits in memory
# ---------------------------------------------------------------------------------------------


@dataclass
class GraphTensors:
    """One split in memory.

    Attributes:
        inputs: (P, n(n-1)/2) uint8 input tokens.
        solutions: (T, n) uint8 canonical coloring tokens of all graphs, graph by graph.
        offsets: (P + 1,) int64: the colorings of graph p are rows offsets[p]:offsets[p + 1].
        num_solutions: (P,) int64 colorings per graph, up to color permutation.
    """

    inputs: torch.Tensor
    solutions: torch.Tensor
    offsets: torch.Tensor
    num_solutions: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset) -> "GraphTensors":
        table = split_table(ds)
        inputs = board_matrix(table.column("inputs"))  # (P, n(n-1)/2)
        flat, counts = ragged_boards(table.column("solutions"))  # (T, n) colorings graph by graph, (P,)
        return cls(
            inputs=torch.from_numpy(inputs.copy()),
            solutions=torch.from_numpy(flat.copy()),
            offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)),
            num_solutions=torch.from_numpy(counts),
        )

    def head(self, count: int) -> "GraphTensors":
        """The first ``count`` graphs."""
        end = int(self.offsets[count])
        return GraphTensors(
            self.inputs[:count], self.solutions[:end], self.offsets[: count + 1], self.num_solutions[:count]
        )

    def padded_solutions(self, rows: torch.Tensor) -> torch.Tensor:
        """(B,) graph rows -> (B, S_max, n) uint8 colorings, PAD (0) beyond each graph's count;
        S_max is the largest count in the batch (at least 1)."""
        counts = self.num_solutions[rows]
        width = max(int(counts.max()) if len(rows) else 1, 1)
        slot = torch.arange(width)
        valid = slot < counts[:, None]  # (B, S_max)
        source = (self.offsets[rows][:, None] + slot).clamp_max(len(self.solutions) - 1)  # in range; masked below
        out = self.solutions[source]  # (B, S_max, n)
        return out.masked_fill(~valid[:, :, None], PAD_TOKEN)


# ---------------------------------------------------------------------------------------------
# Augmentation and checking (batched torch)
# ---------------------------------------------------------------------------------------------


def augment_batch(
    inputs: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relabel the nodes of each row by an independent random permutation.

    New node a is old node ``perm[a]``: pair (a, b) of the new input reads pair (perm[a], perm[b])
    of the old one, and the new label of node a is the old label of node ``perm[a]``, so a proper
    coloring stays a proper coloring of the relabelled graph.

    Args:
        inputs: (B, n(n-1)/2) upper-triangle tokens.
        labels: (B, n) color tokens.
        generator: Source of randomness (None: torch's global generator, which DataLoader
            workers seed differently).
    """
    batch, n = labels.shape
    if inputs.shape != (batch, num_pairs(n)):
        raise ValueError(f"inputs must be ({batch}, {num_pairs(n)}) for labels {tuple(labels.shape)}, "
                         f"got {tuple(inputs.shape)}")
    device = inputs.device
    rand_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.rand(batch, n, generator=generator, device=rand_device).argsort(1).to(device)  # (B, n)
    rows, cols = _torch_pairs(n, device)
    pair_of = torch.zeros(n, n, dtype=torch.long, device=device)  # (i, j) -> its input position
    pair_of[rows, cols] = torch.arange(len(rows), device=device)
    pair_of[cols, rows] = pair_of[rows, cols]
    source = pair_of[perm[:, rows], perm[:, cols]]  # (B, n(n-1)/2)
    return inputs.gather(1, source), labels.gather(1, perm)


def _is_color(tokens: torch.Tensor, num_colors: int | None) -> torch.Tensor:
    is_color = tokens >= FIRST_COLOR_TOKEN
    if num_colors is not None:
        is_color &= tokens < FIRST_COLOR_TOKEN + num_colors
    return is_color


def conflict_edges(
    inputs: torch.Tensor, preds: torch.Tensor, n: int | None = None, num_colors: int = 3
) -> torch.Tensor:
    """(..., n(n-1)/2) inputs and (..., n) predicted tokens -> (...) long: conflicting edges.

    An edge conflicts when its two endpoints get the same color, or when either endpoint's token
    is not a color (PAD, 1, 2 or a token past the last color): a non-color never satisfies a
    constraint, so an output that dodges colors cannot score better than a proper one. A
    non-color on a node without neighbours adds no conflict, but `check_coloring` still rejects it.

    Args:
        inputs: Upper-triangle tokens; 2 (edge) marks an edge, any other token none.
        preds: Predicted tokens.
        n: Number of nodes; None: ``preds.shape[-1]``.
        num_colors: Colors of the task (tokens 3..2+num_colors).
    """
    n = n if n is not None else preds.shape[-1]
    if preds.shape[-1] != n or inputs.shape[-1] != num_pairs(n):
        raise ValueError(f"{n} nodes need (..., {num_pairs(n)}) inputs and (..., {n}) preds, got "
                         f"{tuple(inputs.shape)} and {tuple(preds.shape)}")
    rows, cols = _torch_pairs(n, preds.device)
    a, b = preds[..., rows], preds[..., cols]
    bad = (a == b) | ~_is_color(a, num_colors) | ~_is_color(b, num_colors)
    return ((inputs == EDGE_TOKEN) & bad).sum(-1)


def check_coloring(
    inputs: torch.Tensor, preds: torch.Tensor, n: int | None = None, num_colors: int = 3
) -> torch.Tensor:
    """(..., n(n-1)/2) inputs and (..., n) predicted tokens -> (...) bool: every token is a color
    and no edge joins two nodes of the same color."""
    is_color = _is_color(preds, num_colors).all(-1)
    return is_color & (conflict_edges(inputs, preds, n, num_colors) == 0)


def canonical_output(preds: torch.Tensor, num_colors: int | None = None) -> torch.Tensor:
    """(..., n) tokens with the colors relabelled in order of first occurrence.

    Two colorings equal up to a permutation of the colors become identical (color 3 at node 0,
    4 at the first node with another color, ...), so distinct solutions can be counted by
    comparing tokens. Non-color tokens (PAD, 1, 2, and with ``num_colors`` any token past the last
    color) stay as they are and take no color number.
    """
    n = preds.shape[-1]
    flat = preds.reshape(-1, n)
    is_color = _is_color(flat, num_colors)
    positions = torch.arange(n, device=preds.device)
    same = flat[:, :, None] == flat[:, None, :]  # (B, n, n)
    first = torch.where(same, positions, n).amin(-1)  # (B, n): first node with this node's token
    opens = is_color & (first == positions)  # a color's first occurrence
    rank = opens.long().cumsum(1) - 1  # (B, n): at a first occurrence, how many colors came before
    relabelled = (FIRST_COLOR_TOKEN + rank.gather(1, first)).to(flat.dtype)
    return torch.where(is_color, relabelled, flat).reshape(preds.shape)


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


class _GraphBatches(PuzzleBatches):
    """Graph batches. With ``random_label`` the label is a uniformly random stored coloring under a
    uniformly random color permutation (every coloring, not only the canonical ones, can be a target);
    otherwise it is the graph's first canonical coloring.
    """

    def __init__(self, data: GraphTensors, num_colors: int, *, repeat: int = 1, random_label: bool = False) -> None:
        super().__init__(data, repeat=repeat, random_label=random_label)
        self.num_colors = num_colors

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = self.data.num_solutions[index]  # (B,)
        batch = len(index)
        labels = self.data.solutions[self.data.offsets[index] + self.solution_choice(counts)].long()  # (B, n)
        if self.random_label:
            # A per-row lookup table over all tokens: PAD, 1 and 2 fixed, colors permuted.
            colors = torch.rand(batch, self.num_colors).argsort(1) + FIRST_COLOR_TOKEN
            fixed = torch.arange(FIRST_COLOR_TOKEN).expand(batch, -1)
            labels = torch.cat([fixed, colors], 1).gather(1, labels)
        return {
            "inputs": self.data.inputs[index].long(),  # (B, n(n-1)/2)
            "labels": labels,  # (B, n)
            "num_solutions": counts,  # (B,)
            "index": index,  # (B,)
        }


class GraphColoringDataModule(PuzzleDataModule, Task):
    """Graph coloring: random Erdos-Renyi graphs G(n, p) that can be colored with ``num_colors``
    colors, with all their colorings up to color permutation; generated and cached.

    Batches are dicts of ``inputs`` (B, n(n-1)/2) upper-triangle tokens (1 = no edge, 2 = edge),
    ``labels`` (B, n) color tokens (3..2+num_colors), ``num_solutions`` (B,) (colorings up to
    color permutation) and ``index`` (B,), the graph's index in its split (see `solutions`).
    Validation uses the first ``num_val_graphs`` graphs of the test split.

    Graphs of a split are distinct (as labelled graphs); no training graph is isomorphic to a test
    graph, since node-permutation augmentation would otherwise show test graphs during training
    (at n = 8, 7% of the training draws are isomorphic to one of the 255 test graphs). A split may
    hold isomorphic graphs: the 7002 default 8-node training graphs fall into about 3200
    isomorphism classes, and G(8, 0.4) has too few likely classes for 7002 distinct ones
    (``unique_up_to_isomorphism`` fails there); at n = 10 isomorphic pairs are rare. The default
    splits have about 17 colorings per graph (up to color permutation; median 6-10, max 864).

    Building the default splits (enumerating all colorings, checking isomorphism against the test
    split) takes about 0.7 s for n = 8 and 1.6 s for n = 10 on one core; they are cached.

    Args:
        num_nodes: Nodes per graph n; the input has n(n-1)/2 tokens, the output n.
        edge_prob: Probability p of each edge.
        num_colors: Colors available (the task is 3-coloring by default).
        num_train_graphs: Training graphs; None: the paper's number (7002 for 8 nodes, 13465 for
            10), required for other sizes.
        num_test_graphs: Test graphs; None: the paper's number (255 for 8 nodes, 192 for 10),
            required for other sizes.
        num_val_graphs: Validation graphs, taken as the first ones of the test split.
        unique_up_to_isomorphism: Keep at most one graph per isomorphism class in each split
            (otherwise only identical adjacency matrices are removed).
        augment: Relabel the nodes of each training graph (and its coloring) by a random
            permutation every time it is drawn. Training labels always get a random color
            permutation.
        epoch_multiplier: One training epoch draws each graph this many times (each time with a
            fresh random coloring and augmentation).
        cache_dir: Folder of the cached datasets (one subfolder per set of parameters).
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of graph generation.
    """

    violations_name = "conflict_edges"  # what `violations` counts, the paper's graph-coloring figure

    def __init__(
        self,
        num_nodes: int = 8,
        edge_prob: float = 0.4,
        num_colors: int = 3,
        num_train_graphs: int | None = None,
        num_test_graphs: int | None = None,
        num_val_graphs: int = 128,
        unique_up_to_isomorphism: bool = False,
        augment: bool = True,
        epoch_multiplier: int = 100,
        cache_dir: str = "data/cache",
        batch_size: int = 768,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        default_train, default_test = DEFAULT_SIZES.get(num_nodes, (None, None))
        num_train_graphs = num_train_graphs if num_train_graphs is not None else default_train
        num_test_graphs = num_test_graphs if num_test_graphs is not None else default_test
        _validate_args(
            num_nodes=num_nodes, edge_prob=edge_prob, num_colors=num_colors, num_train_graphs=num_train_graphs,
            num_test_graphs=num_test_graphs, num_val_graphs=num_val_graphs, epoch_multiplier=epoch_multiplier,
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed,
        )
        self.num_nodes, self.edge_prob, self.num_colors = num_nodes, edge_prob, num_colors
        self.num_train_graphs, self.num_test_graphs = num_train_graphs, num_test_graphs
        self.num_val_graphs = num_val_graphs
        self.unique_up_to_isomorphism = unique_up_to_isomorphism
        self.augment, self.epoch_multiplier = augment, epoch_multiplier
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers, self.seed = num_workers, seed

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = FIRST_COLOR_TOKEN + num_colors  # PAD, no edge, edge, the colors
        self.seq_len = num_pairs(num_nodes)
        self.out_len = num_nodes
        self.num_puzzle_ids = 0

        self.splits: dict[str, GraphTensors] = {}

    # -- building ---------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Generate and cache both splits; runs once per node before `setup`."""
        self._train_source(self._test_source())

    def setup(self, stage: str | None = None) -> None:
        """Load the cached splits into memory as tensors (all stages share them)."""
        if self.splits:
            return
        test_source = self._test_source()
        test = GraphTensors.from_dataset(test_source)
        train = GraphTensors.from_dataset(self._train_source(test_source))
        self.splits = {"train": train, "val": test.head(self.num_val_graphs), "test": test}

    def _params(self, split: str, count: int) -> dict[str, Any]:
        return {
            "version": GENERATOR_VERSION, "num_nodes": self.num_nodes, "edge_prob": self.edge_prob,
            "num_colors": self.num_colors, "split": split, "count": count,
            "unique_up_to_isomorphism": self.unique_up_to_isomorphism, "seed": self.seed,
        }

    def _test_source(self) -> datasets.Dataset:
        return cached_dataset(
            self.cache_dir, f"graph{self.num_nodes}-test", self._params("test", self.num_test_graphs),
            lambda: self._generate("test", self.num_test_graphs, exclude=None),
        )

    def _train_source(self, test_source: datasets.Dataset) -> datasets.Dataset:
        # Train leaves out the test graphs' isomorphism classes, so its content depends on them;
        # the test split is a function of its own parameters.
        params = {**self._params("train", self.num_train_graphs), "exclude": self._params("test", self.num_test_graphs)}

        def build() -> datasets.Dataset:
            exclude = isomorphism_keys(test_source, self.num_nodes)
            return self._generate("train", self.num_train_graphs, exclude=exclude)

        return cached_dataset(self.cache_dir, f"graph{self.num_nodes}-train", params, build)

    def _generate(self, split: str, count: int, exclude: set[int] | None) -> datasets.Dataset:
        return generate_split(
            split, count, n=self.num_nodes, edge_prob=self.edge_prob, num_colors=self.num_colors,
            seed=self.seed, exclude=exclude, unique_up_to_isomorphism=self.unique_up_to_isomorphism,
        )

    # -- loading ----------------------------------------------------------------------------

    def batches(self, data: GraphTensors, *, repeat: int = 1, random_label: bool = False) -> _GraphBatches:
        return _GraphBatches(data, self.num_colors, repeat=repeat, random_label=random_label)

    def augment_fn(self):
        return augment_batch

    # -- evaluation helpers -----------------------------------------------------------------

    def violations(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, n(n-1)/2) inputs and (B, n) predicted tokens -> (B,) long conflicting edges (see
        the module-level `conflict_edges` for how non-color tokens count)."""
        return conflict_edges(inputs, preds, self.num_nodes, self.num_colors)

    def check_coloring(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, n(n-1)/2) inputs and (B, n) predicted tokens -> (B,) bool: a proper coloring."""
        return check_coloring(inputs, preds, self.num_nodes, self.num_colors)

    def check(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, n(n-1)/2) inputs and (B, n) predicted tokens -> (B,) bool: a proper coloring."""
        return self.check_coloring(inputs, preds)

    def canonical(self, preds: torch.Tensor) -> torch.Tensor:
        """(..., n) tokens with colors relabelled in order of first occurrence, so that colorings
        equal up to color permutation become identical (see the module-level function)."""
        return canonical_output(preds, self.num_colors)

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """One coloring as a (3, H, W) image of the adjacency matrix: node colors on the diagonal, edges
        grey, conflicting edges red, non-colors purple."""
        n = self.num_nodes
        rows, cols = _torch_pairs(n, inputs.device)
        edge = torch.zeros(n, n, dtype=torch.bool)
        edge[rows, cols] = inputs == EDGE_TOKEN
        edge = edge | edge.T
        same = output[:, None] == output[None, :]
        colors = torch.ones(n, n, 3)
        colors[edge] = 0.55
        colors[edge & same] = RED
        is_color = (output >= FIRST_COLOR_TOKEN) & (output < FIRST_COLOR_TOKEN + self.num_colors)
        node = torch.where(is_color[:, None], PALETTE[(output - FIRST_COLOR_TOKEN + 1).clamp(1, len(PALETTE) - 1)],
                           torch.tensor([0.55, 0.2, 0.8]))
        colors[torch.arange(n), torch.arange(n)] = node
        return grid_image(colors, cell=10)

    def solutions(self, index: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All stored colorings (canonical, see `canonical`) of the graphs ``index`` (B,)
        of ``split``.

        Returns:
            (B, S_max, n) long coloring tokens, PAD (0) beyond each count, and (B,) counts, on
            ``index``'s device. Only meaningful for unaugmented batches (val/test).
        """
        data = self._split(split)
        rows = index.detach().cpu().long()
        return data.padded_solutions(rows).long().to(index.device), data.num_solutions[rows].to(index.device)


def _validate_args(
    *,
    num_nodes: int,
    edge_prob: float,
    num_colors: int,
    num_train_graphs: int | None,
    num_test_graphs: int | None,
    num_val_graphs: int,
    epoch_multiplier: int,
    batch_size: int,
    eval_batch_size: int | None,
    num_workers: int,
    seed: int,
) -> None:
    """Raise a ValueError naming the first bad `GraphColoringDataModule` argument."""

    require(num_nodes >= 2, f"num_nodes must be >= 2 (a graph needs at least one node pair), got {num_nodes}")
    require(0.0 < edge_prob < 1.0, f"edge_prob must be in (0, 1), got {edge_prob}")
    require(num_colors >= 2, f"num_colors must be >= 2, got {num_colors}")
    require(num_colors <= 120, f"num_colors must be <= 120 (int8 tokens 3..2+num_colors), got {num_colors}")
    for name, count in (("num_train_graphs", num_train_graphs), ("num_test_graphs", num_test_graphs)):
        require(count is not None,
                f"{name} has a default only for num_nodes in {sorted(DEFAULT_SIZES)}; "
                f"give it for num_nodes={num_nodes}")
        require(count >= 1, f"{name} must be >= 1, got {count}")
    require(num_val_graphs >= 0, f"num_val_graphs must be >= 0, got {num_val_graphs}")
    require(num_val_graphs <= num_test_graphs,
            f"num_val_graphs={num_val_graphs} exceeds num_test_graphs={num_test_graphs}: "
            f"validation uses the first test graphs")
    require(epoch_multiplier >= 1, f"epoch_multiplier must be >= 1, got {epoch_multiplier}")
    require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    require(eval_batch_size is None or eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {eval_batch_size}")
    require(num_workers >= 0, f"num_workers must be >= 0, got {num_workers}")
    require(seed >= 0, f"seed must be >= 0 (it seeds numpy SeedSequences), got {seed}")
