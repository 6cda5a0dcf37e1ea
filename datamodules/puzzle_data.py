"""What the puzzle DataModules share: batch-at-once datasets, an augmenting collate, and the loaders."""

from __future__ import annotations

from typing import Any, Callable

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def require(ok: bool, message: str) -> None:
    """Argument checks of the DataModules: a ValueError naming the bad argument, raised at construction."""
    if not ok:
        raise ValueError(message)


class PuzzleBatches(Dataset):
    """Map-style dataset over one split whose ``__getitems__`` builds whole batches at once.

    Item ``i`` is example ``i % P``, so ``repeat`` times as many items make each example appear ``repeat``
    times per epoch (each time with a freshly drawn label and augmentation). Subclasses build a batch from
    the example indices in `batch`; with ``random_label`` they draw one of the example's solutions.
    """

    def __init__(self, data: Any, *, repeat: int = 1, random_label: bool = False) -> None:
        self.data, self.repeat, self.random_label = data, repeat, random_label

    def __len__(self) -> int:
        return len(self.data) * self.repeat

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.batch(torch.as_tensor(indices, dtype=torch.long) % len(self.data))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def solution_choice(self, counts: torch.Tensor) -> torch.Tensor:
        """(B,) which stored solution each row takes: uniformly random, or the first."""
        if self.random_label:
            return (torch.rand(len(counts)) * counts).long().clamp_max(counts - 1)
        return torch.zeros_like(counts)


class AugmentingCollate:
    """Collate function for batches made by `PuzzleBatches.__getitems__`: optional augmentation.

    A class rather than a closure so that DataLoader workers can pickle it (`augment` must be a
    module-level function).
    """

    def __init__(self, augment: Augment | None) -> None:
        self.augment = augment

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.augment is not None:
            batch["inputs"], batch["labels"] = self.augment(batch["inputs"], batch["labels"])
        return batch


class PuzzleDataModule(LightningDataModule):
    """Train / val / test / predict loaders over ``self.splits`` (filled by the subclass's `setup`).

    Subclasses set ``splits``, ``batch_size``, ``eval_batch_size``, ``num_workers``, ``epoch_multiplier`` and
    ``augment`` and implement `batches` and `augment_fn`. Predict runs on the test split.
    """

    splits: dict[str, Any]
    batch_size: int
    eval_batch_size: int
    num_workers: int
    epoch_multiplier: int
    augment: bool

    def batches(self, data: Any, *, repeat: int = 1, random_label: bool = False) -> PuzzleBatches:
        raise NotImplementedError

    def augment_fn(self) -> Augment:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        data = self._split("train")
        dataset = self.batches(data, repeat=self.epoch_multiplier, random_label=True)
        if len(dataset) < self.batch_size:
            raise ValueError(
                f"an epoch has {len(dataset)} samples ({len(data)} examples x epoch_multiplier "
                f"{self.epoch_multiplier}), fewer than batch_size={self.batch_size}: no full batch"
            )
        return self._loader(dataset, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.batches(self._split("val")), self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.batches(self._split("test")), self.eval_batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def _loader(self, dataset: PuzzleBatches, batch_size: int, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=AugmentingCollate(self.augment_fn() if train and self.augment else None),
        )

    def _split(self, split: str) -> Any:
        if not self.splits:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run yet")
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(self.splits)}")
        return self.splits[split]
