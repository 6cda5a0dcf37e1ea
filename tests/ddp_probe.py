"""A callback the DDP test loads into `gram fit`: each rank draws the model's noise once, rank 0 writes them."""

import json

import lightning as L
import torch


class RecordRankNoise(L.Callback):
    def __init__(self, path: str):
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx != 0:
            return
        # Same u on every rank: the draws differ only if the ranks' noise streams do.
        u = torch.zeros(1, pl_module.net.total_len, pl_module.net.hidden_size, device=pl_module.device)
        eps = pl_module.net.sample_noise(u, "prior", None, 0.0).eps[0, 0, :4]
        gathered = trainer.strategy.all_gather(eps)  # (world, 4)
        if trainer.is_global_zero:
            with open(self.path, "w") as f:
                json.dump(gathered.tolist(), f)
