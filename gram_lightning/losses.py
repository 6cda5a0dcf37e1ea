"""The loss of one supervision step: reconstruction, balanced KL, halting and value (LPRM) terms, and `ELBOLoss`,
which weighs them into the training loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from gram_lightning.errors import GramUserError
from gram_lightning.model import Gaussian, StepOutput

if TYPE_CHECKING:
    from gram_lightning.task import Task

IGNORE_LABEL = 0  # PAD
# The loss terms a non-finite loss is traced to (the names `ELBOLoss.terms` gives them).
LOSS_TERMS = ("ce", "ce_prior_draw", "kl", "halt_loss", "value_loss")


def _stablemax_log_probs(logits: torch.Tensor) -> torch.Tensor:
    # TRM's stablemax: s(x) = 1/(1-x) for x < 0, x + 1 otherwise; in float64 as TRM does.
    # The clamp matters: torch.where differentiates both branches, and 1/(1-x) at a logit of exactly
    # 1.0 is inf, whose zeroed gradient is NaN.
    x = logits.double()
    s = torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)
    return torch.log(s / s.sum(dim=-1, keepdim=True))


def token_log_probs(logits: torch.Tensor, kind: Literal["stablemax", "softmax"] = "stablemax") -> torch.Tensor:
    """(..., V) logits -> (..., V) log-probabilities as the reconstruction loss `kind` normalises them. Under
    stablemax they differ from softmax's: a logit gap that leaves a token 0.03% under softmax can leave it 7%."""
    if kind == "stablemax":
        return _stablemax_log_probs(logits)
    if kind == "softmax":
        return F.log_softmax(logits.float(), dim=-1)
    raise ValueError(f"loss kind must be 'stablemax' or 'softmax', got {kind!r}")


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, kind: Literal["stablemax", "softmax"] = "stablemax") -> torch.Tensor:
    """Per-token cross-entropy (B, L); PAD positions get 0."""
    log_probs = token_log_probs(logits, kind)
    mask = labels != IGNORE_LABEL
    nll = -log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, nll, torch.zeros_like(nll)).float()


def mean_over_tokens(per_token: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the non-PAD tokens of each row: (B, L) -> (B,)."""
    mask = (labels != IGNORE_LABEL).float()
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def gaussian_kl(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over the latent width: (B, L, D) -> (B, L)."""
    return q.kl(p)


def balanced_kl(q: Gaussian, p: Gaussian, balance: float = 0.8) -> torch.Tensor:
    """Dreamer-style KL balancing: balance * KL(sg(q) || p) + (1 - balance) * KL(q || sg(p)).

    The value equals KL(q || p); only the gradient split changes: most of it trains the prior
    towards the posterior rather than the posterior towards the prior.
    """
    sg = lambda g: Gaussian(g.mean.detach(), g.std.detach())  # noqa: E731
    return balance * gaussian_kl(sg(q), p) + (1 - balance) * gaussian_kl(q, sg(p))


def balanced_mean_distance(q: Gaussian, p: Gaussian, balance: float = 0.8) -> torch.Tensor:
    """The "mean only" ablation's KL: unit-variance Gaussians, so 0.5 * ||mu_q - mu_p||^2, balanced."""
    half_sq = lambda a, b: 0.5 * (a - b).pow(2).sum(-1)  # noqa: E731
    return balance * half_sq(q.mean.detach(), p.mean) + (1 - balance) * half_sq(q.mean, p.mean.detach())


def halt_loss(halt_logits: torch.Tensor, is_correct: torch.Tensor) -> torch.Tensor:
    """BCE of the halt head against "the whole prediction is right": (B,) -> (B,)."""
    return F.binary_cross_entropy_with_logits(halt_logits.float(), is_correct.float(), reduction="none")


def value_loss(value: torch.Tensor, token_accuracy: torch.Tensor) -> torch.Tensor:
    """LPRM regression of the predicted final token accuracy: (B,) -> (B,)."""
    return (value.float() - token_accuracy.float()).pow(2)


def agreement(preds: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) predictions against (B, L) labels: (B,) token accuracy and (B,) whether every token matches (PAD
    positions of the label ignored)."""
    mask = labels != IGNORE_LABEL
    token_acc = ((preds == labels) & mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return token_acc, ((preds == labels) | ~mask).all(-1)


@dataclass
class ELBOLoss:
    """The training loss of one supervision step (README, "Training"):

        CE + prior_ce_weight * CE(prior draw) + beta_t * kl_positions * KL + halt_weight * halt BCE
           + value_weight * value MSE

    CE is the mean over the output tokens; KL is summed over the latent width and averaged over the latent
    positions (`kl_positions` 1) or summed over them (`kl_positions` L_total); beta_t follows the geometric
    schedule of `kl_weight`. With `kl_free_bits` > 0 each position's KL, averaged over the batch, enters the loss
    as max(KL, kl_free_bits) ("free bits", Kingma et al., 2016): the posterior may carry that many nats per
    position without cost, and the prior still learns from the gradient above the floor. The halt and value heads
    learn whether the prediction they judge (the prior draw's, where there is one) is right, and its token
    accuracy; "right" is the task's `check` where it has one, so a valid answer other than the label counts.
    """

    kind: Literal["stablemax", "softmax"]
    beta: float
    beta_start: float | None  # KL weight at step 0, moved geometrically to beta; None: beta throughout
    beta_anneal_steps: int
    kl_positions: int  # 1: KL per latent position (kl_reduction "mean"); L_total: of the whole latent ("sum")
    kl_balance: float  # share of the KL gradient that moves the prior
    mean_only: bool  # the "mean only" ablation: its KL is a distance of the means
    prior_ce_weight: float
    halt_weight: float
    value_weight: float
    out_len: int  # L_out and L_total: the KL's weight on the ELBO's scale (`kl_weight_elbo`)
    total_len: int
    kl_free_bits: float = 0.0  # nats per latent position that cost nothing (batch mean of each position's KL)

    def __post_init__(self) -> None:
        if self.prior_ce_weight < 0:
            raise GramUserError(f"prior_ce_weight must be >= 0, got {self.prior_ce_weight}")
        beta, beta_start = self.beta, self.beta_start
        if beta < 0 or (beta_start is not None and (beta_start <= 0 or beta <= 0)):
            raise GramUserError(f"beta must be >= 0, and > 0 with beta_start > 0 for the geometric schedule; got beta {beta}, beta_start {beta_start}")
        if self.beta_anneal_steps < 0:
            raise GramUserError(f"beta_anneal_steps must be >= 0, got {self.beta_anneal_steps}")
        if self.kl_free_bits < 0:
            raise GramUserError(f"kl_free_bits must be >= 0 (nats per latent position), got {self.kl_free_bits}")

    def kl_weight(self, step: int) -> float:
        """beta at optimizer step `step`: geometric from beta_start to beta over beta_anneal_steps, then beta."""
        if self.beta_start is None or step >= self.beta_anneal_steps:
            return self.beta
        return self.beta_start * (self.beta / self.beta_start) ** (step / self.beta_anneal_steps)

    def kl_weight_elbo(self, step: int) -> float:
        """The KL's weight on the ELBO's scale (CE summed over the L_out output tokens; 1 is the ELBO) at optimizer
        step `step`: beta x L_out / L_total with the KL per position (kl_reduction "mean"), beta x L_out with the
        KL of the whole latent ("sum"). One unit in which runs of any task and either reading compare."""
        return self.kl_weight(step) * self.kl_positions * self.out_len / self.total_len

    @staticmethod
    @torch.no_grad()
    def judged_outcome(out: StepOutput, inputs: torch.Tensor, labels: torch.Tensor,
                       task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) token accuracy and (B,) rightness of the prediction the halt and value heads judged (the prior
        draw's, where there is one): their training targets."""
        judged_preds = (out.logits if out.judged_logits is None else out.judged_logits).argmax(-1)
        judged_acc, judged_correct = agreement(judged_preds, labels)
        if task.checks_answers:
            # On a puzzle with several solutions, a valid answer other than the label is right too.
            judged_correct = judged_correct | task.check(inputs, judged_preds)
            judged_acc = torch.where(judged_correct, 1.0, judged_acc)
        return judged_acc, judged_correct

    def terms(self, out: StepOutput, inputs: torch.Tensor, labels: torch.Tensor, step: int, task: Task,
              final_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The loss ("loss") and its terms and training accuracies, as logged under `train/`.

        Args:
            out: The supervision step's output for B rows.
            inputs: (B, L_in) tokens, for the task's checker.
            labels: (B, L_out) tokens.
            step: The optimizer step (the KL weight's schedule).
            task: Judges the prior draw's prediction for the heads' targets.
            final_values: The value head's predictions (M,) at earlier steps of trajectories that end at this one,
                and the row (M,) of each: they learn this step's judged accuracy, the trajectory's final reward.
                None: the value head learns this step's own accuracy from `out.value`.
        """
        with torch.no_grad():
            preds = out.logits.argmax(-1)
            token_acc, seq_correct = agreement(preds, labels)
            judged_acc, judged_correct = self.judged_outcome(out, inputs, labels, task)
        reconstruction = lambda logits: mean_over_tokens(token_cross_entropy(logits, labels, self.kind), labels).mean()  # noqa: E731
        ce = reconstruction(out.logits)
        ce_prior = ce.new_zeros(())
        if self.prior_ce_weight > 0 and out.judged_logits is not None:
            ce_prior = reconstruction(out.judged_logits)
        kl = kl_loss = ce.new_zeros(())
        noise = out.noise
        if noise is not None and noise.posterior is not None:
            divergence = balanced_mean_distance if self.mean_only else balanced_kl
            per_row = divergence(noise.posterior, noise.prior, self.kl_balance)  # (B, L_total)
            kl = kl_loss = per_row.mean()
            if self.kl_free_bits > 0:
                kl_loss = per_row.mean(0).clamp(min=self.kl_free_bits).mean()
        halt = halt_loss(out.halt_logits, judged_correct).mean()
        if final_values is None:
            value = value_loss(out.value, judged_acc).mean()
        else:
            predictions, rows = final_values
            value = value_loss(predictions, judged_acc[rows]).mean() if len(rows) else ce.new_zeros(())
        beta = self.kl_weight(step)
        loss = (ce + self.prior_ce_weight * ce_prior + beta * self.kl_positions * kl_loss
                + self.halt_weight * halt + self.value_weight * value)
        terms = {"loss": loss, "ce": ce, "kl": kl, "halt_loss": halt, "value_loss": value,
                 "exact_acc_posterior": seq_correct.float().mean(), "token_acc_posterior": token_acc.mean()}
        if out.untrained_kl is not None:
            terms["kl_untrained"] = out.untrained_kl.mean()
        if out.judged_logits is not None:
            terms["exact_acc_prior_draw"] = judged_correct.float().mean()
        if self.prior_ce_weight > 0:
            terms["ce_prior_draw"] = ce_prior
        if self.beta_start is not None:
            terms["beta"] = ce.new_tensor(beta)
        if noise is not None and noise.posterior is not None:
            terms["kl_weight_elbo"] = ce.new_tensor(self.kl_weight_elbo(step))
        return terms


def noise_stats(out: StepOutput) -> dict[str, torch.Tensor]:
    """The scale of a step's noise, logged under `train/`: eps RMS, and per learned distribution its mean and
    smallest std and the RMS of its mean."""
    noise = out.noise
    if noise is None:
        return {}
    stats = {"train/eps_rms": noise.eps.float().pow(2).mean().sqrt()}
    for name, dist in (("prior", noise.prior), ("posterior", noise.posterior)):
        if dist is not None:
            stats[f"train/sigma_{name}_mean"] = dist.std.mean()
            stats[f"train/sigma_{name}_min"] = dist.std.min()
            stats[f"train/mu_{name}_rms"] = dist.mean.pow(2).mean().sqrt()
    return stats
