"""The one sampler and scorer of every evaluation: validation, `gram test`, `gram predict`, the width report, the
depth x width grid (`gram_lightning/scaling.py`) and the generation sweep (`benchmarks/generation.py`).

`sample_depths` rolls N trajectories per input out to the deepest requested step once and reads every requested
depth on the way; `score` judges the outputs of one depth through the task (`gram_lightning/task.py`) and picks one
per input by a selection rule. `SolveMetrics` (`gram_lightning/metrics.py`) sums what the scored samples found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from gram_lightning.keyed_noise import sample_keys
from gram_lightning.losses import IGNORE_LABEL
from gram_lightning.model import StepOutput
from gram_lightning.samples import Samples
from gram_lightning.selection import SelectionRule, select
from gram_lightning.task import Task

if TYPE_CHECKING:
    from gram_lightning.module import GRAMModule


def without_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The batch without the rows a distributed evaluation sampler added to even out the ranks (`pad`), so
    that every input is scored exactly once; None when nothing is left."""
    pad = batch.get("pad")
    if pad is None:
        return batch
    keep = ~pad
    if not keep.any():
        return None
    return {k: v[keep] for k, v in batch.items() if k != "pad"}


@torch.no_grad()
def sample_depths(
    module: GRAMModule,
    batch: dict[str, torch.Tensor],
    num_samples: int,
    depths: list[int],
    selection: SelectionRule = "vote",
    posterior: bool = False,
) -> Iterator[tuple[int, Samples]]:
    """Roll `num_samples` trajectories per input out to max(depths) once, in one batch, yielding (depth, scored
    samples) at every depth of `depths` on the way (a shallower depth costs nothing extra).

    The module supplies the net, its inference settings (test-time noise, halting, the carry) and its task. With
    the batch's `index` every trajectory's noise is a function of (inference_seed, index, sample number): an input
    gets the same samples in any batch, at any N (the first 8 of N=32 are the N=8 samples) and on any DDP rank.
    Posterior rollouts (they see the label) draw from a separate stream.
    """
    inputs, labels = batch["inputs"], batch.get("labels")
    B, N = inputs.shape[0], num_samples
    wanted = sorted(set(depths))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"depths must be supervision step counts >= 1, got {depths}")
    repeat = lambda t: None if t is None else t.repeat_interleave(N, dim=0)  # noqa: E731
    rows_in, rows_labels = repeat(inputs), repeat(labels)  # (B*N, L_in), (B*N, L_out)
    keys = sample_keys(module.inference_seed, batch["index"], N, stream=int(posterior)) if "index" in batch else None
    halted = torch.zeros(B * N, dtype=torch.bool, device=inputs.device)
    steps = torch.zeros(B * N, dtype=torch.long, device=inputs.device)
    final: StepOutput | None = None
    rollout = module.net.rollout(rows_in, wanted[-1], repeat(batch.get("puzzle_ids")), rows_labels if posterior else None,
                                 module.test_sigma, module.step_fn, carry_prior_draw=module.carry_kind == "prior_draw",
                                 noise_keys=keys)
    read = lambda: score(module.task, final, rows_in, rows_labels, steps, N, selection)  # noqa: E731
    for depth, out in enumerate(rollout, start=1):
        if final is None or not module.halt_at_inference:
            final = out
        else:  # rows that halted keep the output of the step at which they halted
            final = StepOutput(
                out.h, out.l,
                torch.where(halted[:, None, None], final.logits, out.logits),
                torch.where(halted, final.halt_logits, out.halt_logits),
                torch.where(halted, final.value, out.value),
                None,
            )
        steps = steps + (~halted).long()
        if depth in wanted:
            yield depth, read()
        if module.halt_at_inference:
            halted = halted | (final.halt_logits > 0)
            if halted.all():  # every row has stopped: deeper readings are this one
                for deeper in (d for d in wanted if d > depth):
                    yield deeper, read()
                return


def score(task: Task, out: StepOutput, inputs: torch.Tensor, labels: torch.Tensor | None, steps: torch.Tensor,
          num_samples: int, selection: SelectionRule) -> Samples:
    """Judge the B x N outputs of one step with the task and pick one per input.

    Args:
        task: Checks the outputs (without a checker: equality with the label), counts their violations and gives
            their canonical forms, which the vote compares.
        out: The step's output for the B * N trajectories, the N of an input adjacent.
        inputs: (B*N, L_in) tokens; labels (B*N, L_out) or None (needed only by a task without a checker).
        steps: (B*N,) supervision steps each trajectory ran.
        num_samples: N.
        selection: vote, lprm, halt or first.
    """
    preds = out.logits.argmax(-1)  # (B*N, L_out)
    B, N = preds.shape[0] // num_samples, num_samples
    if task.checks_answers:
        is_solution = task.check(inputs, preds)
    elif labels is None:
        raise ValueError(f"{type(task).__name__} has no checker (Task.check) and the batch no labels to compare with")
    else:
        is_solution = ((preds == labels) | (labels == IGNORE_LABEL)).all(-1)
    violations = task.violations(inputs, preds)
    preds = preds.view(B, N, -1)
    keys = task.canonical(preds)
    value, halt_logits = out.value.view(B, N), out.halt_logits.view(B, N)
    choice = select(keys, selection, value, halt_logits)
    return Samples(preds, keys, value, halt_logits, is_solution.view(B, N),
                   None if violations is None else violations.view(B, N), steps.view(B, N), choice.index, choice.score)
