"""The base class of every network in the project."""

from __future__ import annotations

from torch import nn


class TaskNet(nn.Module):
    """A network over a task's tokens, built from the four arguments the CLI links from the DataModule: vocab_size,
    seq_len, out_len and num_puzzle_ids. GRAM and the baselines' nets derive from it. A baseline module takes any
    TaskNet (and checks its own kind), so that a baseline config switching `model.class_path` after a task config
    keeps the settings the two nets share (width, heads, expansion, layers)."""
