"""TRM's adaptive computation time in training: each batch row carries its latent state from one optimizer step
to the next, one supervision step at a time, until it halts; then it starts a fresh example from z0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gram_lightning.model import GRAM


@dataclass
class Carry:
    """Per-row training state that persists across optimizer steps (TRM's ACT carry)."""

    h: torch.Tensor  # (B, L_total, D)
    l: torch.Tensor  # (B, L_total, D)
    batch: dict[str, torch.Tensor]  # the example each row is working on
    steps: torch.Tensor  # (B,) supervision steps taken on it
    halted: torch.Tensor  # (B,) replace the row with a fresh example at the next step
    summaries: torch.Tensor | None = None  # (B, N_sup, D) the judged h[:, 0] of each step of the row's trajectory,
    # kept for a value head that learns the trajectory's final reward (GRAMModule value_target="final")

    @classmethod
    def start(cls, net: GRAM, batch: dict[str, torch.Tensor]) -> Carry:
        """A carry for `batch`'s rows, all of them halted: the first `refresh` gives each its example."""
        B = batch["inputs"].shape[0]
        device = batch["inputs"].device
        h, l = net.initial_state(B)
        return cls(h.clone(), l.clone(), dict(batch), torch.zeros(B, dtype=torch.long, device=device),
                   torch.ones(B, dtype=torch.bool, device=device))

    def refresh(self, net: GRAM, batch: dict[str, torch.Tensor]) -> None:
        """Rows that halted at the last step start the example of `batch` in their row from z0."""
        fresh = self.halted
        h0, l0 = net.initial_state(fresh.shape[0])
        self.h = torch.where(fresh[:, None, None], h0.to(self.h.dtype), self.h)
        self.l = torch.where(fresh[:, None, None], l0.to(self.l.dtype), self.l)
        self.steps = torch.where(fresh, 0, self.steps)
        self.batch = {k: torch.where(fresh.view(-1, *[1] * (v.dim() - 1)), v, self.batch[k]) for k, v in batch.items()}

    def state(self) -> dict[str, Any]:
        """The carry as checkpoint entries (plain tensors)."""
        state = {"h": self.h, "l": self.l, "steps": self.steps, "halted": self.halted, "batch": dict(self.batch)}
        if self.summaries is not None:
            state["summaries"] = self.summaries
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Carry:
        to = lambda t: t.to(device)  # noqa: E731
        summaries = state.get("summaries")
        return cls(to(state["h"]), to(state["l"]), {k: to(v) for k, v in state["batch"].items()}, to(state["steps"]),
                   to(state["halted"]), None if summaries is None else to(summaries))


def halt_decision(halt_logits: torch.Tensor, steps: torch.Tensor, N_sup: int, act: bool,
                  exploration_prob: float) -> torch.Tensor:
    """(B,) which rows stop after this step: at N_sup steps, or, with `act`, when the halt head fires (logit > 0)
    after a minimum depth. With probability `exploration_prob` a row's minimum depth is random in [2, N_sup], so
    the halt head sees later steps too.

    Args:
        halt_logits: (B,) the halt head's logits at this step.
        steps: (B,) supervision steps each row has taken, this one included.
    """
    halted = steps >= N_sup
    if act and N_sup > 1:
        halted = halted | (halt_logits > 0)
        explore = torch.rand_like(halt_logits) < exploration_prob
        min_steps = torch.randint_like(steps, 2, N_sup + 1) * explore
        halted = halted & (steps >= min_steps)
    return halted
