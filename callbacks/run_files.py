"""Where a callback puts the files of a run."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def run_file(trainer: L.Trainer, filename: str) -> Path:
    """`filename` inside the run's log dir.

    A collective under DDP (trainer.log_dir broadcasts rank 0's path): every rank must call it, so
    call it before any `if trainer.is_global_zero`, or the ranks hang or lose each other.
    """
    return Path(trainer.log_dir or trainer.default_root_dir) / filename
