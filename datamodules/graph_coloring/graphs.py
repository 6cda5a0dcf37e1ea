"""Graphs of the coloring task as tokens: pair indexing, the enumeration of colorings, isomorphism keys and the
node-relabelling augmentation.

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
color 1, and so on (`datamodules.graph_coloring.colorings.canonical_output`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

PAD_TOKEN = 0
NO_EDGE_TOKEN = 1
EDGE_TOKEN = 2
FIRST_COLOR_TOKEN = 3


def num_pairs(n: int) -> int:
    """Input length of an n-node graph: the n(n-1)/2 node pairs i < j."""
    return n * (n - 1) // 2


@lru_cache(maxsize=None)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pairs i < j in input order (row-major upper triangle)."""
    rows, cols = np.triu_indices(n, 1)
    return rows, cols


def torch_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
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


def augment_batch(
    inputs: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relabel the nodes of each row by an independent random permutation.

    New node a is old node ``perm[a]``: pair (a, b) of the new input reads pair (perm[a], perm[b])
    of the old one, and the new label of node a is the old label of node ``perm[a]``, so a proper
    coloring stays a proper coloring of the relabelled graph. Inputs are (B, n(n-1)/2) upper-triangle
    tokens, labels (B, n) color tokens; the arguments are those of a `datamodules.puzzle_data.Augment`.
    """
    batch, n = labels.shape
    if inputs.shape != (batch, num_pairs(n)):
        raise ValueError(f"inputs must be ({batch}, {num_pairs(n)}) for labels {tuple(labels.shape)}, "
                         f"got {tuple(inputs.shape)}")
    device = inputs.device
    rand_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.rand(batch, n, generator=generator, device=rand_device).argsort(1).to(device)  # (B, n)
    rows, cols = torch_pairs(n, device)
    pair_of = torch.zeros(n, n, dtype=torch.long, device=device)  # (i, j) -> its input position
    pair_of[rows, cols] = torch.arange(len(rows), device=device)
    pair_of[cols, rows] = pair_of[rows, cols]
    source = pair_of[perm[:, rows], perm[:, cols]]  # (B, n(n-1)/2)
    return inputs.gather(1, source), labels.gather(1, perm)
