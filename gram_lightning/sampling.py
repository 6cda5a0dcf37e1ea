"""The one sampler and scorer of every evaluation: validation, `gram test`, `gram predict`, the width report, the
depth x width grid (`gram_lightning/scaling.py`) and the generation sweep (`benchmarks/generation.py`).

`sample_depths` draws N outputs per input at every requested depth through the model's `generate` (the one
model-specific part: GRAM's rollout, the AR baseline's token-by-token decoding, MDLM's denoising chain); `score`
judges the outputs of one depth through the task (`gram_lightning/task.py`) and picks one
per input by a selection rule. `SolveMetrics` (`gram_lightning/metrics.py`) sums what the scored samples found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch

from gram_lightning.keyed_noise import sample_keys
from gram_lightning.losses import IGNORE_LABEL
from gram_lightning.samples import Samples
from gram_lightning.selection import SelectionRule, select
from gram_lightning.task import Task

if TYPE_CHECKING:
    from gram_lightning.base_module import BaseModule


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


@dataclass
class Readout:
    """What a model produced for its B * N rows at one depth, before the task judges it."""

    preds: torch.Tensor  # (B*N, L_out) tokens
    steps: torch.Tensor  # (B*N,) steps each row ran: supervision steps (GRAM), denoising steps (MDLM), 1 (AR)
    value: torch.Tensor | None = None  # (B*N,) the value head's (LPRM) score; None for a model without one
    halt_logits: torch.Tensor | None = None  # (B*N,) the halt head's logit; None for a model without one
    # (B*N, L_out, V) the output head's logits behind `preds` (a loss's normaliser turns them into probabilities:
    # `losses.token_log_probs`); None for a model that does not give them
    logits: torch.Tensor | None = None


@torch.no_grad()
def sample_depths(
    module: BaseModule,
    batch: dict[str, torch.Tensor],
    num_samples: int,
    depths: list[int],
    selection: SelectionRule = "vote",
    posterior: bool = False,
) -> Iterator[tuple[int, Samples]]:
    """Sample `num_samples` outputs per input in one batch at every depth of `depths`, yielding (depth, scored
    samples). The model reads the depths its own way (`BaseModule.generate`): GRAM rolls out to max(depths) once
    and reads every depth on the way; MDLM runs one S-step chain per depth; AR has no depth and yields its one
    draw at each.

    With the batch's `index` every row's randomness is a function of (inference_seed, index, sample number): an
    input gets the same samples in any batch, at any N (the first 8 of N=32 are the N=8 samples) and on any DDP
    rank. Posterior rollouts (GRAM: they see the label) draw from a separate stream.
    """
    inputs, labels = batch["inputs"], batch.get("labels")
    N = num_samples
    wanted = sorted(set(depths))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"depths must be step counts >= 1, got {depths}")
    repeat = lambda t: None if t is None else t.repeat_interleave(N, dim=0)  # noqa: E731
    rows_in, rows_labels = repeat(inputs), repeat(labels)  # (B*N, L_in), (B*N, L_out)
    keys = sample_keys(module.inference_seed, batch["index"], N, stream=int(posterior)) if "index" in batch else None
    readouts = module.generate(rows_in, wanted, keys, repeat(batch.get("puzzle_ids")), rows_labels if posterior else None)
    for depth, readout in readouts:
        yield depth, score(module.task, readout, rows_in, rows_labels, N, selection)


def score(task: Task, out: Readout, inputs: torch.Tensor, labels: torch.Tensor | None, num_samples: int,
          selection: SelectionRule) -> Samples:
    """Judge the B x N outputs of one depth with the task and pick one per input.

    Args:
        task: Checks the outputs (without a checker: equality with the label), counts their violations and gives
            their canonical forms, which the vote compares.
        out: The outputs of the B * N rows, the N of an input adjacent.
        inputs: (B*N, L_in) tokens; labels (B*N, L_out) or None (needed only by a task without a checker).
        num_samples: N.
        selection: vote, lprm, halt or first; a model without value and halt heads supports vote and first
            (its missing scores count as 0: the vote then breaks ties by the first sample).
    """
    preds = out.preds  # (B*N, L_out)
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
    zeros = torch.zeros(B, N, device=preds.device)
    value = zeros if out.value is None else out.value.view(B, N)
    halt_logits = zeros if out.halt_logits is None else out.halt_logits.view(B, N)
    choice = select(keys, selection, value, halt_logits)
    return Samples(preds, keys, value, halt_logits, is_solution.view(B, N),
                   None if violations is None else violations.view(B, N), out.steps.view(B, N), choice.index, choice.score)
