"""Training steps with a NaN or infinite loss or gradient norm: stop the run before the optimizer step, or skip
the step (`GRAMModule(nonfinite=...)`)."""

from __future__ import annotations

from typing import Callable, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from gram_lightning.errors import GramUserError, NonFiniteError, first_nonfinite
from gram_lightning.losses import LOSS_TERMS

AnyRank = Callable[[bool], bool]  # a flag of this DDP rank -> whether any rank raised it


class NonFiniteGuard:
    """Checks a training step's loss and gradient norm (one host sync each). Under "stop" a non-finite value
    raises NonFiniteError naming the step and the term; under "skip" the step is counted and `drop_gradients` says
    that its gradients must not reach the optimizer. All DDP ranks decide together (`any_rank`), or the ranks that
    go on would wait forever for the one that stopped."""

    def __init__(self, mode: Literal["stop", "skip"]):
        if mode not in ("stop", "skip"):
            raise GramUserError(f"nonfinite must be 'stop' or 'skip', got {mode!r}")
        self.mode = mode
        self.skipped_steps = 0
        self.drop_gradients = False

    def loss(self, terms: dict[str, torch.Tensor], step: int, any_rank: AnyRank) -> bool:
        """Whether this step's loss ("loss" of `terms`) is NaN or infinite on any rank."""
        loss = terms["loss"].detach()
        here = not bool(torch.isfinite(loss))
        if not any_rank(here):
            return False
        bad = [f"{k} = {terms[k].item()}" for k in LOSS_TERMS if k in terms and not bool(torch.isfinite(terms[k]))]
        if bad:
            what = f"non-finite loss term {', '.join(bad)}"
        elif here:
            what = f"non-finite loss {loss.item()} from finite terms (the weighted sum overflowed)"
        else:
            what = "non-finite loss on another DDP rank"
        self._bad_step(what, step)
        return True

    def gradients(self, grads: dict[str, torch.Tensor], pending: list[torch.Tensor], step: int, any_rank: AnyRank) -> bool:
        """Whether the norm of the gradients (by parameter name), with the puzzle embeddings' `pending` sparse
        ones, is NaN or infinite on any rank."""
        tensors = [*grads.values(), *pending]
        norm = torch.nn.utils.get_total_norm(tensors) if tensors else None
        here = norm is not None and not bool(torch.isfinite(norm))
        if not any_rank(here):
            return False
        if here:
            names = first_nonfinite(grads) or ["net.puzzle_embed (its sparse gradient)"]
            what = f"non-finite gradient norm {norm.item()} (in {', '.join(names)}) from a finite loss"
        else:
            what = "non-finite gradient norm on another DDP rank"
        self._bad_step(what, step)
        return True

    def _bad_step(self, what: str, step: int) -> None:
        if self.mode == "stop":
            raise NonFiniteError(
                f"training step {step}: {what}. Stopped before the optimizer step, so no checkpoint holds weights of "
                f"this step; lower the learning rate or raise warmup_steps, or resume from the last checkpoint with "
                f"--model.nonfinite skip"
            )
        if self.skipped_steps == 0:  # the later ones are counted in train/skipped_steps
            rank_zero_warn(f"training step {step} skipped: {what}; the run goes on (nonfinite='skip')")
        self.skipped_steps += 1
        self.drop_gradients = True
