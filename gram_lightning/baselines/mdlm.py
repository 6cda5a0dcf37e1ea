"""The masked-diffusion baseline, MDLM (Sahoo et al., 2024, "Simple and Effective Masked Diffusion Language
Models"): an absorbing [MASK] state, the continuous-time masking ELBO, a bidirectional transformer that reads the
input tokens beside the partly masked output, and ancestral sampling in S steps (S a test-time knob, like GRAM's
depth). With a blank input it is the absorbing-state discrete diffusion generator (D3PM-absorbing) of
unconditional Sudoku, and of binarized MNIST, where the denoiser masks single pixels but attends over 2 x 2 pixel
patches through ImageGRAM's conv encoder and decoder (`MaskedDenoiser`, `PatchTransformer`).

The forward process masks each output token independently by time t in [0, 1]: a token stays itself with
probability alpha_t and becomes [MASK] otherwise, alpha_0 = 1, alpha_1 = 0. The denoiser never predicts [MASK]
and never changes an unmasked token (MDLM's SUBS parameterization), so the ELBO is

    -log p(y | x) <= E_t [ w(t) * sum over masked positions l of -log p_theta(y_l | z_t, x) ],  w(t) = -alpha'_t / (1 - alpha_t)

Schedules: log-linear alpha_t = 1 - t (w = 1 / t) and cosine alpha_t = cos(pi t / 2).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from gram_lightning.base_module import PER_RUN_ARGS, BaseModule, hyperparameters_to_ignore
from gram_lightning.baselines.categorical import draw, filter_logits
from gram_lightning.baselines.transformer import PatchTransformer, TokenNet
from gram_lightning.errors import GramUserError
from gram_lightning.keyed_noise import derive, uniform
from gram_lightning.losses import IGNORE_LABEL, agreement, token_cross_entropy
from gram_lightning.sampling import Readout
from gram_lightning.task_net import TaskNet
from gram_lightning.selection import SelectionRule

MDLM_PER_RUN_ARGS = (*PER_RUN_ARGS, "temperature")
# Denoising steps of an image evaluation that names none: about 12 of MNIST's 784 pixels revealed per step, 64
# denoiser passes per sample rather than 784, so that validation stays a fraction of a CPU run's time.
IMAGE_DEFAULT_STEPS = 64
Schedule = Literal["loglinear", "cosine"]


def alpha(t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The probability that a token is still unmasked at time t."""
    if schedule == "loglinear":
        return 1 - t
    if schedule == "cosine":
        return torch.cos(0.5 * math.pi * t)
    raise ValueError(f"schedule must be 'loglinear' or 'cosine', got {schedule!r}")


def elbo_weight(t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """w(t) = -alpha'_t / (1 - alpha_t), the weight of a masked token's cross-entropy at time t."""
    if schedule == "loglinear":
        return 1 / t
    if schedule == "cosine":
        half_pi = 0.5 * math.pi
        return half_pi * torch.sin(half_pi * t) / (1 - torch.cos(half_pi * t))
    raise ValueError(f"schedule must be 'loglinear' or 'cosine', got {schedule!r}")


class MaskedDenoiser(TokenNet):
    """A bidirectional transformer over [x_1 .. x_Lin | z_1 .. z_Lout] -> logits over the task's tokens at the output
    positions; z_l is the output token or [MASK], the token id `mask_id`.

    On square images of pixel tokens (`image_size` set; a task config's ImageGRAM settings image_size, patch_size,
    conv_channels and conv_groups carry over to it, as the width settings do) the denoiser is a `PatchTransformer`:
    pixels are masked one by one, ImageGRAM's conv patch encoder reads the partly masked image into 196 patch
    positions (28 x 28, patch 2), the blocks mix them, the conv decoder writes per-pixel logits. Image generation is
    unconditional: the input (all blank on MNIST) is not read, so it costs no attention positions, and an input
    holding any known pixel is refused.

    Args:
        vocab_size, seq_len, out_len, num_puzzle_ids, hidden_size, num_heads, expansion, num_layers, pos_encoding,
            rope_theta: As `TokenNet`'s.
        image_size: Side of the square image in pixels (seq_len = out_len = image_size^2); None: a token sequence.
        patch_size: Side of the pixel patch folded into one position (images only).
        conv_channels: Channels of the encoder's and decoder's convolutions (images only).
        conv_groups: GroupNorm groups of those convolutions (images only).
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        out_len: int | None = None,
        num_puzzle_ids: int = 0,
        hidden_size: int = 512,
        num_heads: int = 8,
        expansion: float = 4.0,
        num_layers: int = 2,
        pos_encoding: Literal["rope", "none"] = "rope",
        rope_theta: float = 10000.0,
        image_size: int | None = None,
        patch_size: int = 2,
        conv_channels: int = 64,
        conv_groups: int = 8,
    ):
        super().__init__(vocab_size, seq_len, out_len, num_puzzle_ids, hidden_size, num_heads, expansion, num_layers,
                         pos_encoding, rope_theta)
        self.image_size = image_size
        if image_size is None:
            return
        check_image_shape(seq_len, self.out_len, image_size, patch_size, conv_channels, conv_groups)
        # The token body TokenNet built is replaced as a whole: an image's denoiser reads the output pixels only.
        self.body = PatchTransformer(vocab_size + 1, vocab_size, image_size, patch_size, conv_channels, conv_groups,
                                     hidden_size, num_heads, expansion, num_layers, pos_encoding == "rope", rope_theta)

    @property
    def mask_id(self) -> int:
        return self.extra_token  # the absorbing state

    @property
    def default_steps(self) -> int:
        """Denoising steps of an evaluation that names none: one per output token, or on images
        `IMAGE_DEFAULT_STEPS`."""
        return self.out_len if self.image_size is None else min(IMAGE_DEFAULT_STEPS, self.out_len)

    def check_inputs(self, inputs: torch.Tensor) -> None:
        """Refuse inputs this denoiser would silently ignore: on images, any known pixel (inpainting is not
        offered). Called once per batch by `MDLMModule`, not in `forward`: the check reads a GPU tensor on the host,
        which would stall every denoising step."""
        if self.image_size is not None and inputs.any():
            raise GramUserError("MaskedDenoiser on images generates unconditionally and reads no input, but an "
                                "input holds known pixels: only blank inputs (unconditional generation) are offered")

    def forward(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """inputs (B, L_in), z (B, L_out) with [MASK]s -> logits (B, L_out, V) of the clean output tokens. On
        images the input is not read (see `check_inputs`)."""
        if self.image_size is not None:
            return self.body(z)
        tokens = torch.cat([inputs, z], dim=1)
        return self.body(tokens, self.segments.expand(inputs.shape[0], -1))[:, self.seq_len:]


def check_image_shape(seq_len: int, out_len: int, image_size: int, patch_size: int, conv_channels: int,
                      conv_groups: int) -> None:
    """Raise a GramUserError naming the first image setting of `MaskedDenoiser` that does not fit the data."""
    pixels = image_size * image_size
    if image_size < 1 or patch_size < 1:
        raise GramUserError(f"MaskedDenoiser: image_size and patch_size must be >= 1, got {image_size} and "
                            f"{patch_size}")
    if seq_len != pixels or out_len != pixels:
        raise GramUserError(f"MaskedDenoiser: image_size {image_size} means {pixels} pixels, but the data's input and "
                            f"output lengths are {seq_len} and {out_len}: set image_size to the images' side, or null "
                            f"for a task of token sequences")
    if image_size % patch_size:
        raise GramUserError(f"MaskedDenoiser: image_size {image_size} is not a multiple of patch_size {patch_size}")
    if conv_channels < 1 or conv_groups < 1 or conv_channels % conv_groups:
        raise GramUserError(f"MaskedDenoiser: conv_channels {conv_channels} must be a positive multiple of "
                            f"conv_groups {conv_groups}")


class MDLMModule(BaseModule):
    """Trains the MDLM baseline (`MaskedDenoiser`) on the continuous-time masking ELBO and evaluates it by ancestral
    sampling, scored by the task like every model of the project (`BaseModule`). Its depth is the number of
    denoising steps S (`num_steps`; validation uses `sampling_steps`, default L_out: one token unmasked per step
    on average; on images `IMAGE_DEFAULT_STEPS`, 64).

    Args:
        net: The `MaskedDenoiser` (any TaskNet is accepted, so that a task config's GRAM width settings carry over).
        optimizer: Optimizer factory taking the parameters.
        warmup_steps: Linear learning-rate warmup, then constant.
        schedule: The masking schedule: "loglinear" (alpha_t = 1 - t, MDLM's default) or "cosine".
        time_eps: Training times are drawn from [time_eps, 1]: w(t) grows like 1 / t near 0.
        temperature: Softmax temperature of the token draws (1: the model's distribution).
        sampling_steps: Denoising steps S of validation, and of test / predict when `num_steps` is not given (None:
            L_out, one token revealed per step on average; on images 64). Fewer steps reveal several tokens per step,
            at that fraction of the cost.
        val_num_samples: Samples per input in validation (majority vote).
        num_samples: Width N of test / predict.
        num_steps: Denoising steps S of test / predict (None: `sampling_steps`).
        selection: vote or first (no value head).
        inference_seed: Seed of the sampling; an input's samples are a function of it and the input's index.
        nonfinite: "stop" or "skip" a training step with a NaN or infinite loss or gradient norm.
    """

    net_type = MaskedDenoiser
    net_config = "experiments/baselines/mdlm.yaml"

    def __init__(
        self,
        net: TaskNet,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 2000,
        schedule: Schedule = "loglinear",
        time_eps: float = 1e-3,
        temperature: float = 1.0,
        sampling_steps: int | None = None,
        val_num_samples: int = 1,
        num_samples: int = 1,
        num_steps: int | None = None,
        selection: SelectionRule = "vote",
        inference_seed: int = 1234,
        nonfinite: Literal["stop", "skip"] = "stop",
    ):
        if schedule not in ("loglinear", "cosine"):
            raise GramUserError(f"schedule must be 'loglinear' or 'cosine', got {schedule!r}")
        if not 0 < time_eps < 1:
            raise GramUserError(f"time_eps must be in (0, 1), got {time_eps}")
        if temperature <= 0:
            raise GramUserError(f"temperature must be > 0, got {temperature}")
        if sampling_steps is not None and sampling_steps < 1:
            raise GramUserError(f"sampling_steps must be >= 1 (or null for one per output token), got {sampling_steps}")
        super().__init__(net, optimizer, warmup_steps, val_num_samples, num_samples, num_steps, selection,
                         inference_seed, nonfinite)
        self.save_hyperparameters(ignore=hyperparameters_to_ignore(MDLM_PER_RUN_ARGS))
        self.schedule, self.time_eps, self.temperature = schedule, time_eps, temperature
        self.sampling_steps = sampling_steps

    @property
    def default_depth(self) -> int:
        return self.sampling_steps or self.net.default_steps

    @property
    def depth_name(self) -> str:
        return "denoising steps"

    @property
    def description(self) -> str:
        return f"masked diffusion ({self.schedule})"

    def loss_terms(self, inputs: torch.Tensor, labels: torch.Tensor, t: torch.Tensor,
                   masked: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ELBO of a batch at times t (B,) with the output positions `masked` (B, L_out): the weighted
        cross-entropy of the masked tokens, summed over positions and divided by the output length (nats per token,
        MDLM's reading), averaged over the batch."""
        z = torch.where(masked, torch.full_like(labels, self.net.mask_id), labels)
        logits = self.net(inputs, z)
        nll = token_cross_entropy(logits, labels, "softmax")  # (B, L_out); PAD positions 0
        tokens = (labels != IGNORE_LABEL).sum(-1).clamp(min=1)
        loss = (elbo_weight(t, self.schedule)[:, None] * nll * masked).sum(-1) / tokens
        masked_ce = (nll * masked).sum() / masked.sum().clamp(min=1)
        return {"loss": loss.mean(), "ce": masked_ce, "logits": logits}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        inputs, labels = batch["inputs"], batch["labels"]
        self.net.check_inputs(inputs)
        B = inputs.shape[0]
        # Low-discrepancy times (MDLM): one uniform offset, B evenly spaced strata; lower variance than B draws.
        u = (torch.rand(1, device=inputs.device) + torch.arange(B, device=inputs.device) / B) % 1
        t = self.time_eps + (1 - self.time_eps) * u
        unmasked = alpha(t, self.schedule)
        masked = (torch.rand(labels.shape, device=labels.device) >= unmasked[:, None]) & (labels != IGNORE_LABEL)
        terms = self.loss_terms(inputs, labels, t, masked)
        logits = terms.pop("logits")
        skipped, skip_loss = self.skip_if_nonfinite(terms)
        if skipped:
            return skip_loss
        with torch.no_grad():
            token_acc, _ = agreement(torch.where(masked, logits.argmax(-1), labels), labels)
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({"train/ce": terms["ce"].detach(), "train/token_acc": token_acc.mean(),
                       "train/mask_rate": masked.float().mean()})
        return terms["loss"]

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor, depths: list[int], keys: torch.Tensor | None,
                 puzzle_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> Iterator[tuple[int, Readout]]:
        """One S-step chain per requested depth S (a chain's steps depend on S, so depths share nothing)."""
        if labels is not None:
            raise ValueError("the MDLM baseline has no posterior: sample with posterior=False")
        for depth in depths:
            preds = self.denoise(inputs, depth, keys)
            yield depth, Readout(preds, torch.full((inputs.shape[0],), depth, dtype=torch.long, device=inputs.device))

    def denoise(self, inputs: torch.Tensor, num_steps: int, keys: torch.Tensor | None) -> torch.Tensor:
        """Ancestral sampling from all-[MASK] at t = 1 to t = 0 in `num_steps` equal steps: from t to s < t each
        masked token is revealed with probability (alpha_s - alpha_t) / (1 - alpha_t), drawn from the denoiser;
        revealed tokens never change, and the last step (alpha_0 = 1) reveals the rest. (R, L_in) -> (R, L_out)."""
        net: MaskedDenoiser = self.net
        net.check_inputs(inputs)
        R, L = inputs.shape[0], net.out_len
        z = inputs.new_full((R, L), net.mask_id)
        for k in range(num_steps, 0, -1):
            t, s = torch.tensor([k / num_steps, (k - 1) / num_steps], device=inputs.device)
            a_t, a_s = alpha(t, self.schedule), alpha(s, self.schedule)
            reveal_prob = 1.0 if k == 1 else float((a_s - a_t) / (1 - a_t))
            step_keys = derive(keys, k)
            u = uniform(R, (2, L), step_keys, inputs.device)  # (R, 2, L): reveal or not, which token
            masked = z == net.mask_id
            if not masked.any():
                break
            tokens = draw(filter_logits(net(inputs, z), self.temperature), u[:, 1])
            z = torch.where(masked & (u[:, 0] < reveal_prob), tokens, z)
        return z

    def inference_settings(self) -> dict[str, Any]:
        return {**super().inference_settings(), "schedule": self.schedule, "temperature": self.temperature}
