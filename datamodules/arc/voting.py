"""ARC's pass@k evaluation by voting over augmentations, as a torchmetrics Metric that syncs across DDP ranks.

Each test input of an evaluation task (a "group") is shown to the model under many variants (dihedral x
colour permutation), with N sampled trajectories each. Every prediction is cropped from its canvas, mapped
back through its variant's inverse and counted as one vote for that answer in its group. Answers are
ranked by votes, then by mean confidence (the halt head's probability or LPRM's value), then by hash so
the order is deterministic. pass@k of a group: the true output is among its top k answers; a task scores
the mean over its groups, and pass@k is the mean over tasks, as in TRM and the ARC Prize.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from datamodules.arc.grids import COLOR_OFFSET, CANVAS, SEQ_LEN, Variant, _crop_sizes, check_grid, grid_hash

# Every list state with its dtype and trailing shape. Under DDP, torchmetrics stands in a float32 (0,)
# tensor for a rank that saw nothing, which would turn the gathered 64-bit hashes into floats; an empty
# tensor of the right dtype and shape is put in its place before syncing (see _sync_dist).
_STATES: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {
    # one row per prediction
    "pred_group": (torch.long, ()),
    "pred_hash": (torch.long, ()),  # -1: the prediction cropped to an empty grid (no vote)
    "pred_conf": (torch.float32, ()),
    # one row per (group, answer) first seen on this rank; the grids' cells are concatenated into
    # ans_cells (h * w each) because most answers are far smaller than the 30x30 canvas.
    "ans_group": (torch.long, ()),
    "ans_hash": (torch.long, ()),
    "ans_shape": (torch.uint8, (2,)),
    "ans_cells": (torch.uint8, ()),
}

_NO_ANSWER = [[0]]  # what the submission holds for a test input without any answer: a valid 1x1 grid


def _check_range(values: np.ndarray, n: int, what: str) -> None:
    bad = values[(values < 0) | (values >= n)]
    if len(bad):
        raise ValueError(f"ARCVoting: {what} out of range 0..{n - 1}: {sorted(set(bad.tolist()))}")


class ARCVoting(Metric):
    """pass@k of voted answers over augmented ARC test inputs; also the ranked answers and a submission.

    Args:
        variants: variants[puzzle_id] is the Variant a puzzle id's inputs were shown under.
        solutions: solutions[g] is the true output grid of group g, or None when unknown (the group is
            then ranked, for the submission, but not scored).
        group_task: group_task[g] is the task index of group g.
        group_names: group_names[g] = (task id, test index), for the output files.
        ks: the k of each pass@k reported.
        confidence: "halt" ranks ties by the halt head's probability, "value" by LPRM's value.

    Under DDP, compute, ranked_answers and submission gather every rank's states, so call them on all
    ranks.
    """

    full_state_update = False
    higher_is_better = True
    headline = "pass@2"  # the value the progress bar shows during validation

    def __init__(
        self,
        variants: Sequence[Variant],
        solutions: Sequence[np.ndarray | None],
        group_task: Sequence[int],
        group_names: Sequence[tuple[str, int]],
        ks: Sequence[int] = (1, 2, 5, 10),
        confidence: Literal["halt", "value"] = "halt",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not (len(solutions) == len(group_task) == len(group_names)):
            raise ValueError(f"solutions, group_task and group_names must have one entry per group, got lengths "
                             f"{len(solutions)}, {len(group_task)}, {len(group_names)}")
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
        if confidence not in ("halt", "value"):
            raise ValueError(f"confidence must be 'halt' or 'value', got {confidence!r}")
        self.variants = tuple(variants)
        self.group_task = np.asarray(group_task, dtype=np.int64)
        self.group_names = [(str(task), int(i)) for task, i in group_names]
        self.ks = tuple(int(k) for k in ks)
        self.confidence = confidence
        self.solution_hash = np.array([-1 if s is None else grid_hash(check_grid(s, f"solution of {self.group_names[g]}"))
                                       for g, s in enumerate(solutions)], dtype=np.int64)  # (G,), -1 unknown
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._seen: set[tuple[int, int]] = set()  # (group, hash) whose grid this rank has stored
        # add is an update entry point like update: torchmetrics' wrapper clears the cached compute
        # result and counts the call.
        self.add = self._wrap_update(self.add)

    def update(self, batch: dict[str, Tensor], samples: Any) -> None:
        """batch["group"], batch["puzzle_ids"] (B,) and the module's samples: preds (B, N, 900) with
        halt_logits or value (B, N)."""
        conf = torch.sigmoid(samples.halt_logits.float()) if self.confidence == "halt" else samples.value
        # The class's add, not the instance's wrapped one: update is wrapped already.
        type(self).add(self, batch["group"], batch["puzzle_ids"], samples.preds, conf)

    def add(self, groups: Tensor, puzzle_ids: Tensor, preds: Tensor, confidence: Tensor) -> None:
        """groups (B,) group index, puzzle_ids (B,) index into variants, preds (B, N, 900) tokens,
        confidence (B, N) in [0, 1]."""
        if preds.ndim != 3 or preds.shape[-1] != SEQ_LEN:
            raise ValueError(f"ARCVoting: preds must be (B, N, {SEQ_LEN}) tokens, got shape {tuple(preds.shape)}")
        B, N, _ = preds.shape
        if groups.shape != (B,) or puzzle_ids.shape != (B,):
            raise ValueError(f"ARCVoting: groups and puzzle_ids must be ({B},) like preds, "
                             f"got {tuple(groups.shape)} and {tuple(puzzle_ids.shape)}")
        if confidence.shape != (B, N):
            raise ValueError(f"ARCVoting: confidence must be ({B}, {N}) like preds, got {tuple(confidence.shape)}")
        group_np = groups.detach().cpu().numpy().astype(np.int64)  # (B,)
        pid_np = puzzle_ids.detach().cpu().numpy().astype(np.int64)  # (B,)
        _check_range(group_np, len(self.group_names), "group index")
        _check_range(pid_np, len(self.variants), "puzzle id")

        # One transfer per batch; cropping, de-augmenting and hashing are per-prediction CPU work.
        canvases = preds.detach().cpu().numpy().reshape(B * N, CANVAS, CANVAS)  # (B*N, 30, 30)
        sizes = _crop_sizes(canvases)  # (B*N, 2)
        hashes = np.full(B * N, -1, dtype=np.int64)  # (B*N,)
        new_group, new_hash, new_shape, new_cells = [], [], [], []
        for i, (h, w) in enumerate(sizes):
            if h == 0:
                continue  # an empty crop is never an ARC answer: the group counts as seen, without a vote
            b = i // N
            grid = self.variants[pid_np[b]].invert((canvases[i, :h, :w] - COLOR_OFFSET).astype(np.uint8))
            key = grid_hash(grid)
            hashes[i] = key
            group = int(group_np[b])
            if (group, key) not in self._seen:
                self._seen.add((group, key))
                new_group.append(group)
                new_hash.append(key)
                new_shape.append(grid.shape)
                new_cells.append(grid.ravel())

        self._append("pred_group", torch.from_numpy(np.repeat(group_np, N)))
        self._append("pred_hash", torch.from_numpy(hashes))
        self._append("pred_conf", confidence.detach().reshape(B * N).float())
        if new_group:
            self._append("ans_group", torch.tensor(new_group, dtype=torch.long))
            self._append("ans_hash", torch.tensor(new_hash, dtype=torch.long))
            self._append("ans_shape", torch.tensor(new_shape, dtype=torch.uint8))  # (M, 2)
            self._append("ans_cells", torch.from_numpy(np.concatenate(new_cells)))

    def compute(self) -> dict[str, Tensor]:
        ranking = self._ranking()
        task_hits: dict[int, list[np.ndarray]] = {}  # task -> per scored group, hit at each k
        for g, (hashes, _, _) in ranking.items():
            if self.solution_hash[g] < 0:
                continue
            rank = np.flatnonzero(hashes == self.solution_hash[g])
            rank = rank[0] if len(rank) else np.inf
            hits = np.array([rank < k for k in self.ks], dtype=np.float64)  # (len(ks),)
            task_hits.setdefault(int(self.group_task[g]), []).append(hits)
        per_task = [np.mean(hits, axis=0) for hits in task_hits.values()]  # a task: the mean over its groups
        scores = np.mean(per_task, axis=0) if per_task else np.zeros(len(self.ks))
        out = {f"pass@{k}": torch.tensor(s, dtype=torch.float32, device=self.device) for k, s in zip(self.ks, scores)}
        out["num_tasks"] = torch.tensor(float(len(task_hits)), device=self.device)
        out["num_groups"] = torch.tensor(float(sum(len(h) for h in task_hits.values())), device=self.device)
        return out

    def ranked_answers(self, top_k: int = 2) -> list[dict]:
        """The top_k answers of every group seen, in group order, with their votes, mean confidence and
        (when the solution is known) whether each is right."""
        with self._synced():
            ranking = self._ranking()
            grids = self._answer_grids({(g, int(h)) for g, (hashes, _, _) in ranking.items() for h in hashes[:top_k]})
        out = []
        for g, (hashes, votes, conf) in ranking.items():
            top = [int(h) for h in hashes[:top_k]]
            task, test_index = self.group_names[g]
            out.append({
                "task": task,
                "test_index": test_index,
                "attempts": [grids[g, h].tolist() for h in top],
                "votes": [int(v) for v in votes[:top_k]],
                "confidence": [float(c) for c in conf[:top_k]],
                "correct": None if self.solution_hash[g] < 0 else [bool(h == self.solution_hash[g]) for h in top],
            })
        return out

    def submission(self) -> dict[str, list[dict]]:
        """The ARC Prize submission: {task id: [{"attempt_1": grid, "attempt_2": grid} per test index]}.

        Every task of group_names is listed so the file is complete; a test input never seen (or whose
        predictions were all empty) gets a 1x1 black grid, and a missing second attempt repeats the first.
        """
        answers = {(a["task"], a["test_index"]): a["attempts"] for a in self.ranked_answers(top_k=2)}
        by_task: dict[str, list[tuple[int, dict]]] = {}  # tasks in the order group_names first names them
        for task, test_index in self.group_names:
            attempts = answers.get((task, test_index)) or [_NO_ANSWER]
            entry = {"attempt_1": attempts[0], "attempt_2": attempts[min(1, len(attempts) - 1)]}
            by_task.setdefault(task, []).append((test_index, entry))
        return {task: [entry for _, entry in sorted(entries, key=lambda e: e[0])] for task, entries in by_task.items()}

    # The instance's wrapped add is a closure over self: leave it out of pickles and deep copies (clone)
    # and wrap the copy's own, as torchmetrics does for update and compute.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__getstate__().items() if k != "add"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.add = self._wrap_update(self.add)

    def reset(self) -> None:
        # After merge_state or an un-restored sync a list state may be one tensor, which reset cannot clear().
        for name in _STATES:
            if isinstance(getattr(self, name), Tensor):
                setattr(self, name, [])
        super().reset()
        self._seen = set()

    # --- internals -------------------------------------------------------------------------------

    def _append(self, name: str, value: Tensor) -> None:
        state = getattr(self, name)
        value = value.to(self.device)
        if isinstance(state, Tensor):  # merged or synced into one tensor
            setattr(self, name, [state, value])
        else:
            state.append(value)

    def _state(self, name: str) -> np.ndarray:
        """A list state as one CPU numpy array, whether it is a list of tensors or already concatenated."""
        dtype, tail = _STATES[name]
        state = getattr(self, name)
        if isinstance(state, list) and not state:
            return torch.empty((0, *tail), dtype=dtype).numpy()
        # dtype: a rank without data may have contributed a float (0,) tensor to the concatenation.
        return dim_zero_cat(state).to("cpu", dtype).reshape(-1, *tail).numpy()

    def _ranking(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """group -> (hashes, votes, mean confidence) of its answers, best first; every group seen, in order
        (a group whose predictions were all empty has no answers)."""
        group, hashes, conf = self._state("pred_group"), self._state("pred_hash"), self._state("pred_conf")
        ranking = {int(g): (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)) for g in np.unique(group)}
        voted = hashes >= 0
        if not voted.any():
            return ranking
        pairs, inverse, votes = np.unique(np.stack([group[voted], hashes[voted]], axis=1), axis=0,
                                          return_inverse=True, return_counts=True)  # (A, 2), (V,), (A,)
        mean_conf = np.bincount(inverse.ravel(), weights=conf[voted].astype(np.float64), minlength=len(pairs)) / votes
        # lexsort's last key is the primary one: group, then most votes, then most confident, then hash.
        order = np.lexsort((pairs[:, 1], -mean_conf, -votes, pairs[:, 0]))
        pairs, votes, mean_conf = pairs[order], votes[order], mean_conf[order]
        starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
        for s, e in zip(starts, np.r_[starts[1:], len(pairs)]):
            ranking[int(pairs[s, 0])] = (pairs[s:e, 1], votes[s:e], mean_conf[s:e])
        return ranking

    def _answer_grids(self, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        """The stored grids of the wanted (group, hash) answers."""
        group, hashes, shape, cells = (self._state(n) for n in ("ans_group", "ans_hash", "ans_shape", "ans_cells"))
        shape = shape.astype(np.int64)  # (M, 2)
        ends = np.cumsum(shape[:, 0] * shape[:, 1])  # (M,) where each grid's cells end in ans_cells
        if len(cells) != (ends[-1] if len(ends) else 0):
            raise RuntimeError(f"ARCVoting: answer states out of step: {len(cells)} cells for {len(shape)} grids")
        grids = {}
        for i, key in enumerate(zip(group.tolist(), hashes.tolist())):
            if key in wanted and key not in grids:  # another rank may have stored the same answer
                h, w = shape[i]
                grids[key] = cells[ends[i] - h * w:ends[i]].reshape(h, w)
        if missing := wanted - grids.keys():
            raise RuntimeError(f"ARCVoting: no stored grid for {len(missing)} voted answers, e.g. {next(iter(missing))}")
        return grids

    @contextmanager
    def _synced(self) -> Iterator[None]:
        """The states gathered from every rank, as compute sees them (a no-op outside DDP)."""
        if self._is_synced:  # inside compute or after a manual sync()
            yield
            return
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync):
            yield

    def _sync_dist(self, dist_sync_fn=gather_all_tensors, process_group=None) -> None:
        for name, (dtype, tail) in _STATES.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty((0, *tail), dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)
