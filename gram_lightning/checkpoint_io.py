"""Checkpoints that a kill at any moment leaves whole: every `*.ckpt` on disk is a complete, finite checkpoint.

Lightning's TorchCheckpointIO writes through an fsspec transaction whose temporary file lies in the system's
temp folder; when that is another file system than the checkpoint folder, the final "move" is a copy, and a kill
during it leaves a truncated file under the checkpoint's final name. `AtomicCheckpointIO` writes next to the
target, fsyncs and renames (gram_lightning.atomic). The `gram` command installs it for every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from gram_lightning.atomic import atomic_writer, remove_stale_temp_files
from gram_lightning.errors import NonFiniteError, checkpoint_nonfinite


def _is_local(path: _PATH) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes each checkpoint to a temporary file in the target's folder, fsyncs it and
    renames it over the target, and refuses to write NaN / infinite weights over a finite checkpoint.

    Temporary files of writers killed earlier are removed from a folder before this process first writes to it.
    Remote paths (s3://, gs://, ...) go through Lightning's own writer.

    Args:
        check_finite: Refuse (NonFiniteError) to save a checkpoint whose weights hold a NaN or an infinity; costs
            one pass over the weights per save.
    """

    def __init__(self, check_finite: bool = True) -> None:
        super().__init__()
        self.check_finite = check_finite
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        bad = checkpoint_nonfinite(checkpoint) if self.check_finite else []
        if bad:
            raise NonFiniteError(
                f"refusing to write checkpoint {path}: its weights hold NaN or infinite values "
                f"({', '.join(bad)}); the checkpoints written before stay as they are"
            )
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(str(path).removeprefix("file://"))
        folder = target.parent.resolve()
        if folder not in self._cleaned:
            removed = remove_stale_temp_files(folder)
            if removed:
                rank_zero_info(f"removed {len(removed)} temporary file(s) of killed checkpoint writes from {folder}")
            self._cleaned.add(folder)
        with atomic_writer(target) as f:
            torch.save(checkpoint, f)


def install_atomic_checkpoint_io(trainer: Any) -> bool:
    """Give `trainer` an AtomicCheckpointIO in place of Lightning's default TorchCheckpointIO, also as the writer
    an AsyncCheckpointIO plugin wraps when given none. A CheckpointIO plugin the user chose (`--trainer.plugins`)
    is kept; returns whether the default was replaced."""
    strategy = trainer.strategy
    # The private attribute, not the property: reading the property fills in a TorchCheckpointIO.
    io = getattr(strategy, "_checkpoint_io", None)
    if io is None or type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
        return True
    if isinstance(io, _WrappingCheckpointIO) and getattr(io, "_checkpoint_io", None) is None:
        io.checkpoint_io = AtomicCheckpointIO()
        return True
    return False
