"""GRAM's LightningModule: deep supervision with ACT and the truncated ELBO (`losses.ELBOLoss`); evaluation by
sampling, scored through the DataModule's task, comes from `base_module.BaseModule`."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info

from gram_lightning.act import Carry, halt_decision
from gram_lightning.base_module import PER_RUN_ARGS, BaseModule, hyperparameters_to_ignore
from gram_lightning.errors import GramUserError
from gram_lightning.losses import ELBOLoss, noise_stats
from gram_lightning.metrics import SolveMetrics
from gram_lightning.model import GRAM, StepOutput
from gram_lightning.sampling import Readout, without_padding
from gram_lightning.selection import SelectionRule

# GRAM's per-run knobs beyond the shared ones: its inference settings, and whether checkpoints carry the ACT state.
GRAM_PER_RUN_ARGS = (*PER_RUN_ARGS, "halt_at_inference", "test_noise_sigma", "checkpoint_carry")


class GRAMModule(BaseModule):
    """Trains a GRAM (or its deterministic baselines) with deep supervision and evaluates it by sampling.

    Args:
        net: The recursive network; its vocab / lengths are linked from the DataModule by the CLI.
        optimizer: Optimizer factory taking the parameters (the configs use AdamW, lr 1e-4,
            weight decay 1.0, betas (0.9, 0.95)).
        warmup_steps: Linear learning-rate warmup, then constant (TRM's schedule).
        puzzle_embedding_lr: Learning rate of the per-puzzle embeddings' sign-SGD (TRM: 1e-2), with the same
            warmup; only for nets with num_puzzle_ids > 0 (ARC).
        puzzle_embedding_weight_decay: Decoupled weight decay of the puzzle embedding rows a step touches (TRM: 0.1).
        beta: Weight of the KL term (per task: Sudoku 0.1, N-Queens 8x8 0.07, ...).
        kl_reduction: How the KL (summed over the latent width D) is reduced over the latent positions before beta
            weighs it: "mean" (beta is per position, beside a per-token cross-entropy) or "sum" (the KL of the whole
            latent, as in a VAE's ELBO: beta x L_total per position). The paper does not say; each paper-scale config
            picks the reading its task's CPU runs support (README, "KL scale"). `train/kl` is logged per position
            either way.
        beta_start: KL weight at step 0, moved geometrically to `beta` over `beta_anneal_steps` (a high start keeps
            the posterior from passing the answer while the core learns to solve); None: `beta` throughout.
        beta_anneal_steps: Optimizer steps of that schedule; `beta` from then on.
        kl_free_bits: Free bits (Kingma et al., 2016): nats of KL per latent position, averaged over the batch, that
            cost nothing; each position's KL enters the loss as max(KL, kl_free_bits). 0: the plain KL.
        kl_balance: Dreamer KL balancing: share of the KL gradient that moves the prior.
        prior_ce_weight: Weight of a second reconstruction term, decoded from a prior draw at the last transition
            instead of the posterior's (the hybrid CVAE + GSNN objective of Sohn et al., 2015). It makes the core
            finish from the noise it meets at inference rather than lean on the posterior's guidance (the
            posterior shortcut); 0 is the plain ELBO. The prior itself still learns from the KL alone.
        carry: The state a training row's next supervision step starts from. "posterior": the posterior-guided
            state the loss was taken on (the trajectory of the ELBO). "prior_draw": the prior draw at the same
            transition, the state the heads judge. With it every step's rollout runs on the prior, as at
            inference, and the posterior guides one transition per step: target information it passes lasts
            one step and is paid for in KL at every step, not once for the rest of the trajectory. Each step's
            loss is then the one-transition ELBO of log p(y | a prior rollout's state). Needs a learned prior.
        loss: Reconstruction loss: "stablemax" (TRM, float64) or "softmax" cross-entropy.
        halt_loss_weight: Weight of the halt head's BCE on "the prediction is entirely right".
        value_loss_weight: Weight of the value head's (LPRM) squared error on token accuracy.
        value_target: What the value head learns at each step of a training trajectory. "step": the token
            accuracy of this step's judged prediction. "final": the trajectory's final reward (the paper's Eq. 5),
            the judged accuracy at the step where the row halts, learned by every step of the trajectory once it
            ends; the heads' inputs (the detached h[:, 0] of each step) wait in the ACT carry until then.
        noise_warmup_steps: Optimizer steps over which the residual added in training grows linearly from 0 to its
            full draw (the prior and posterior and their KL train throughout), so that the core first learns as the
            deterministic TRM does; 0: the whole residual from the start. Evaluation always adds it whole.
        act: Adaptive halting in training; off means every example runs exactly N_sup steps.
        halt_exploration_prob: Probability that an example gets a random minimum halt step in [2, N_sup].
        compile: torch.compile the supervision step (checkpoint keys are unchanged).
        val_num_samples: Trajectories per input in validation (prior rollouts, majority vote).
        num_samples: Width N of test / predict: trajectories sampled per input, in one batch.
        num_steps: Depth of test / predict in supervision steps (default: the net's N_sup; may exceed it).
        selection: How test / predict picks one of the N samples: vote, lprm (value head), halt, first.
        halt_at_inference: Stop each trajectory when its halt head says so (else run all num_steps).
        test_noise_sigma: Test-time Gaussian noise on a deterministic net (PTRM); needs noise="none".
        inference_seed: Seed of the noise in validation / test / predict; an input's samples are a function of it and
            the input's index, the same on any number of DDP ranks and at any batch size.
        nonfinite: What a training step with a NaN or infinite loss or gradient norm does. "stop": end the run with
            an error naming the step and the term (ce, kl, halt_loss, value_loss) before the optimizer step, so the
            weights and every checkpoint stay finite. "skip": drop the step (no update; the carried rows restart
            from fresh examples), count it in `train/skipped_steps` and go on. Checking costs one host sync per
            step. Not saved with the checkpoint: a run stopped by a NaN can resume with "skip". Under fp16 mixed
            precision the gradient scaler already skips steps with overflowing gradients; only the loss is checked.
        checkpoint_carry: Save the ACT carry (each training row's latent state h and l, 2 x batch x L_total x D
            floats, and the example it works on) in checkpoints, so that a resumed single-process run continues
            every row where it was and, with the RNG state and the data order, exactly as an uninterrupted run
            would. False keeps checkpoints small for huge batches: a resumed run then starts every row on a fresh
            example, and its first N_sup steps differ from an uninterrupted run's. Under DDP only rank 0's state
            reaches the checkpoint, so the rows restart either way and resuming is not exact.
    """

    has_value_head = True

    def __init__(
        self,
        net: GRAM,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 2000,
        puzzle_embedding_lr: float = 1e-2,
        puzzle_embedding_weight_decay: float = 0.1,
        beta: float = 0.1,
        beta_start: float | None = None,
        beta_anneal_steps: int = 0,
        kl_free_bits: float = 0.0,
        kl_reduction: Literal["mean", "sum"] = "mean",
        kl_balance: float = 0.8,
        prior_ce_weight: float = 0.0,
        carry: Literal["posterior", "prior_draw"] = "posterior",
        loss: Literal["stablemax", "softmax"] = "stablemax",
        halt_loss_weight: float = 0.5,
        value_loss_weight: float = 0.5,
        value_target: Literal["step", "final"] = "step",
        noise_warmup_steps: int = 0,
        act: bool = True,
        halt_exploration_prob: float = 0.1,
        compile: bool = False,
        val_num_samples: int = 1,
        num_samples: int = 1,
        num_steps: int | None = None,
        selection: SelectionRule = "vote",
        halt_at_inference: bool = False,
        test_noise_sigma: float = 0.0,
        inference_seed: int = 1234,
        nonfinite: Literal["stop", "skip"] = "stop",
        checkpoint_carry: bool = True,
    ):
        super().__init__(net, optimizer, warmup_steps, val_num_samples, num_samples, num_steps, selection,
                         inference_seed, nonfinite)
        if prior_ce_weight > 0 and net.noise_mode not in ("learned", "mean_only"):
            raise GramUserError("prior_ce_weight needs a learned prior and posterior (net noise='learned' or 'mean_only')")
        if kl_reduction not in ("mean", "sum"):
            raise GramUserError(f"kl_reduction must be 'mean' or 'sum' (over latent positions), got {kl_reduction!r}")
        if carry not in ("posterior", "prior_draw"):
            raise GramUserError(f"carry must be 'posterior' or 'prior_draw', got {carry!r}")
        if carry == "prior_draw" and net.noise_mode not in ("learned", "mean_only"):
            raise GramUserError("carry='prior_draw' needs a learned prior and posterior (net noise='learned' or 'mean_only')")
        if value_target not in ("step", "final"):
            raise GramUserError(f"value_target must be 'step' or 'final', got {value_target!r}")
        if noise_warmup_steps < 0:
            raise GramUserError(f"noise_warmup_steps must be >= 0, got {noise_warmup_steps}")
        if test_noise_sigma > 0 and net.noise_mode != "none":
            raise GramUserError("test_noise_sigma (PTRM) applies to a deterministic net: set net noise='none'")
        self.save_hyperparameters(ignore=hyperparameters_to_ignore(GRAM_PER_RUN_ARGS))
        self.puzzle_embedding_lr, self.puzzle_embedding_weight_decay = puzzle_embedding_lr, puzzle_embedding_weight_decay
        if net.puzzle_embed is not None:
            # The table is updated identically on every rank (see puzzle_embedding.py): DDP must not broadcast
            # its gigabytes from rank 0 at every forward. The attribute is the one torch's DDP reads.
            self._ddp_params_and_buffers_to_ignore = ["net.puzzle_embed.weight"]
        # Every latent position holds a KL, so their sum is L_total times their mean.
        self.elbo = ELBOLoss(loss, beta, beta_start, beta_anneal_steps, net.total_len if kl_reduction == "sum" else 1,
                             kl_balance, net.noise_mode == "mean_only", prior_ce_weight, halt_loss_weight,
                             value_loss_weight, net.out_len, net.total_len, kl_free_bits)
        self.carry_kind, self.value_target = carry, value_target
        self.noise_warmup_steps = noise_warmup_steps
        self.act, self.halt_exploration_prob = act, halt_exploration_prob
        self.compile_step = compile
        self.halt_at_inference, self.test_noise_sigma = halt_at_inference, test_noise_sigma
        self.checkpoint_carry = checkpoint_carry
        self.val_posterior_metrics = SolveMetrics()
        self.carry: Carry | None = None
        self._compiled_step: Callable[..., StepOutput] | None = None

    @property
    def default_depth(self) -> int:
        """The trained number of supervision steps, N_sup."""
        return self.net.N_sup

    @property
    def depth_name(self) -> str:
        return "supervision steps"

    @property
    def description(self) -> str:
        return f"{self.net.noise_mode} noise"

    def solve_metrics(self) -> list[SolveMetrics]:
        return [*super().solve_metrics(), self.val_posterior_metrics]

    # ---- optimizer steps ----

    def on_fit_start(self) -> None:
        if self.net.posterior is None:
            return
        weight = self.elbo.kl_weight_elbo(self.global_step)
        reading = "summed over" if self.elbo.kl_positions > 1 else "averaged over"
        rank_zero_info(f"KL weight on the ELBO scale: {weight:.4g} (beta {self.elbo.kl_weight(self.global_step):g}, KL "
                       f"{reading} {self.net.total_len} latent positions, CE averaged over {self.net.out_len} output "
                       f"tokens)")
        for logger in self.loggers:
            logger.log_hyperparams({"kl_weight_elbo": weight})

    def pending_gradients(self) -> list[torch.Tensor]:
        embed = self.net.puzzle_embed
        return embed.pending_gradients() if embed is not None else []

    def drop_pending_gradients(self) -> None:
        if self.net.puzzle_embed is not None:
            self.net.puzzle_embed.zero_grad()

    def apply_pending_gradients(self) -> None:
        # The sparse sign-SGD update of the puzzle embeddings.
        embed = self.net.puzzle_embed
        if embed is not None and embed.has_gradient:
            lr = self.puzzle_embedding_lr * self.lr_factor(self.global_step)
            embed.step(lr, self.puzzle_embedding_weight_decay)
            self.log("train/puzzle_embedding_lr", lr)

    @property
    def step_fn(self) -> Callable[..., StepOutput]:
        if not self.compile_step:
            return self.net.supervision_step
        if self._compiled_step is None:
            # Compile the bound method, never assign a compiled module: no `_orig_mod.` keys in checkpoints.
            self._compiled_step = torch.compile(self.net.supervision_step)
        return self._compiled_step

    # ---- the ACT carry in checkpoints ----

    def training_state(self) -> dict[str, Any]:
        state = super().training_state()
        if self.checkpoint_carry and self.carry is not None:
            state["carry"] = self.carry.state()
        return state

    def restore_training_state(self, state: dict[str, Any]) -> None:
        super().restore_training_state(state)
        if state.get("carry") is not None:
            self.carry = Carry.from_state(state["carry"], self.device)

    # ---- training ----

    def fresh_examples(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # The rows `_refresh_carry` is about to refill: those that halted at the last step, or all on a new carry.
        B = batch["inputs"].shape[0]
        if self.carry is None or self.carry.steps.shape[0] != B:
            return torch.tensor(B, dtype=torch.long, device=batch["inputs"].device)
        return self.carry.halted.sum()

    def _refresh_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """The carry with the rows that halted at the last step on the examples of `batch` (TRM's ACT)."""
        if self.carry is None or self.carry.steps.shape[0] != batch["inputs"].shape[0]:
            self.carry = Carry.start(self.net, batch)
        self.carry.refresh(self.net, batch)
        return self.carry

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.noise_warmup_steps:
            self.net.train_residual_scale.fill_(min(1.0, self.global_step / self.noise_warmup_steps))
            self.log("train/residual_scale", self.net.train_residual_scale)
        c = self._refresh_carry(batch)
        labels = c.batch["labels"]
        e = self.net.embed_input(c.batch["inputs"], c.batch.get("puzzle_ids"))
        posterior = self.net.posterior is not None
        context = self.net.embed_target(labels) if posterior else None
        out = self.step_fn(c.h, c.l, e, "posterior" if posterior else "prior", context,
                           prior_draw_grad=self.elbo.prior_ce_weight > 0)
        halted = final_values = None
        if self.value_target == "final":  # the rows that end here are known before the loss
            halted = halt_decision(out.halt_logits, c.steps + 1, self.net.N_sup, self.act, self.halt_exploration_prob)
            final_values = self._final_values(c, out, halted)
        terms = self.elbo.terms(out, c.batch["inputs"], labels, self.global_step, self.task, final_values)
        skipped, skip_loss = self.skip_if_nonfinite(terms)
        if skipped:  # under "skip": no update, and every row starts a fresh example
            c.halted = torch.ones_like(c.halted)
            return skip_loss

        with torch.no_grad():
            c.h, c.l = (t.detach() for t in out.next_state(self.carry_kind == "prior_draw"))
            c.steps = c.steps + 1
            if halted is None:
                halted = halt_decision(out.halt_logits, c.steps, self.net.N_sup, self.act, self.halt_exploration_prob)
            c.halted = halted
            logs = {f"train/{k}": v.detach() for k, v in terms.items()}
            logs["train/halt_steps"] = c.steps[c.halted].float().mean() if c.halted.any() else c.steps.float().mean()
            logs.update(noise_stats(out))
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({k: v for k, v in logs.items() if k != "train/loss"})
        if self.guard.mode == "skip":
            self.log("train/skipped_steps", float(self.skipped_steps))
        return terms["loss"]

    def _final_values(self, c: Carry, out: StepOutput, halted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's judged h[:, 0] in each row's trajectory; the value head's predictions (M,) at every
        step of the trajectories that end now (`halted`), and their rows (M,), for `ELBOLoss.terms`."""
        B, n = halted.shape[0], self.net.N_sup
        summary = out.judged_state[:, 0].detach()  # (B, D)
        if c.summaries is None or c.summaries.shape[:2] != (B, n):
            c.summaries = summary.new_zeros(B, n, summary.shape[-1])
        c.summaries[torch.arange(B, device=summary.device), c.steps.clamp(max=n - 1)] = summary
        taken = torch.arange(n, device=summary.device)[None] <= c.steps[:, None]  # (B, n) the trajectory's steps
        rows, steps = (taken & halted[:, None]).nonzero(as_tuple=True)
        return self.net.value_of(c.summaries[rows, steps]), rows

    # ---- evaluation ----

    @property
    def test_sigma(self) -> float:
        """Std of PTRM's test-time noise: only a deterministic net gets it."""
        return self.test_noise_sigma if self.net.noise_mode == "none" else 0.0

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor, depths: list[int], keys: torch.Tensor | None,
                 puzzle_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> Iterator[tuple[int, Readout]]:
        """One trajectory per row rolled out to max(depths) once, read at every depth on the way (a shallower depth
        costs nothing extra). With `halt_at_inference` a row keeps the output of the step at which it halted.
        `labels` switch to posterior rollouts."""
        R = inputs.shape[0]
        halted = torch.zeros(R, dtype=torch.bool, device=inputs.device)
        steps = torch.zeros(R, dtype=torch.long, device=inputs.device)
        final: StepOutput | None = None
        rollout = self.net.rollout(inputs, depths[-1], puzzle_ids, labels, self.test_sigma, self.step_fn,
                                   carry_prior_draw=self.carry_kind == "prior_draw", noise_keys=keys)
        read = lambda: Readout(final.logits.argmax(-1), steps, final.value, final.halt_logits, final.logits)  # noqa: E731
        for depth, out in enumerate(rollout, start=1):
            if final is None or not self.halt_at_inference:
                final = out
            else:  # rows that halted keep the output of the step at which they halted
                final = StepOutput(
                    out.h, out.l,
                    torch.where(halted[:, None, None], final.logits, out.logits),
                    torch.where(halted, final.halt_logits, out.halt_logits),
                    torch.where(halted, final.value, out.value),
                    None,
                )
            steps = steps + (~halted).long()
            if depth in depths:
                yield depth, read()
            if self.halt_at_inference:
                halted = halted | (final.halt_logits > 0)
                if halted.all():  # every row has stopped: deeper readings are this one
                    for deeper in (d for d in depths if d > depth):
                        yield deeper, read()
                    return

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        batch = without_padding(batch)
        if batch is not None and self.net.posterior is not None:
            # Posterior rollouts see the target; the gap to the prior's accuracy exposes the posterior shortcut.
            self.val_posterior_metrics.update(self.sample(batch, 1, selection="first", posterior=True), batch)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.net.posterior is not None:
            post = self.val_posterior_metrics.compute()
            self.log_dict({"val/exact_acc_posterior": post["exact_acc"], "val/token_acc_posterior": post["token_acc"]})
            self.val_posterior_metrics.reset()

    def inference_settings(self) -> dict[str, Any]:
        return {
            **super().inference_settings(), "trained_steps": self.net.N_sup, "halt_at_inference": self.halt_at_inference,
            "test_noise_sigma": self.test_noise_sigma, "noise": self.net.noise_mode,
        }
