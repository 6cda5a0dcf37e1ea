"""What the puzzle DataModules share: batch-at-once datasets, an augmenting collate, and the loaders with their
arguments."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from gram_lightning.errors import GramUserError

# A training augmentation: (inputs (B, L_in), labels (B, L_out)[, generator]) -> both transformed, with one random
# transform per row applied to its input and its label alike. The randomness comes from the optional
# torch.Generator, else from torch's global generator (which DataLoader workers seed differently, and
# `PuzzleBatches` per batch when it trains).
Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def require(ok: bool, message: str) -> None:
    """Argument checks of the DataModules: a GramUserError (a ValueError) naming the bad argument, raised at
    construction."""
    if not ok:
        raise GramUserError(message)


class PuzzleBatches(Dataset):
    """Map-style dataset over one split whose ``__getitems__`` builds whole batches at once.

    Item ``i`` is example ``i % P``, so ``repeat`` times as many items make each example appear ``repeat``
    times per epoch (each time with a freshly drawn label and augmentation). Subclasses build a batch from
    the example indices in `batch`; with ``random_label`` they draw one of the example's solutions.
    """

    def __init__(self, data: Any, *, repeat: int = 1, random_label: bool = False) -> None:
        self.data, self.repeat, self.random_label = data, repeat, random_label
        # Training: the augmentation, and the seed that makes a batch's random draws (label choice, augmentation)
        # a function of the items it holds, not of the global RNG (set by PuzzleDataModule's train loader).
        self.augment: Augment | None = None
        self.seed: int | None = None

    def __len__(self) -> int:
        return len(self.data) * self.repeat

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        if self.seed is None:
            return self._materialise(indices)
        # A resumed run draws the same batch at the same place as an uninterrupted one, in any worker, and the
        # global RNG (the model's noise) is left where it was.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(batch_seed(self.seed, indices))  # the CPU generator alone
            return self._materialise(indices)

    def _materialise(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        pad = index < 0  # rows `EvenShards` adds to even out the ranks
        rows = torch.where(pad, 0, index) % len(self.data)
        batch = self.batch(rows)
        batch.setdefault("index", rows)  # the input's row in its split: it keys the evaluation noise
        if pad.any():
            batch["pad"] = pad
        if self.augment is not None:
            batch["inputs"], batch["labels"] = self.augment(batch["inputs"], batch["labels"])
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def solution_choice(self, counts: torch.Tensor) -> torch.Tensor:
        """(B,) which stored solution each row takes: uniformly random, or the first."""
        if self.random_label:
            return (torch.rand(len(counts)) * counts).long().clamp_max(counts - 1)
        return torch.zeros_like(counts)


def batch_seed(seed: int, items: Sequence[int]) -> int:
    """A 63-bit seed from `seed` and the items of a batch, in order."""
    digest = hashlib.blake2b(np.asarray(items, dtype=np.int64).tobytes(), digest_size=8,
                             key=int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(digest.digest(), "little") >> 1


class ResumableShuffle(Sampler[int]):
    """Training order of a single-process run: epoch e is a permutation drawn from (seed, e) alone, and a run
    resumed in the middle of an epoch starts at the batch the checkpoint had reached, so that it sees the batches
    an uninterrupted run would. `position` says (epoch, batches of it already trained) when an epoch starts.

    Args:
        size: Items per epoch.
        batch_size: Items per batch (a batch trained is this many items skipped on resuming).
        seed: Seed of the permutations.
        position: Called when iteration starts: (epoch, batches of that epoch already trained).
    """

    def __init__(self, size: int, batch_size: int, seed: int, position: Callable[[], tuple[int, int]]) -> None:
        self.size, self.batch_size, self.seed, self.position = size, batch_size, seed, position

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        epoch, done = self.position()
        generator = torch.Generator().manual_seed(batch_seed(self.seed, [epoch]))
        order = torch.randperm(self.size, generator=generator)
        return iter(order[done * self.batch_size:].tolist())


class EvenShards(DistributedSampler):
    """Evaluation order under DDP: rank r of W gets inputs r, r + W, r + 2W, ... and, where it has one input fewer
    than rank 0, a `-1`: a padding row that the batch marks (`pad`) and the module drops.

    Lightning's own DistributedSampler evens the ranks out with repeated inputs instead, which the summed metrics
    (conflict edges, votes, coverage) would count twice.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)

    def __iter__(self):
        own = list(range(self.rank, len(self.dataset), self.num_replicas))
        return iter(own + [-1] * (self.num_samples - len(own)))


class ResumableLoader(DataLoader):
    """The training loader of a single-process run, marked resumable for Lightning: its position lives in the
    trainer's own progress counters, which `ResumableShuffle` reads when an epoch starts, so the loader has no
    state of its own to save. Without the mark Lightning warns, wrongly, that a run resumed mid-epoch is unreliable
    (tests/test_reliability.py shows it is exact)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


def whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collate function of batches `PuzzleBatches.__getitems__` made whole (augmented, for training); a module-level
    function so that DataLoader workers can pickle it."""
    return batch


class PuzzleDataModule(LightningDataModule):
    """Train / val / test / predict loaders over ``self.splits`` (filled by the subclass's `setup`).

    Subclasses pass the arguments below on from their own ``__init__`` (and call ``save_hyperparameters`` there,
    which records the arguments of the ``__init__`` that calls it), fill ``splits`` in `setup` and implement
    `batches`, and `augment_fn` when they augment. Predict runs on the test split.

    Args:
        batch_size: Training batch size.
        eval_batch_size: Validation / test batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of the task's data (generation, splits, subsets); what it seeds is the task's to say.
        epoch_multiplier: One training epoch draws each example this many times.
        augment: Whether training batches go through `augment_fn`.
        num_proc: Processes that build the data, for tasks that build it in parallel.
        cache_dir: Folder of the cached datasets (one subfolder per set of parameters), for tasks that cache.
    """

    splits: dict[str, Any]

    def __init__(
        self,
        *,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        epoch_multiplier: int = 1,
        augment: bool = False,
        num_proc: int = 1,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
        require(eval_batch_size is None or eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {eval_batch_size}")
        require(num_workers >= 0, f"num_workers must be >= 0, got {num_workers}")
        require(seed >= 0, f"seed must be >= 0 (it seeds numpy generators), got {seed}")
        require(epoch_multiplier >= 1, f"epoch_multiplier must be >= 1, got {epoch_multiplier}")
        require(num_proc >= 1, f"num_proc must be >= 1, got {num_proc}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers, self.seed = num_workers, seed
        self.epoch_multiplier, self.augment = epoch_multiplier, augment
        self.num_proc, self.cache_dir = num_proc, cache_dir
        self.splits = {}

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
        trainer = self.trainer
        distributed = trainer is not None and trainer.world_size > 1
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's
        sampler: Sampler[int] | None = None
        if train:
            dataset.seed = seed
            dataset.augment = self.augment_fn() if self.augment else None
            # Under DDP Lightning shards a plain shuffle with its DistributedSampler (resumed at an epoch start).
            if not distributed:
                sampler = ResumableShuffle(len(dataset), batch_size, seed, self._train_position)
        elif distributed:  # evaluation: every input scored once
            sampler = EvenShards(dataset, trainer.world_size, trainer.global_rank)
        loader = ResumableLoader if isinstance(sampler, ResumableShuffle) else DataLoader
        return loader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=whole_batch,
            # Its own generator: creating an iterator (worker seeds) draws nothing from the global RNG, the
            # model's noise, so that a resumed run's noise continues as an uninterrupted run's would.
            generator=torch.Generator().manual_seed(seed),
        )

    def _train_position(self) -> tuple[int, int]:
        """(epoch, batches of it trained) when a training epoch starts: a resumed run restarts mid-epoch."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def _split(self, split: str) -> Any:
        if not self.splits:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run yet")
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(self.splits)}")
        return self.splits[split]
