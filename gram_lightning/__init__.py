"""gram-lightning: Generative Recursive reAsoning Models (GRAM) and their deterministic ancestors in Lightning."""

from gram_lightning.model import GRAM
from gram_lightning.module import GRAMModule

__all__ = ["GRAM", "GRAMModule"]
__version__ = "0.1.0"
