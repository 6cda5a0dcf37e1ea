"""gram-lightning: Generative Recursive reAsoning Models (GRAM) and their deterministic ancestors in Lightning."""

from gram_lightning.model import GRAM
from gram_lightning.module import GRAMModule
from gram_lightning.task import Task

__all__ = ["GRAM", "GRAMModule", "Task"]
__version__ = "0.1.0"
