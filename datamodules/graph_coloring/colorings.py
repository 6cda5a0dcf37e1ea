"""Judging colorings: conflict edges, proper colorings and the canonical form under color permutation."""

from __future__ import annotations

import torch

from datamodules.graph_coloring.graphs import EDGE_TOKEN, FIRST_COLOR_TOKEN, num_pairs, torch_pairs


def is_color(tokens: torch.Tensor, num_colors: int | None) -> torch.Tensor:
    """Which tokens are colors: 3 and above, and with ``num_colors`` below 3 + num_colors."""
    color = tokens >= FIRST_COLOR_TOKEN
    if num_colors is not None:
        color &= tokens < FIRST_COLOR_TOKEN + num_colors
    return color


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
    rows, cols = torch_pairs(n, preds.device)
    a, b = preds[..., rows], preds[..., cols]
    bad = (a == b) | ~is_color(a, num_colors) | ~is_color(b, num_colors)
    return ((inputs == EDGE_TOKEN) & bad).sum(-1)


def check_coloring(
    inputs: torch.Tensor, preds: torch.Tensor, n: int | None = None, num_colors: int = 3
) -> torch.Tensor:
    """(..., n(n-1)/2) inputs and (..., n) predicted tokens -> (...) bool: every token is a color
    and no edge joins two nodes of the same color."""
    all_colors = is_color(preds, num_colors).all(-1)
    return all_colors & (conflict_edges(inputs, preds, n, num_colors) == 0)


def canonical_output(preds: torch.Tensor, num_colors: int | None = None) -> torch.Tensor:
    """(..., n) tokens with the colors relabelled in order of first occurrence.

    Two colorings equal up to a permutation of the colors become identical (color 3 at node 0,
    4 at the first node with another color, ...), so distinct solutions can be counted by
    comparing tokens. Non-color tokens (PAD, 1, 2, and with ``num_colors`` any token past the last
    color) stay as they are and take no color number.
    """
    n = preds.shape[-1]
    flat = preds.reshape(-1, n)
    color = is_color(flat, num_colors)
    positions = torch.arange(n, device=preds.device)
    same = flat[:, :, None] == flat[:, None, :]  # (B, n, n)
    first = torch.where(same, positions, n).amin(-1)  # (B, n): first node with this node's token
    opens = color & (first == positions)  # a color's first occurrence
    rank = opens.long().cumsum(1) - 1  # (B, n): at a first occurrence, how many colors came before
    relabelled = (FIRST_COLOR_TOKEN + rank.gather(1, first)).to(flat.dtype)
    return torch.where(color, relabelled, flat).reshape(preds.shape)
