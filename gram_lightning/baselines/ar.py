"""The autoregressive baseline: a prefix-LM transformer over [input tokens | output tokens], the input part read
bidirectionally, the output part generated token by token in the task's token order (row-major boards, node order
for colorings), trained by teacher forcing and sampled with a KV cache, N samples per input in one batch."""

from __future__ import annotations

from typing import Any, Iterator, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from gram_lightning.base_module import PER_RUN_ARGS, BaseModule, hyperparameters_to_ignore
from gram_lightning.baselines.categorical import draw, filter_logits
from gram_lightning.baselines.transformer import TokenNet
from gram_lightning.errors import GramUserError
from gram_lightning.keyed_noise import uniform
from gram_lightning.layers import KVCache
from gram_lightning.losses import agreement, mean_over_tokens, token_cross_entropy
from gram_lightning.sampling import Readout
from gram_lightning.task_net import TaskNet
from gram_lightning.selection import SelectionRule

# Sampling knobs, settable per run like the shared inference ones.
AR_PER_RUN_ARGS = (*PER_RUN_ARGS, "temperature", "top_k", "top_p", "kv_cache")


class PrefixLM(TokenNet):
    """A transformer over [x_1 .. x_Lin | BOS y_1 .. y_(Lout-1)] predicting y_1 .. y_Lout (arguments: `TokenNet`).

    An input position attends to every input position (never to the output); an output position attends to the
    whole input and to the output positions up to itself. So the logits of y_j depend on the input and y_<j only.
    """

    @property
    def bos(self) -> int:
        return self.extra_token

    @property
    def mask(self) -> torch.Tensor:
        """(L, L) bool, True where a position may attend (L = L_in + L_out)."""
        positions = torch.arange(self.seq_len + self.out_len, device=self.segments.device)
        query, key = positions[:, None], positions[None, :]
        return (key < self.seq_len) | (key <= query)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs (B, L_in), labels (B, L_out) -> logits (B, L_out, V), row j from y_<j."""
        B = inputs.shape[0]
        bos = inputs.new_full((B, 1), self.bos)
        tokens = torch.cat([inputs, bos, labels[:, :-1]], dim=1)  # (B, L_in + L_out)
        logits = self.body(tokens, self.segments.expand(B, -1), self.mask)
        return logits[:, self.seq_len :]

    def start(self, inputs: torch.Tensor, caches: list[KVCache] | None) -> torch.Tensor:
        """The input and BOS read at once: logits of y_1 (B, V); fills `caches` (one per block) if given."""
        B, n = inputs.shape[0], self.seq_len + 1
        tokens = torch.cat([inputs, inputs.new_full((B, 1), self.bos)], dim=1)
        return self.body(tokens, self.segments[:n].expand(B, -1), self.mask[:n, :n], caches)[:, -1]

    def next(self, token: torch.Tensor, caches: list[KVCache]) -> torch.Tensor:
        """y_j (B,) appended after the cached positions: logits of y_(j+1) (B, V). A new last position attends to
        everything before it, so no mask is needed."""
        position = caches[0].length
        segment = self.segments[position : position + 1].expand(token.shape[0], -1)
        return self.body(token[:, None], segment, None, caches)[:, -1]

    def logits_after(self, inputs: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Without a cache: the logits of the output token after `prefix` (B, j) of the output, (B, V)."""
        B, j = prefix.shape
        n = self.seq_len + 1 + j
        tokens = torch.cat([inputs, inputs.new_full((B, 1), self.bos), prefix], dim=1)
        return self.body(tokens, self.segments[:n].expand(B, -1), self.mask[:n, :n])[:, -1]


class ARModule(BaseModule):
    """Trains the AR baseline (`PrefixLM`) by teacher forcing and evaluates it by sampling, scored by the task like
    every model of the project (`BaseModule`). It has no depth: every depth of a scaling grid reads the same draw.

    Args:
        net: The `PrefixLM` (any TaskNet is accepted, so that a task config's GRAM width settings carry over).
        optimizer: Optimizer factory taking the parameters.
        warmup_steps: Linear learning-rate warmup, then constant.
        temperature: Softmax temperature of sampling (1: the model's distribution).
        top_k: Sample among the k most likely tokens only (None: all).
        top_p: Nucleus sampling: among the most likely tokens holding this much mass (None: all).
        kv_cache: Decode with a KV cache (one position per token); False recomputes the whole prefix at every token,
            the same draws at L_out times the cost (a reference for tests).
        val_num_samples: Samples per input in validation (majority vote).
        num_samples: Width N of test / predict.
        num_steps: Unused: AR sampling has no depth (accepted so that scaling grids run unchanged).
        selection: vote or first (no value head).
        inference_seed: Seed of the sampling; an input's samples are a function of it and the input's index.
        nonfinite: "stop" or "skip" a training step with a NaN or infinite loss or gradient norm.
    """

    net_type = PrefixLM
    net_config = "experiments/baselines/ar.yaml"

    def __init__(
        self,
        net: TaskNet,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 2000,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        kv_cache: bool = True,
        val_num_samples: int = 1,
        num_samples: int = 1,
        num_steps: int | None = None,
        selection: SelectionRule = "vote",
        inference_seed: int = 1234,
        nonfinite: Literal["stop", "skip"] = "stop",
    ):
        if temperature <= 0:
            raise GramUserError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise GramUserError(f"top_k must be >= 1, got {top_k}")
        if top_p is not None and not 0 < top_p <= 1:
            raise GramUserError(f"top_p must be in (0, 1], got {top_p}")
        super().__init__(net, optimizer, warmup_steps, val_num_samples, num_samples, num_steps, selection,
                         inference_seed, nonfinite)
        self.save_hyperparameters(ignore=hyperparameters_to_ignore(AR_PER_RUN_ARGS))
        self.temperature, self.top_k, self.top_p, self.kv_cache = temperature, top_k, top_p, kv_cache

    @property
    def default_depth(self) -> int:
        return 1

    @property
    def description(self) -> str:
        return "autoregressive"

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        inputs, labels = batch["inputs"], batch["labels"]
        logits = self.net(inputs, labels)
        ce = mean_over_tokens(token_cross_entropy(logits, labels, "softmax"), labels).mean()
        terms = {"loss": ce, "ce": ce}
        skipped, skip_loss = self.skip_if_nonfinite(terms)
        if skipped:
            return skip_loss
        with torch.no_grad():
            token_acc, exact = agreement(logits.argmax(-1), labels)
        self.log("train/loss", ce, prog_bar=True)
        self.log_dict({"train/ce": ce.detach(), "train/token_acc": token_acc.mean(), "train/exact_acc": exact.float().mean()})
        return ce

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor, depths: list[int], keys: torch.Tensor | None,
                 puzzle_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> Iterator[tuple[int, Readout]]:
        if labels is not None:
            raise ValueError("the AR baseline has no posterior: sample with posterior=False")
        preds = self.decode(inputs, keys)
        steps = torch.ones(inputs.shape[0], dtype=torch.long, device=inputs.device)
        for depth in depths:
            yield depth, Readout(preds, steps)

    def decode(self, inputs: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        """One sampled output per row of `inputs` (R, L_in) -> (R, L_out), token by token; token j uses uniform
        j of its row (keyed by `keys`, else torch's RNG)."""
        net: PrefixLM = self.net
        R, L = inputs.shape[0], net.out_len
        u = uniform(R, (L,), keys, inputs.device)  # (R, L_out)
        sample = lambda logits, j: draw(filter_logits(logits, self.temperature, self.top_k, self.top_p), u[:, j])  # noqa: E731
        out = inputs.new_zeros(R, L)
        if self.kv_cache:
            caches = [KVCache() for _ in net.body.blocks]
            logits = net.start(inputs, caches)
            for j in range(L):
                out[:, j] = sample(logits, j)
                if j + 1 < L:
                    logits = net.next(out[:, j], caches)
        else:
            for j in range(L):
                out[:, j] = sample(net.logits_after(inputs, out[:, :j]), j)
        return out

    def inference_settings(self) -> dict[str, Any]:
        return {**super().inference_settings(), "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p}
