"""Per-puzzle learned embeddings (ARC's task identities), trained sparsely by sign-SGD as in TRM.

ARC gives every (task, augmentation variant) pair its own embedding row: about 800,000 rows of width D.
A dense `nn.Embedding` under AdamW would carry two optimizer moments for every row (4.8 GB at D 512) and
produce a dense gradient of the whole table each step, although a batch touches at most 768 rows. So the
table is a buffer, not a parameter: it is saved in checkpoints and moved with the module, but the main
optimizer, weight decay and DDP's gradient all-reduce never see it. The rows a batch reads become a leaf
tensor whose gradient a hook collects; `step` then applies TRM's update to those rows alone:

    w[i] <- w[i] * (1 - lr * weight_decay) - lr * sign(sum of the batch's gradients for row i)

Under DDP every rank gathers all ranks' (row, gradient) pairs first, so all ranks apply the same update
and the tables stay equal without a broadcast (the module keeps the table out of DDP's buffer broadcast).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class PuzzleEmbedding(nn.Module):
    """Args:
    num_ids: Rows of the table (the DataModule's ``num_puzzle_ids``).
    dim: Width of a row.
    """

    def __init__(self, num_ids: int, dim: int):
        super().__init__()
        if num_ids < 1 or dim < 1:
            raise ValueError(f"PuzzleEmbedding: num_ids and dim must be >= 1, got {num_ids}, {dim}")
        self.num_ids, self.dim = num_ids, dim
        self.register_buffer("weight", torch.zeros(num_ids, dim))  # TRM: zero init
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids (B,), their gradients (B, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,) -> rows (B, dim); in training the rows' gradient is kept for `step`."""
        if ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"puzzle_ids must be integers, got {ids.dtype}")
        out_of_range = (ids < 0) | (ids >= self.num_ids)
        if out_of_range.any():  # one host sync per call, on every forward of training and sampling
            bad = ids[out_of_range][0].item()
            raise ValueError(
                f"puzzle id {bad} is outside the model's {self.num_ids} puzzle embeddings: the data has more "
                f"tasks or variants than the checkpoint was trained with"
            )
        rows = self.weight[ids]  # (B, dim)
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_()
            ids = ids.detach()
            rows.register_hook(lambda grad: self._pending.append((ids, grad.detach().float())))
        return rows

    @property
    def has_gradient(self) -> bool:
        return bool(self._pending)

    def zero_grad(self) -> None:
        self._pending.clear()

    def pending_gradients(self) -> list[torch.Tensor]:
        """This rank's gradients of the rows read since the last step (checked for NaN before `step`)."""
        return [g for _, g in self._pending]

    @torch.no_grad()
    def step(self, lr: float, weight_decay: float) -> None:
        """Sign-SGD on the rows read since the last step (summed over micro-batches and DDP ranks)."""
        if not self._pending:
            return
        ids = torch.cat([i for i, _ in self._pending])  # (M,)
        grads = torch.cat([g for _, g in self._pending])  # (M, dim)
        self._pending.clear()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids, grads = _all_gather(ids), _all_gather(grads)
        rows, inverse = ids.unique(return_inverse=True)
        summed = torch.zeros(len(rows), self.dim, device=grads.device, dtype=grads.dtype)
        summed.index_add_(0, inverse, grads)
        updated = self.weight[rows] * (1.0 - lr * weight_decay) - lr * summed.sign()
        self.weight[rows] = updated.to(self.weight.dtype)


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` over the ranks (equal shapes: every rank trains on the same batch size)."""
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)
