"""The LightningModule: deep supervision with ACT, the truncated ELBO (`losses.ELBOLoss`), and evaluation by
sampling (`sampling.sample_depths`) scored through the DataModule's task (`task.Task`)."""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Callable, Literal

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import Metric

from gram_lightning.act import Carry, halt_decision
from gram_lightning.checkpoint_fit import check_checkpoint_fits
from gram_lightning.errors import GramUserError
from gram_lightning.inference_rng import InferenceRNG
from gram_lightning.losses import ELBOLoss, noise_stats
from gram_lightning.metrics import SolveMetrics
from gram_lightning.model import GRAM, StepOutput
from gram_lightning.nonfinite import NonFiniteGuard
from gram_lightning.samples import Samples
from gram_lightning.sampling import sample_depths, without_padding
from gram_lightning.selection import SELECTION_RULES, SelectionRule
from gram_lightning.task import Task, as_task

# Inference knobs are not saved as hyperparameters: `gram test --ckpt_path` restores the saved ones
# over the command line, and these must stay settable per run.
INFERENCE_ARGS = ("num_samples", "num_steps", "selection", "halt_at_inference", "test_noise_sigma", "inference_seed")
# Likewise per run: a run stopped by a NaN must be resumable with `--model.nonfinite skip`.
PER_RUN_ARGS = (*INFERENCE_ARGS, "nonfinite", "checkpoint_carry")
# The checkpoint entry of the training state beyond weights and optimizer: RNG, ACT carry, skipped-step count.
TRAINING_STATE_KEY = "gram_training_state"
# The task's own metrics (`Task.generation_metrics`, `Task.voting_metrics`), logged beside SolveMetrics.
TASK_METRIC_KINDS = ("generation", "voting")


def plain_optimizer_factory(factory: OptimizerCallable) -> OptimizerCallable:
    """jsonargparse hands over partial(call_without_instantiate_context, instantiator, cls, **kwargs), whose
    instantiator references the CLI and its trainer (process handles under DDP): the EMA callback's deep
    copy of the module fails on it. The class and its keyword arguments are all the factory needs."""
    if isinstance(factory, functools.partial) and len(factory.args) == 2 and isinstance(factory.args[1], type):
        return functools.partial(factory.args[1], **factory.keywords)
    return factory


class GRAMModule(L.LightningModule):
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
        kl_reduction: Literal["mean", "sum"] = "mean",
        kl_balance: float = 0.8,
        prior_ce_weight: float = 0.0,
        carry: Literal["posterior", "prior_draw"] = "posterior",
        loss: Literal["stablemax", "softmax"] = "stablemax",
        halt_loss_weight: float = 0.5,
        value_loss_weight: float = 0.5,
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
        super().__init__()
        if selection not in SELECTION_RULES:
            raise GramUserError(f"selection must be one of {SELECTION_RULES}, got {selection!r}")
        if num_samples < 1 or val_num_samples < 1:
            raise GramUserError("num_samples and val_num_samples must be >= 1")
        if prior_ce_weight > 0 and net.noise_mode not in ("learned", "mean_only"):
            raise GramUserError("prior_ce_weight needs a learned prior and posterior (net noise='learned' or 'mean_only')")
        if kl_reduction not in ("mean", "sum"):
            raise GramUserError(f"kl_reduction must be 'mean' or 'sum' (over latent positions), got {kl_reduction!r}")
        if carry not in ("posterior", "prior_draw"):
            raise GramUserError(f"carry must be 'posterior' or 'prior_draw', got {carry!r}")
        if carry == "prior_draw" and net.noise_mode not in ("learned", "mean_only"):
            raise GramUserError("carry='prior_draw' needs a learned prior and posterior (net noise='learned' or 'mean_only')")
        if test_noise_sigma > 0 and net.noise_mode != "none":
            raise GramUserError("test_noise_sigma (PTRM) applies to a deterministic net: set net noise='none'")
        # Under the CLI the hyperparameters are the parsed config (net and optimizer as class_path/init_args).
        # From Python they are objects (a module the state dict already holds, an optimizer class) that
        # would make the checkpoint unreadable with torch.load(weights_only=True), as `gram test` reads it.
        # Lightning sets `_given_hyperparameters` while its CLI instantiates the model and offers no public way
        # to tell the two apart.
        from_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=[*PER_RUN_ARGS, *(() if from_cli else ("net", "optimizer"))])
        self.net = net
        self.optimizer_factory = plain_optimizer_factory(optimizer)
        self.warmup_steps = warmup_steps
        self.puzzle_embedding_lr, self.puzzle_embedding_weight_decay = puzzle_embedding_lr, puzzle_embedding_weight_decay
        if net.puzzle_embed is not None:
            # The table is updated identically on every rank (see puzzle_embedding.py): DDP must not broadcast
            # its gigabytes from rank 0 at every forward. The attribute is the one torch's DDP reads.
            self._ddp_params_and_buffers_to_ignore = ["net.puzzle_embed.weight"]
        # Every latent position holds a KL, so their sum is L_total times their mean.
        self.elbo = ELBOLoss(loss, beta, beta_start, beta_anneal_steps, net.total_len if kl_reduction == "sum" else 1,
                             kl_balance, net.noise_mode == "mean_only", prior_ce_weight, halt_loss_weight,
                             value_loss_weight, net.out_len, net.total_len)
        self.carry_kind = carry
        self.act, self.halt_exploration_prob = act, halt_exploration_prob
        self.compile_step = compile
        self.val_num_samples = val_num_samples
        self.num_samples, self.num_steps, self.selection = num_samples, num_steps, selection
        self.halt_at_inference, self.test_noise_sigma, self.inference_seed = halt_at_inference, test_noise_sigma, inference_seed
        self.guard = NonFiniteGuard(nonfinite)
        self.checkpoint_carry = checkpoint_carry
        self._resumed_state: dict[str, Any] | None = None  # TRAINING_STATE_KEY of the checkpoint a fit resumes

        self.val_metrics = SolveMetrics()
        self.val_posterior_metrics = SolveMetrics()
        self.test_metrics = SolveMetrics()
        self.carry: Carry | None = None
        self._inference_rng = InferenceRNG()
        self.task = Task()  # the defaults until `setup` attaches the DataModule
        # A plain dict, not registered submodules: a generation metric's feature extractor (FID's MNIST
        # classifier) must stay out of the checkpoint and the optimizer.
        self.task_metrics: dict[tuple[str, str], Metric | None] = {}
        self._compiled_step: Callable[..., StepOutput] | None = None

    # ---- set-up ----

    def _attached_trainer(self) -> L.Trainer | None:
        """The Trainer running this module; None for a module used on its own (tests, benchmarks). Lightning's
        public `trainer` property raises when there is none, and that is its only public test for it."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def setup(self, stage: str) -> None:
        self.attach_task(self.trainer.datamodule)

    def attach_task(self, datamodule: Task | None) -> None:
        """Evaluate through this DataModule's task (done by `setup`; call it when evaluating outside a Trainer).
        None: the defaults of `Task`, which judge outputs by their label."""
        self.task = as_task(datamodule)
        for metric in (self.val_metrics, self.val_posterior_metrics, self.test_metrics):
            metric.violations_name = self.task.violations_name
        self.task_metrics = {}

    def task_metric(self, kind: str, stage: str) -> Metric | None:
        """The task's `kind` metric ("generation", "voting": `Task.generation_metrics`, `Task.voting_metrics`) for
        `stage` ("val", "test"), built on first use; None if the task has none."""
        if (kind, stage) not in self.task_metrics:
            metric = self.task.generation_metrics() if kind == "generation" else self.task.voting_metrics()
            self.task_metrics[kind, stage] = None if metric is None else metric.to(self.device)
        return self.task_metrics[kind, stage]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the weights before the DataModule's state. The DataModule's check that the
        # checkpoint fits its data (ARC's per-task embeddings) runs first here, so that a test on other tasks
        # stops with that message rather than with torch's size mismatch of the embedding table.
        self._resumed_state = checkpoint.get(TRAINING_STATE_KEY)
        trainer = self._attached_trainer()
        self.check_checkpoint(checkpoint, trainer.datamodule if trainer is not None else None)

    def check_checkpoint(self, checkpoint: dict[str, Any], datamodule: Task | None = None) -> None:
        """Raise a one-line error for a checkpoint that does not fit this run on `datamodule` (see
        `checkpoint_fit.check_checkpoint_fits`)."""
        check_checkpoint_fits(checkpoint, self.state_dict(), self.hparams, self.strict_loading, datamodule)

    # ---- optimizer steps ----

    def lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then constant: the schedule of both the main optimizer and the puzzle embeddings."""
        return min(1.0, (step + 1) / max(1, self.warmup_steps))

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

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.lr_factor(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer) -> None:
        # After backward (all micro-batches), before gradient clipping and the main step.
        embed = self.net.puzzle_embed
        if self.guard.drop_gradients or self._nonfinite_gradients():
            # No update at all: AdamW leaves parameters without a gradient (and their moments) untouched.
            self.guard.drop_gradients = False
            optimizer.zero_grad(set_to_none=True)
            if embed is not None:
                embed.zero_grad()
            return
        # The sparse update of the puzzle embeddings.
        if embed is not None and embed.has_gradient:
            lr = self.puzzle_embedding_lr * self.lr_factor(self.global_step)
            embed.step(lr, self.puzzle_embedding_weight_decay)
            self.log("train/puzzle_embedding_lr", lr)

    def _on_any_rank(self, flag: bool) -> bool:
        """`flag` of any DDP rank: a non-finite step stops or is skipped on every rank together."""
        trainer = self._attached_trainer()
        if trainer is None or trainer.world_size == 1:
            return flag
        return trainer.strategy.reduce_boolean_decision(flag, all=False)

    def _nonfinite_gradients(self) -> bool:
        """Whether this step's gradient norm is NaN or infinite on any rank (see NonFiniteGuard)."""
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return False  # fp16: the gradient scaler skips overflowing steps and lowers its scale
        grads = {n: p.grad for n, p in self.named_parameters() if p.grad is not None}
        pending = self.net.puzzle_embed.pending_gradients() if self.net.puzzle_embed is not None else []
        return self.guard.gradients(grads, pending, self.global_step, self._on_any_rank)

    @property
    def skipped_steps(self) -> int:
        """Training steps dropped for a non-finite loss or gradient (nonfinite="skip")."""
        return self.guard.skipped_steps

    @property
    def step_fn(self) -> Callable[..., StepOutput]:
        if not self.compile_step:
            return self.net.supervision_step
        if self._compiled_step is None:
            # Compile the bound method, never assign a compiled module: no `_orig_mod.` keys in checkpoints.
            self._compiled_step = torch.compile(self.net.supervision_step)
        return self._compiled_step

    # ---- the training RNG and its state in checkpoints ----

    def _rank_seed(self, base: int) -> int:
        # One global seed would give every DDP rank the same noise.
        return base + 1_000_003 * self.global_rank

    def on_train_start(self) -> None:
        base = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed() % 2**31))
        state, self._resumed_state = self._resumed_state, None
        # A resumed run must not replay the noise of step 0 (under DDP, where no RNG state was saved).
        torch.manual_seed(self._rank_seed(base + self.global_step))
        if state is not None and self.trainer.world_size == 1:
            self._restore_training_state(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Per-process state: under DDP rank 0's would be wrong for every other rank.
        trainer = self._attached_trainer()
        if trainer is None or trainer.world_size > 1 or trainer.state.fn != TrainerFn.FITTING:
            return
        state: dict[str, Any] = {"rng_cpu": torch.get_rng_state(), "skipped_steps": self.skipped_steps}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.checkpoint_carry and self.carry is not None:
            state["carry"] = self.carry.state()
        checkpoint[TRAINING_STATE_KEY] = state

    def _restore_training_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.guard.skipped_steps = int(state.get("skipped_steps", 0))
        if state.get("carry") is not None:
            self.carry = Carry.from_state(state["carry"], self.device)

    # ---- training ----

    def _refresh_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """The carry with the rows that halted at the last step on the examples of `batch` (TRM's ACT)."""
        if self.carry is None or self.carry.steps.shape[0] != batch["inputs"].shape[0]:
            self.carry = Carry.start(self.net, batch)
        self.carry.refresh(self.net, batch)
        return self.carry

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        c = self._refresh_carry(batch)
        labels = c.batch["labels"]
        e = self.net.embed_input(c.batch["inputs"], c.batch.get("puzzle_ids"))
        posterior = self.net.posterior is not None
        context = self.net.embed_target(labels) if posterior else None
        out = self.step_fn(c.h, c.l, e, "posterior" if posterior else "prior", context,
                           prior_draw_grad=self.elbo.prior_ce_weight > 0)
        terms = self.elbo.terms(out, c.batch["inputs"], labels, self.global_step, self.task)
        if self.guard.loss(terms, self.global_step, self._on_any_rank):
            # Under "skip": no update, and every row starts a fresh example.
            c.halted = torch.ones_like(c.halted)
            self.log("train/skipped_steps", float(self.skipped_steps))
            if self.trainer.world_size == 1:
                return None
            # DDP needs a backward on every rank; its gradients are dropped in on_before_optimizer_step.
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

        with torch.no_grad():
            c.h, c.l = (t.detach() for t in out.next_state(self.carry_kind == "prior_draw"))
            c.steps = c.steps + 1
            c.halted = halt_decision(out.halt_logits, c.steps, self.net.N_sup, self.act, self.halt_exploration_prob)
            logs = {f"train/{k}": v.detach() for k, v in terms.items()}
            logs["train/halt_steps"] = c.steps[c.halted].float().mean() if c.halted.any() else c.steps.float().mean()
            logs.update(noise_stats(out))
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({k: v for k, v in logs.items() if k != "train/loss"})
        if self.guard.mode == "skip":
            self.log("train/skipped_steps", float(self.skipped_steps))
        return terms["loss"]

    # ---- evaluation ----

    @property
    def test_sigma(self) -> float:
        """Std of PTRM's test-time noise: only a deterministic net gets it."""
        return self.test_noise_sigma if self.net.noise_mode == "none" else 0.0

    def inference_rng(self):
        """The evaluation noise of validation / test (a context manager), for evaluations run outside those loops."""
        return self._inference_rng.scope(self.inference_seed, self.device)

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode and the evaluation noise (`inference_rng`) for an evaluation run outside Lightning's loops
        (the width report, the scaling grid); the training mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            with self.inference_rng():
                yield
        finally:
            self.train(was_training)

    def sample(self, batch: dict[str, torch.Tensor], num_samples: int, num_steps: int | None = None,
               selection: SelectionRule = "vote", posterior: bool = False) -> Samples:
        """Draw `num_samples` trajectories per input in one batch, `num_steps` supervision steps deep (default the
        trained N_sup), scored by the task (see `sampling.sample_depths`)."""
        depth = num_steps or self.net.N_sup
        return dict(sample_depths(self, batch, num_samples, [depth], selection, posterior))[depth]

    def _update_metrics(self, stage: str, solve: SolveMetrics, batch: dict[str, torch.Tensor], s: Samples) -> None:
        solve.update(s, batch)
        generation, voting = self.task_metric("generation", stage), self.task_metric("voting", stage)
        if generation is not None:
            generation.update(batch, s.chosen)
        if voting is not None:
            voting.update(batch, s)

    def _log_metrics(self, stage: str, solve: SolveMetrics) -> None:
        """Log (and reset) the solve metrics where the task reports them, then the task's own metrics."""
        if self.task.reports_solve_metrics:
            values = solve.compute()
            self.log(f"{stage}/exact_acc", values.pop("exact_acc"), prog_bar=stage == "val")
            self.log_dict({f"{stage}/{k}": v for k, v in values.items()})
        solve.reset()
        for kind in TASK_METRIC_KINDS:
            metric = self.task_metric(kind, stage)
            if metric is not None:
                values = metric.compute()
                # A task metric names its headline value (ARC's pass@2, FID, Sudoku validity) for the bar.
                if metric.headline in values:
                    self.log(f"{stage}/{metric.headline}", values.pop(metric.headline), prog_bar=stage == "val")
                self.log_dict({f"{stage}/{k}": v for k, v in values.items()})

    def _start_evaluation(self, stage: str) -> None:
        self._inference_rng.enter(self.inference_seed, self.device)
        # Task metrics are reset when an evaluation starts rather than when it ends, so that callbacks can still
        # read the last results (the ARC predictions writer reads the ranked answers after `gram test`). Only
        # metrics built already: building one may be costly (FID's classifier), and a new one is empty.
        for (_, metric_stage), metric in self.task_metrics.items():
            if metric_stage == stage and metric is not None:
                metric.reset()

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = without_padding(batch)
        if batch is None:
            return
        self._update_metrics("val", self.val_metrics, batch, self.sample(batch, self.val_num_samples, selection="vote"))
        if self.net.posterior is not None:
            # Posterior rollouts see the target; the gap to the prior's accuracy exposes the posterior shortcut.
            self.val_posterior_metrics.update(self.sample(batch, 1, selection="first", posterior=True), batch)

    def on_validation_epoch_end(self) -> None:
        self._inference_rng.exit(self.device)
        self._log_metrics("val", self.val_metrics)
        if self.net.posterior is not None:
            post = self.val_posterior_metrics.compute()
            self.log_dict({"val/exact_acc_posterior": post["exact_acc"], "val/token_acc_posterior": post["token_acc"]})
            self.val_posterior_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = without_padding(batch)
        if batch is None:
            return
        self._update_metrics("test", self.test_metrics, batch, self.sample(batch, self.num_samples, self.num_steps, self.selection))

    def on_test_epoch_end(self) -> None:
        self._inference_rng.exit(self.device)
        self._log_metrics("test", self.test_metrics)

    def on_predict_epoch_start(self) -> None:
        self._inference_rng.enter(self.inference_seed, self.device)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any] | None:
        batch = without_padding(batch)
        if batch is None:
            return None
        s = self.sample(batch, self.num_samples, self.num_steps, self.selection)
        return {
            "index": batch["index"], "inputs": batch["inputs"], "labels": batch.get("labels"), "samples": s.preds, "chosen": s.chosen,
            "score": s.score, "chosen_index": s.chosen_index, "is_solution": s.is_solution, "value": s.value,
            "steps": s.steps,
        }

    def on_predict_epoch_end(self) -> None:
        self._inference_rng.exit(self.device)

    def inference_settings(self) -> dict[str, Any]:
        """What a test / predict run used, written next to its results."""
        return {
            "num_samples": self.num_samples, "num_steps": self.num_steps or self.net.N_sup,
            "trained_steps": self.net.N_sup, "selection": self.selection, "halt_at_inference": self.halt_at_inference,
            "test_noise_sigma": self.test_noise_sigma, "noise": self.net.noise_mode, "inference_seed": self.inference_seed,
        }
