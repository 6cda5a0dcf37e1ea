"""ARC examples and batches: which pair each example shows under which variant, materialised on canvases when a
batch is drawn (variant, random translation in training), so that 1000 variants of every task cost no disk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datamodules.arc.grids import CANVAS, PAD, SEQ_LEN, Variant, draw_on_canvas
from datamodules.puzzle_data import PuzzleBatches


@dataclass
class ARCExamples:
    """One split: which pair each example shows, under which puzzle id (task and variant), for which group."""

    pair: np.ndarray  # (E,) index into ARCData.pairs
    puzzle_id: np.ndarray  # (E,) task_index * num_variants + variant_index
    group: np.ndarray  # (E,) test input the example votes for; -1 in training

    def __len__(self) -> int:
        return len(self.pair)

    def subset(self, mask: np.ndarray) -> ARCExamples:
        return ARCExamples(self.pair[mask], self.puzzle_id[mask], self.group[mask])


@dataclass
class ARCData:
    """What the batches are made from: every pair's grids and every puzzle id's variant."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    variants: list[Variant | None]  # by puzzle id; None for the unused rows of symmetric tasks


class ARCBatches(PuzzleBatches):
    """Materialises a batch: variant applied to both grids, a random translation (training), canvases."""

    def __init__(self, data: ARCData, examples: ARCExamples, *, repeat: int = 1, translate: bool = False):
        super().__init__(examples, repeat=repeat)
        self.arc, self.translate = data, translate

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        ex: ARCExamples = self.data
        idx = index.numpy()
        inputs = np.full((len(idx), CANVAS, CANVAS), PAD, dtype=np.uint8)
        labels = np.full((len(idx), CANVAS, CANVAS), PAD, dtype=np.uint8)
        for row, i in enumerate(idx):
            variant = self.arc.variants[ex.puzzle_id[i]]
            grid_in, grid_out = (variant.apply(g) for g in self.arc.pairs[ex.pair[i]])
            offset = (0, 0)
            if self.translate:
                # The same shift for input and output, keeping both on the canvas (torch's RNG: seeded per worker).
                room_r = CANVAS - max(grid_in.shape[0], grid_out.shape[0])
                room_c = CANVAS - max(grid_in.shape[1], grid_out.shape[1])
                offset = (int(torch.randint(room_r + 1, ())), int(torch.randint(room_c + 1, ())))
            # The pairs were checked when the tasks were read: no per-example re-check here.
            draw_on_canvas(inputs[row], grid_in, offset)
            draw_on_canvas(labels[row], grid_out, offset)
        return {
            "inputs": torch.from_numpy(inputs.reshape(-1, SEQ_LEN)).long(),
            "labels": torch.from_numpy(labels.reshape(-1, SEQ_LEN)).long(),  # PAD (0) is the ignored label: the loss covers grid + EOS
            "puzzle_ids": torch.from_numpy(ex.puzzle_id[idx]).long(),
            "group": torch.from_numpy(ex.group[idx]).long(),
        }
