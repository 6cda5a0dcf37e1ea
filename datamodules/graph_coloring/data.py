"""The graph coloring DataModule: generated and cached splits, color-permuted training labels, and the Task
members."""

from __future__ import annotations

from typing import Any

import datasets
import torch

from datamodules.cache import cached_dataset
from datamodules.graph_coloring.colorings import canonical_output, check_coloring, conflict_edges, is_color
from datamodules.graph_coloring.generator import GENERATOR_VERSION, generate_split, isomorphism_keys
from datamodules.graph_coloring.graphs import EDGE_TOKEN, FIRST_COLOR_TOKEN, augment_batch, num_pairs, torch_pairs
from datamodules.puzzle_data import require
from datamodules.ragged import RaggedSolutions, SolutionBatches, SolutionsDataModule
from gram_lightning.render import PALETTE, PURPLE, RED, grid_image
from gram_lightning.task import Task

# Paper sizes (train, test) per number of nodes (GRAM_SPEC.md section 3).
DEFAULT_SIZES = {8: (7002, 255), 10: (13465, 192)}


class _GraphBatches(SolutionBatches):
    """Graph batches. With ``random_label`` the label is a uniformly random stored coloring under a
    uniformly random color permutation (every coloring, not only the canonical ones, can be a target);
    otherwise it is the graph's first canonical coloring.
    """

    def __init__(self, data: RaggedSolutions, num_colors: int, *, repeat: int = 1, random_label: bool = False) -> None:
        super().__init__(data, repeat=repeat, random_label=random_label)
        self.num_colors = num_colors

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = super().batch(index)  # inputs (B, n(n-1)/2), labels (B, n), num_solutions, index
        if self.random_label:
            # A per-row lookup table over all tokens: PAD, 1 and 2 fixed, colors permuted.
            colors = torch.rand(len(index), self.num_colors).argsort(1) + FIRST_COLOR_TOKEN
            fixed = torch.arange(FIRST_COLOR_TOKEN).expand(len(index), -1)
            batch["labels"] = torch.cat([fixed, colors], 1).gather(1, batch["labels"])
        return batch


class GraphColoringDataModule(SolutionsDataModule, Task):
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
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed,
            epoch_multiplier=epoch_multiplier, augment=augment, cache_dir=cache_dir,
        )
        self.save_hyperparameters()
        default_train, default_test = DEFAULT_SIZES.get(num_nodes, (None, None))
        num_train_graphs = num_train_graphs if num_train_graphs is not None else default_train
        num_test_graphs = num_test_graphs if num_test_graphs is not None else default_test
        _validate_args(
            num_nodes=num_nodes, edge_prob=edge_prob, num_colors=num_colors, num_train_graphs=num_train_graphs,
            num_test_graphs=num_test_graphs, num_val_graphs=num_val_graphs,
        )
        self.num_nodes, self.edge_prob, self.num_colors = num_nodes, edge_prob, num_colors
        self.num_train_graphs, self.num_test_graphs = num_train_graphs, num_test_graphs
        self.num_val_graphs = num_val_graphs
        self.unique_up_to_isomorphism = unique_up_to_isomorphism

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = FIRST_COLOR_TOKEN + num_colors  # PAD, no edge, edge, the colors
        self.seq_len = num_pairs(num_nodes)
        self.out_len = num_nodes

    # -- building ---------------------------------------------------------------------------

    def cached_splits(self) -> tuple[datasets.Dataset, datasets.Dataset]:
        """Generated; the test split first, whose isomorphism classes training leaves out."""
        test = self._test_source()
        return self._train_source(test), test

    def load_splits(self, train: datasets.Dataset, test: datasets.Dataset) -> dict[str, RaggedSolutions]:
        test_split = RaggedSolutions.from_dataset(test)
        return {"train": RaggedSolutions.from_dataset(train), "val": test_split.head(self.num_val_graphs),
                "test": test_split}

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

    def batches(self, data: RaggedSolutions, *, repeat: int = 1, random_label: bool = False) -> _GraphBatches:
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
        rows, cols = torch_pairs(n, inputs.device)
        edge = torch.zeros(n, n, dtype=torch.bool)
        edge[rows, cols] = inputs == EDGE_TOKEN
        edge = edge | edge.T
        same = output[:, None] == output[None, :]
        colors = torch.ones(n, n, 3)
        colors[edge] = 0.55
        colors[edge & same] = RED
        palette = PALETTE[(output - FIRST_COLOR_TOKEN + 1).clamp(1, len(PALETTE) - 1)]
        node = torch.where(is_color(output, self.num_colors)[:, None], palette, PURPLE)
        colors[torch.arange(n), torch.arange(n)] = node
        return grid_image(colors, cell=10)


def _validate_args(
    *,
    num_nodes: int,
    edge_prob: float,
    num_colors: int,
    num_train_graphs: int | None,
    num_test_graphs: int | None,
    num_val_graphs: int,
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
