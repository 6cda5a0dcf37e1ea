"""Quality of a set of unconditional samples of discrete outputs (boards): validity, uniqueness, novelty."""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def row_hashes(tokens: torch.Tensor) -> torch.Tensor:
    """(R, L) tokens -> (R,) int64 content hashes (64-bit BLAKE2b: collisions are negligible at 10^6 rows)."""
    rows = np.ascontiguousarray(tokens.detach().cpu().numpy().astype(np.int16))
    return torch.tensor([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little", signed=True) for row in rows], dtype=torch.long)


class SampleSetMetrics(Metric):
    """What a set of generated outputs looks like as a whole, summed over the batches and DDP ranks.

    - validity: fraction of samples the task's checker accepts (Sudoku: every row, column and box a
      permutation of 1..n).
    - unique_fraction: distinct samples / samples.
    - unique_valid: distinct valid samples / samples.
    - novel_fraction: valid samples that are not known / valid samples: the share of correct outputs
      the model did not memorize. A sample is known when it equals a `reference` row, or, with ``known``,
      when ``known`` says so (e.g. equivalent to a training target under the training augmentation,
      which shows the model every such image of a target).

    Args:
        check: (inputs (B, L_in), samples (B, L)) -> (B,) bool, the task's checker.
        reference: Token rows a sample is compared with for novelty (e.g. all training targets).
        known: (B, L) samples -> (B,) bool, replacing the comparison with ``reference``.
        Without either, novelty is not reported.
    """

    full_state_update = False
    headline = "validity"  # the value the progress bar shows during validation

    def __init__(
        self,
        check: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        reference: torch.Tensor | Iterable | None = None,
        known: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if reference is not None and known is not None:
            raise ValueError("give reference (novelty by equality) or known (a custom test), not both")
        self.check = check
        self.reference = None if reference is None else set(row_hashes(torch.as_tensor(reference)).tolist())
        self.known = known
        self.add_state("hashes", default=[], dist_reduce_fx="cat")
        self.add_state("valid", default=[], dist_reduce_fx="cat")
        self.add_state("novel", default=[], dist_reduce_fx="cat")

    @property
    def reports_novelty(self) -> bool:
        return self.reference is not None or self.known is not None

    def update(self, batch: dict[str, torch.Tensor], samples: torch.Tensor) -> None:
        """batch["inputs"] (B, L_in) and the samples (B, L) drawn for them."""
        valid = self.check(batch["inputs"], samples).bool().cpu()
        hashes = row_hashes(samples)
        self.valid.append(valid.to(self.device))
        self.hashes.append(hashes.to(self.device))
        if self.reports_novelty:
            self.novel.append((valid & ~self._is_known(samples, hashes, valid)).to(self.device))

    def _is_known(self, samples: torch.Tensor, hashes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the sample is known (see the class docstring); only valid samples are asked."""
        if self.known is None:
            return torch.tensor([h in self.reference for h in hashes.tolist()], dtype=torch.bool)
        out = torch.zeros(len(samples), dtype=torch.bool)
        rows = valid.nonzero().view(-1)
        if len(rows):
            out[rows] = torch.as_tensor(self.known(samples.detach().cpu()[rows])).bool().view(-1)
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.hashes:
            return {"validity": torch.tensor(0.0), "unique_fraction": torch.tensor(0.0), "unique_valid": torch.tensor(0.0)}
        hashes = dim_zero_cat(self.hashes).cpu()
        valid = dim_zero_cat(self.valid).bool().cpu()
        n = max(len(hashes), 1)
        out = {
            "validity": valid.float().sum() / n,
            "unique_fraction": torch.tensor(len(torch.unique(hashes)) / n),
            "unique_valid": torch.tensor(len(torch.unique(hashes[valid])) / n),
        }
        if self.reports_novelty:
            novel = dim_zero_cat(self.novel).bool().cpu()
            out["novel_fraction"] = novel.float().sum() / max(int(valid.sum()), 1)
        return {k: v.float() for k, v in out.items()}
