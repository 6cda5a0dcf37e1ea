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
    - novel_fraction: valid samples that are not in `reference` (the training targets) / valid samples:
      the share of correct outputs the model did not memorize.

    Args:
        check: (inputs (B, L_in), samples (B, L)) -> (B,) bool, the task's checker.
        reference: Token rows to compare against for novelty (e.g. all training targets); None skips it.
    """

    full_state_update = False
    headline = "validity"  # the value the progress bar shows during validation

    def __init__(self, check: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], reference: torch.Tensor | Iterable | None = None, **kwargs):
        super().__init__(**kwargs)
        self.check = check
        self.reference = None if reference is None else set(row_hashes(torch.as_tensor(reference)).tolist())
        self.add_state("hashes", default=[], dist_reduce_fx="cat")
        self.add_state("valid", default=[], dist_reduce_fx="cat")

    def update(self, batch: dict[str, torch.Tensor], samples: torch.Tensor) -> None:
        """batch["inputs"] (B, L_in) and the samples (B, L) drawn for them."""
        self.valid.append(self.check(batch["inputs"], samples).to(self.device))
        self.hashes.append(row_hashes(samples).to(self.device))

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
        if self.reference is not None:
            valid_hashes = hashes[valid].tolist()
            novel = sum(h not in self.reference for h in valid_hashes)
            out["novel_fraction"] = torch.tensor(novel / max(len(valid_hashes), 1))
        return {k: v.float() for k, v in out.items()}
