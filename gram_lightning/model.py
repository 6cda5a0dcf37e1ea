"""GRAM: a recursive reasoning model whose high-level latent update is stochastic.

One transition (t = 1..T):

    for k in 1..K:  l = f_L(l, h + e_x)          # low level, deterministic
    u   = f_H(h, l)                              # deterministic proposal
    eps ~ N(mu(u), sigma(u)^2)                   # learned prior; posterior q(eps | u, y) in training
    h   = u + eps

A supervision step runs T transitions, only the last one with gradients. This file is the plain
network (no training code): the LightningModule in `module.py` drives it.

Latent layout along the sequence axis (L_total positions):

    [ puzzle prefix (P) | input tokens (L_in) | output slots (L_out, only when L_out != L_in) ]

When the output has the input's length (Sudoku, N-Queens) the decoder reads the input positions;
otherwise (graph coloring: n(n-1)/2 edge tokens in, n colors out) it reads dedicated output slots.
Subclasses change the input / output modality by overriding `embed_input`, `embed_target` and
`decode` (e.g. a conv patch encoder for images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gram_lightning.keyed_noise import derive, normal_like
from gram_lightning.layers import Block, Linear, ReasoningNet, SwiGLU, swiglu_hidden
from gram_lightning.puzzle_embedding import PuzzleEmbedding
from gram_lightning.task_net import TaskNet

NoiseMode = Literal["learned", "none", "fixed", "mean_only"]
NoiseSource = Literal["prior", "posterior"]


@dataclass
class Gaussian:
    """Diagonal Gaussian over the residual eps, one per latent element."""

    mean: torch.Tensor  # (B, L, D)
    std: torch.Tensor  # (B, L, D)

    def sample(self, keys: torch.Tensor | None = None) -> torch.Tensor:
        """A draw; with (B,) `keys` each row's noise is a function of its key (see keyed_noise.py)."""
        return self.mean + self.std * normal_like(self.std, keys)

    def kl(self, other: Gaussian) -> torch.Tensor:
        """KL(self || other), summed over the latent width: (B, L, D) -> (B, L)."""
        var_ratio = (self.std / other.std).pow(2)
        mean_term = ((self.mean - other.mean) / other.std).pow(2)
        return 0.5 * (var_ratio + mean_term - 1 - var_ratio.log()).sum(-1)


@dataclass
class TransitionNoise:
    """What the last transition of a step drew, for the KL term and the logs."""

    prior: Gaussian | None
    posterior: Gaussian | None
    eps: torch.Tensor  # (B, L, D)


@dataclass
class StepOutput:
    h: torch.Tensor  # (B, L_total, D)
    l: torch.Tensor  # (B, L_total, D)
    logits: torch.Tensor  # (B, L_out, V)
    halt_logits: torch.Tensor  # (B,) logit that the judged prediction is entirely right
    value: torch.Tensor  # (B,) LPRM's predicted token accuracy of the judged prediction, in [0, 1]
    noise: TransitionNoise | None  # the last transition's noise; None when noise is off
    judged_logits: torch.Tensor | None = None  # (B, L_out, V) what the halt / value heads judged; None: `logits`
    judged_h: torch.Tensor | None = None  # (B, L_total, D) the prior draw's state behind judged_logits; None: `h`
    judged_l: torch.Tensor | None = None  # (B, L_total, D) its low-level state (differs only with noise_on="l")
    untrained_kl: torch.Tensor | None = None  # (B,) KL per latent position of the posterior's draws at the
    # transitions without gradients, summed over them (posterior_transitions="all"); None: those drew from the prior

    @property
    def judged_state(self) -> torch.Tensor:
        """(B, L_total, D) the state the halt and value heads judged: the prior draw's where there is one."""
        return self.h if self.judged_h is None else self.judged_h

    def next_state(self, prior_draw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, l) the next supervision step starts from: the prior draw's when asked for and there is one."""
        if prior_draw and self.judged_h is not None:
            return self.judged_h, self.judged_l
        return self.h, self.l


class GaussianHead(nn.Module):
    """MLP -> (mean, std), both bounded to the scale of u, starting at mean 0 and std init_std.

    u leaves a post-norm block with RMS 1. Nothing in the ELBO anchors the absolute scale of a learned
    prior, and unbounded heads can grow mean and std an order of magnitude past it: the residual then drowns
    the input injection h + e_x at the next step and prior rollouts collapse (README, "The model", choice 2).
    Hence mean = max_mean * tanh(. / max_mean) and std = min_std + (max_std - min_std) * sigmoid(.).
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, init_std: float, min_std: float, max_std: float, max_mean: float):
        super().__init__()
        if not min_std < init_std < max_std:
            raise ValueError(f"need min_sigma < init_sigma < max_sigma, got {min_std}, {init_std}, {max_std}")
        self.hidden = Linear(in_dim, hidden)
        self.out = Linear(hidden, 2 * dim, bias=True)
        self.min_std, self.max_std, self.max_mean = min_std, max_std, max_mean
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias[:dim].zero_()
            p = (init_std - min_std) / (max_std - min_std)
            self.out.bias[dim:].fill_(math.log(p / (1 - p)))  # inverse sigmoid: starts exactly at init_std

    def forward(self, x: torch.Tensor) -> Gaussian:
        raw_mean, raw_std = self.out(F.silu(self.hidden(x))).float().chunk(2, dim=-1)
        mean = self.max_mean * torch.tanh(raw_mean / self.max_mean)
        return Gaussian(mean, self.min_std + (self.max_std - self.min_std) * torch.sigmoid(raw_std))


class MixingGaussianHead(nn.Module):
    """A prior that mixes positions: one block of the net's core (self-attention or MLP-T, with its own weights)
    over u, then the per-position `GaussianHead`. The per-position head can only make each position's noise a
    function of that position's u; through the block a position's guidance can depend on what the others hold
    (on N-Queens: where the other queens are)."""

    def __init__(self, block: nn.Module, head: GaussianHead):
        super().__init__()
        self.block, self.head = block, head

    def forward(self, x: torch.Tensor) -> Gaussian:
        return self.head(self.block(x))


class GRAM(TaskNet):
    """Generative recursive reasoning model (TRM when `noise="none"`).

    Args:
        vocab_size: Number of token ids, 0 being PAD. Linked from the DataModule by the CLI.
        seq_len: Input length in tokens, without the puzzle prefix. Linked from the DataModule.
        out_len: Output length in tokens; None means the same as the input. Linked from the DataModule.
        num_puzzle_ids: Learned per-puzzle prefix embeddings (ARC: one per task and augmentation variant), trained
            by sign-SGD outside the main optimizer (see `puzzle_embedding.py`); 0 means an all-zero prefix.
            Linked from the DataModule.
        puzzle_prefix_len: Prefix positions in front of the input. The halt and value heads read the first.
        puzzle_embed_dim: Width of a puzzle embedding, filling the prefix from its start (the rest stays zero);
            None means D, one prefix position, as TRM. At most puzzle_prefix_len * D.
        hidden_size: Latent width D.
        num_heads: Attention heads (attention core only).
        expansion: SwiGLU expansion; the hidden width is 2/3 of expansion * D rounded up to 256, as in TRM.
        num_layers: Post-norm blocks in each of f_L and f_H.
        core: "attention" (non-causal self-attention) or "mlp_t" (SwiGLU across the sequence, TRM's Sudoku core).
        pos_encoding: "rope" or "none".
        rope_theta: RoPE base.
        share_weights: One network for both f_L and f_H (TRM) or two (HRM).
        final_norm: An extra RMSNorm at the end of f_L and f_H.
        T: Transitions per supervision step (the last one carries gradients).
        K: Low-level updates per transition; 0 drops the low level, u = f_H(h + e_x): a single-latent
            Looped Transformer.
        N_sup: Supervision steps per trajectory in training (also the default inference depth).
        noise: "learned" (GRAM: learned prior and posterior), "none" (deterministic, the TRM baseline),
            "fixed" (zero-mean noise of std `fixed_sigma`), "mean_only" (learned guidance mu, no noise).
        noise_on: Which state gets the residual: "h" (GRAM) or "l" (ablation: the low-level state after
            its K updates, before f_H reads it).
        z0_noise_sigma: Std of Gaussian noise added to h0 once per trajectory (ablation "noise only at z0",
            with noise="none"); 0 keeps z0 fixed.
        fixed_sigma: Std of the "fixed" noise mode.
        init_sigma: Std of the learned prior and posterior at initialization.
        min_sigma: Floor of the learned std, keeping the KL finite.
        max_sigma: Ceiling of the learned std, relative to u's RMS of 1.
        max_mu: Bound on each element of the learned mean (guidance), relative to u's RMS of 1.
        noise_hidden: Hidden width of the prior / posterior MLPs; None means D.
        prior_head: "mlp": the prior is an MLP on each position's u. "mixing": one block of the core (attention
            or MLP-T, its own weights) mixes the positions of u first (`MixingGaussianHead`), a prior with the
            capacity to coordinate positions. The posterior stays an MLP on [u, embed(y)].
        posterior_transitions: Where a training step's rollout draws from the posterior. "last": at the last
            transition only, the one with gradients and a KL in the loss; the earlier T-1 draw from the prior.
            "all": at every transition, the paper's Eq. 3 (the whole training rollout sampled from q); the KL of
            the earlier transitions carries no gradient (they run without one) and is logged as
            `train/kl_untrained`.
        noise_input: What the prior and posterior heads read. "core": u itself (the paper), so the KL's gradient,
            which grows as 1 / sigma^2, and the residual's reach the shared core through u. "detached": u with
            its gradient stopped, so the heads learn from the KL and the reconstruction without pulling on the core.
        decoder: "linear" (TRM) or "mlp" (a SwiGLU head) from h to token logits.
        z0_seed: Seed of the fixed initial state z0 = (h0, l0) ~ N(0, I), stored in the checkpoint.
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        out_len: int | None = None,
        num_puzzle_ids: int = 0,
        puzzle_prefix_len: int = 16,
        puzzle_embed_dim: int | None = None,
        hidden_size: int = 512,
        num_heads: int = 8,
        expansion: float = 4.0,
        num_layers: int = 2,
        core: Literal["attention", "mlp_t"] = "attention",
        pos_encoding: Literal["rope", "none"] = "rope",
        rope_theta: float = 10000.0,
        share_weights: bool = True,
        final_norm: bool = False,
        T: int = 3,
        K: int = 4,
        N_sup: int = 16,
        noise: NoiseMode = "learned",
        noise_on: Literal["h", "l"] = "h",
        z0_noise_sigma: float = 0.0,
        fixed_sigma: float = 0.1,
        init_sigma: float = 0.1,
        min_sigma: float = 1e-3,
        max_sigma: float = 1.0,
        max_mu: float = 1.0,
        noise_hidden: int | None = None,
        prior_head: Literal["mlp", "mixing"] = "mlp",
        posterior_transitions: Literal["last", "all"] = "last",
        noise_input: Literal["core", "detached"] = "core",
        decoder: Literal["linear", "mlp"] = "linear",
        z0_seed: int = 0,
    ):
        super().__init__()
        for name, value in dict(vocab_size=vocab_size, seq_len=seq_len, hidden_size=hidden_size, T=T, K=K + 1, N_sup=N_sup).items():
            if value < 1:
                raise ValueError(f"GRAM: {name} must be >= {0 if name == 'K' else 1}, got {K if name == 'K' else value}")
        if noise_on not in ("h", "l"):
            raise ValueError(f"GRAM: noise_on must be 'h' or 'l', got {noise_on!r}")
        if noise_on == "l" and K == 0:
            raise ValueError("GRAM: noise_on='l' needs a low level (K >= 1)")
        if z0_noise_sigma < 0:
            raise ValueError(f"GRAM: z0_noise_sigma must be >= 0, got {z0_noise_sigma}")
        if puzzle_prefix_len < 1:
            raise ValueError("GRAM: puzzle_prefix_len must be >= 1: the halt and value heads read the first prefix position")
        if noise not in ("learned", "none", "fixed", "mean_only"):
            raise ValueError(f"GRAM: noise must be one of learned, none, fixed, mean_only; got {noise!r}")
        if prior_head not in ("mlp", "mixing"):
            raise ValueError(f"GRAM: prior_head must be 'mlp' or 'mixing', got {prior_head!r}")
        if posterior_transitions not in ("last", "all"):
            raise ValueError(f"GRAM: posterior_transitions must be 'last' or 'all', got {posterior_transitions!r}")
        if noise_input not in ("core", "detached"):
            raise ValueError(f"GRAM: noise_input must be 'core' or 'detached', got {noise_input!r}")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.out_len = out_len or seq_len
        self.separate_output = self.out_len != seq_len
        self.prefix_len = puzzle_prefix_len
        self.total_len = puzzle_prefix_len + seq_len + (self.out_len if self.separate_output else 0)
        self.hidden_size, self.T, self.K, self.N_sup = hidden_size, T, K, N_sup
        self.noise_mode, self.fixed_sigma = noise, fixed_sigma
        self.noise_on, self.z0_noise_sigma = noise_on, z0_noise_sigma
        self.posterior_transitions, self.noise_input = posterior_transitions, noise_input
        # Multiplies the residual in training (GRAMModule's noise warm-up sets it); evaluation always adds it whole.
        # A tensor, so that a compiled step reads its new value rather than recompiling; not saved in checkpoints.
        self.register_buffer("train_residual_scale", torch.tensor(1.0), persistent=False)
        D = hidden_size

        self.token_embed = nn.Embedding(vocab_size, D)
        nn.init.trunc_normal_(self.token_embed.weight, std=1.0 / math.sqrt(D))
        puzzle_embed_dim = puzzle_embed_dim or D
        if not 1 <= puzzle_embed_dim <= puzzle_prefix_len * D:
            raise ValueError(f"GRAM: puzzle_embed_dim must be in [1, puzzle_prefix_len * D = {puzzle_prefix_len * D}], got {puzzle_embed_dim}")
        self.puzzle_embed = PuzzleEmbedding(num_puzzle_ids, puzzle_embed_dim) if num_puzzle_ids else None
        self.output_queries = nn.Parameter(torch.randn(self.out_len, D) / math.sqrt(D)) if self.separate_output else None

        block_kwargs = dict(
            dim=D, num_heads=num_heads, seq_len=self.total_len, expansion=expansion, core=core,
            rope=pos_encoding == "rope", rope_theta=rope_theta,
        )
        self.f_L = ReasoningNet(num_layers, final_norm, **block_kwargs)
        self.f_H = self.f_L if share_weights else ReasoningNet(num_layers, final_norm, **block_kwargs)

        noise_hidden = noise_hidden or D
        self.prior = self.posterior = self.target_embed = None
        if noise in ("learned", "mean_only"):
            bounds = dict(init_std=init_sigma, min_std=min_sigma, max_std=max_sigma, max_mean=max_mu)
            self.prior = GaussianHead(D, D, noise_hidden, **bounds)
            if prior_head == "mixing":
                self.prior = MixingGaussianHead(Block(**block_kwargs), self.prior)
            self.posterior = GaussianHead(2 * D, D, noise_hidden, **bounds)
            self.target_embed = nn.Embedding(vocab_size, D)
            nn.init.trunc_normal_(self.target_embed.weight, std=1.0 / math.sqrt(D))

        if decoder == "linear":
            self.decoder: nn.Module = Linear(D, vocab_size)
        elif decoder == "mlp":
            self.decoder = SwiGLU(D, swiglu_hidden(D, expansion), vocab_size)
        else:
            raise ValueError(f"GRAM: decoder must be 'linear' or 'mlp', got {decoder!r}")
        self.halt_head = Linear(D, 1, bias=True)
        self.value_head = Linear(D, 1, bias=True)
        with torch.no_grad():
            # TRM: the halt head starts almost certain to continue, so early training runs full depth.
            self.halt_head.weight.zero_()
            self.halt_head.bias.fill_(-5.0)
            self.value_head.weight.zero_()
            self.value_head.bias.zero_()

        # z0 is drawn once from its own seed, then frozen: a buffer, so checkpoints carry it.
        generator = torch.Generator().manual_seed(z0_seed)
        self.register_buffer("h0", torch.randn(self.total_len, D, generator=generator))
        self.register_buffer("l0", torch.randn(self.total_len, D, generator=generator))

    # ---- modality hooks (override for other inputs / outputs) ----

    def embed_input(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, L_in) -> e_x (B, L_total, D), scaled by sqrt(D) as in TRM."""
        B = inputs.shape[0]
        D = self.hidden_size
        tokens = self.token_embed(inputs)  # (B, L_in, D)
        if self.puzzle_embed is not None:
            if puzzle_ids is None:
                raise ValueError("GRAM was built with num_puzzle_ids > 0 but the batch has no 'puzzle_ids'")
            rows = self.puzzle_embed(puzzle_ids)  # (B, puzzle_embed_dim)
            prefix = F.pad(rows, (0, self.prefix_len * D - rows.shape[-1])).view(B, self.prefix_len, D)
        else:
            prefix = tokens.new_zeros(B, self.prefix_len, D)
        parts = [prefix.to(tokens.dtype), tokens]
        if self.output_queries is not None:
            parts.append(self.output_queries.to(tokens.dtype).expand(B, -1, -1))
        return math.sqrt(D) * torch.cat(parts, dim=1)

    def embed_target(self, labels: torch.Tensor) -> torch.Tensor:
        """Targets (B, L_out) -> (B, L_total, D), placed at the output positions: what the posterior sees."""
        assert self.target_embed is not None
        y = self.target_embed(labels)  # (B, L_out, D)
        start = self.total_len - self.out_len if self.separate_output else self.prefix_len
        return F.pad(y, (0, 0, start, self.total_len - start - self.out_len))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, L_total, D) -> logits (B, L_out, V)."""
        start = self.total_len - self.out_len if self.separate_output else self.prefix_len
        return self.decoder(h[:, start : start + self.out_len])

    # ---- recursion ----

    def initial_state(self, batch_size: int, noise_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = self.h0.expand(batch_size, -1, -1)
        if self.z0_noise_sigma > 0:
            h0 = h0 + self.z0_noise_sigma * normal_like(h0, noise_keys)
        return h0, self.l0.expand(batch_size, -1, -1)

    def sample_noise(self, u: torch.Tensor, source: NoiseSource, target_context: torch.Tensor | None, test_sigma: float,
                     noise_keys: torch.Tensor | None = None) -> TransitionNoise | None:
        """The residual added to u. `noise_keys` (B,) make each row's draw a function of its key (evaluation)."""
        if self.noise_mode == "none":
            if test_sigma > 0:  # PTRM: Gaussian noise on a deterministic model, at test time only
                return TransitionNoise(None, None, test_sigma * normal_like(u, noise_keys))
            return None
        if self.noise_mode == "fixed":
            return TransitionNoise(None, None, self.fixed_sigma * normal_like(u, noise_keys))
        if self.noise_input == "detached":
            u = u.detach()
        prior = self.prior(u)
        posterior = None
        if source == "posterior":
            if target_context is None:
                raise ValueError("posterior noise needs the target: pass labels")
            posterior = self.posterior(torch.cat([u, target_context.to(u.dtype)], dim=-1))
        eps = self.draw(posterior if posterior is not None else prior, noise_keys)
        return TransitionNoise(prior, posterior, eps.to(u.dtype))

    def low_level(self, h: torch.Tensor, l: torch.Tensor, input_embedding: torch.Tensor) -> torch.Tensor:
        for _ in range(self.K):
            l = self.f_L(l, h + input_embedding)
        return l

    def high_level(self, h: torch.Tensor, l: torch.Tensor, input_embedding: torch.Tensor) -> torch.Tensor:
        """The deterministic proposal u; without a low level (K = 0) f_H reads the input directly."""
        return self.f_H(h, l) if self.K > 0 else self.f_H(h, input_embedding)

    def draw(self, dist: Gaussian, noise_keys: torch.Tensor | None = None) -> torch.Tensor:
        """A residual from `dist`: its mean in guidance-only mode, else a sample."""
        return dist.mean if self.noise_mode == "mean_only" else dist.sample(noise_keys)

    def transition(self, h, l, input_embedding, source: NoiseSource, target_context=None, test_sigma: float = 0.0,
                   noise_keys: torch.Tensor | None = None):
        """One transition: (h, l) -> (h', l', the noise drawn)."""
        h, l, noise, _ = self._transition(h, l, input_embedding, source, target_context, test_sigma, noise_keys)
        return h, l, noise

    def _transition(self, h, l, input_embedding, source, target_context, test_sigma, noise_keys=None):
        """Also returns a function that redoes the transition's end with another eps: eps -> (h', l')."""
        h_in = h
        scale = self.train_residual_scale if self.training else 1.0
        l = self.low_level(h, l, input_embedding)
        if self.noise_on == "l":
            noise = self.sample_noise(l, source, target_context, test_sigma, noise_keys)
            l_det = l
            l = l if noise is None else l + scale * noise.eps
            return (self.high_level(h_in, l, input_embedding), l, noise,
                    lambda eps: (self.high_level(h_in, l_det + scale * eps, input_embedding), l_det + scale * eps))
        u = self.high_level(h_in, l, input_embedding)
        noise = self.sample_noise(u, source, target_context, test_sigma, noise_keys)
        return (u if noise is None else u + scale * noise.eps), l, noise, lambda eps: (u + scale * eps, l)

    def judge(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Halt logit and value (LPRM) of the prediction decoded from h, each (B,)."""
        # Halt and value heads must not shape the core (paper App. A.1): they read a detached state.
        summary = h[:, 0].detach()  # (B, D)
        halt_logits = self.halt_head(summary).squeeze(-1).float()
        return halt_logits, self.value_of(summary)

    def value_of(self, summary: torch.Tensor) -> torch.Tensor:
        """The value head (LPRM) on (..., D) summaries h[:, 0] -> (...) predicted accuracy in [0, 1]."""
        return torch.sigmoid(self.value_head(summary).squeeze(-1).float())

    def supervision_step(
        self,
        h: torch.Tensor,
        l: torch.Tensor,
        input_embedding: torch.Tensor,
        source: NoiseSource = "prior",
        target_context: torch.Tensor | None = None,
        test_sigma: float = 0.0,
        prior_draw_grad: bool = False,
        noise_keys: torch.Tensor | None = None,
    ) -> StepOutput:
        """T transitions from (h, l); gradients flow through the last one only (the rest run under no_grad).

        By default (posterior_transitions "last") the posterior is consulted at the last transition only, the
        one whose KL enters the loss; the others draw from the prior (q = p there, so their KL is zero and the
        truncated loss is the exact ELBO of this posterior). Sampling q at unpenalized transitions lets it pass
        the whole target through them for free, leaving the prior nothing to learn (README, "The model",
        choice 1); "all" does so, as the paper's Eq. 3 reads.
        """
        early_source: NoiseSource = source if self.posterior_transitions == "all" else "prior"
        untrained_kl = None
        with torch.no_grad():
            for t in range(self.T - 1):
                h, l, early = self.transition(h, l, input_embedding, early_source, target_context, test_sigma,
                                              derive(noise_keys, t))
                if early is not None and early.posterior is not None:
                    kl = early.posterior.kl(early.prior).mean(-1)  # (B,)
                    untrained_kl = kl if untrained_kl is None else untrained_kl + kl
        h, l, noise, redo_with = self._transition(h, l, input_embedding, source, target_context, test_sigma,
                                                  derive(noise_keys, self.T - 1))
        logits = self.decode(h)
        if noise is None or noise.posterior is None:
            return StepOutput(h, l, logits, *self.judge(h), noise, untrained_kl=untrained_kl)
        # The posterior sees the target, so its prediction is almost always right: heads trained on it learn
        # "always right, halt now" and rank prior samples no better than chance (README, "The model", choice 3).
        # They judge a prior draw at the same point instead, the kind of state they see at inference.
        # With `prior_draw_grad` its decoding keeps the graph into the core (not into the prior: the draw is
        # detached, the prior learns from the KL alone), for the module's prior-draw reconstruction term.
        with torch.set_grad_enabled(prior_draw_grad and torch.is_grad_enabled()):
            judged_h, judged_l = redo_with(self.draw(noise.prior, derive(noise_keys, self.T)).detach().to(h.dtype))
            judged_logits = self.decode(judged_h)
        return StepOutput(h, l, logits, *self.judge(judged_h), noise, judged_logits, judged_h, judged_l, untrained_kl)

    @torch.no_grad()
    def rollout(
        self,
        inputs: torch.Tensor,
        num_steps: int | None = None,
        puzzle_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        test_sigma: float = 0.0,
        step_fn=None,
        carry_prior_draw: bool = False,
        noise_keys: torch.Tensor | None = None,
    ) -> Iterator[StepOutput]:
        """Sample one trajectory per row, yielding the output after each supervision step.

        Noise comes from the prior, or from the posterior when `labels` are given (to measure the
        posterior shortcut). Depth scaling is `num_steps` > N_sup; width scaling is repeating rows of
        `inputs`. `step_fn` replaces `supervision_step` (e.g. its torch.compile'd version).
        `carry_prior_draw` continues a posterior rollout from each step's prior draw, as training with
        carry="prior_draw" does. `noise_keys` (B,), one per row, make every draw of a row a function of its key
        (keyed_noise.py), so that a row's trajectory does not depend on the batch around it; None: torch's RNG.
        """
        step_fn = step_fn or self.supervision_step
        e = self.embed_input(inputs, puzzle_ids)
        context = self.embed_target(labels) if labels is not None and self.target_embed is not None else None
        source: NoiseSource = "posterior" if context is not None else "prior"
        h, l = self.initial_state(inputs.shape[0], derive(noise_keys, -1))
        for step in range(num_steps or self.N_sup):
            out = step_fn(h, l, e, source, context, test_sigma, noise_keys=derive(noise_keys, step))
            h, l = out.next_state(carry_prior_draw)
            yield out
