"""The generative baselines of the paper's comparison, behind the same module contract as GRAM (`BaseModule`):
an autoregressive prefix-LM (`ar.py`) and a masked diffusion model, MDLM (`mdlm.py`). Add one after a task config:

    gram fit --config experiments/nqueens8_cpu.yaml --config experiments/baselines/ar.yaml
    gram fit --config experiments/nqueens8_cpu.yaml --config experiments/baselines/mdlm.yaml
"""

from gram_lightning.baselines.ar import ARModule, PrefixLM
from gram_lightning.baselines.mdlm import MaskedDenoiser, MDLMModule

__all__ = ["ARModule", "MDLMModule", "MaskedDenoiser", "PrefixLM"]
