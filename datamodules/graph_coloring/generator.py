"""Graph coloring generation: a seeded stream of Erdos-Renyi graphs G(n, p), kept when colorable and new, with
every coloring up to color permutation."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from datamodules.generation import GenerationError, split_rng
from datamodules.graph_coloring.graphs import (
    EDGE_TOKEN,
    FIRST_COLOR_TOKEN,
    NO_EDGE_TOKEN,
    enumerate_colorings,
    isomorphism_key,
    num_pairs,
)
from datamodules.tables import board_matrix, puzzle_dataset, split_table

log = logging.getLogger(__name__)

# Bump when the generation algorithm changes, so that old cache folders are not reused.
GENERATOR_VERSION = 1
# Graphs drawn per round of the generator. Fixed, so that graph i of a split is the same whatever
# the number of graphs asked for: a smaller split is a prefix of a larger one.
_ROUND_SIZE = 4096
# Graphs whose colorings are enumerated at once (bounds the memory of sparse graphs, which have
# thousands of colorings each).
_ENUMERATION_CHUNK = 512


def sample_graphs(n: int, edge_prob: float, seed: int, split: str, round_index: int) -> np.ndarray:
    """Round ``round_index`` of a split's stream of G(n, p) graphs: (_ROUND_SIZE, n(n-1)/2) bool."""
    rng = split_rng(seed, split, round_index)
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
    edges = np.stack(kept_edges)
    # Tokens: the upper triangle (1 no edge, 2 edge) in, canonical colorings out; the column of its own is
    # the number of edges.
    return puzzle_dataset(
        edges.astype(np.int8) + NO_EDGE_TOKEN, np.concatenate(kept_colorings).astype(np.int8) + FIRST_COLOR_TOKEN,
        np.asarray(kept_counts, dtype=np.int64), "num_edges", edges.sum(1),
    )


def _edge_matrix(ds: datasets.Dataset) -> np.ndarray:
    """The input column as (P, n(n-1)/2) bool edges, without going through Python lists."""
    return board_matrix(split_table(ds).column("inputs")) == EDGE_TOKEN


def isomorphism_keys(ds: datasets.Dataset, n: int) -> set[int]:
    """The `isomorphism_key`s of a dataset's graphs, e.g. for `generate_split`'s ``exclude``."""
    return {isomorphism_key(row, n) for row in _edge_matrix(ds)}
