"""The LightningModule: deep supervision with ACT, the truncated ELBO, and width / depth sampling."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.trainer.states import TrainerFn

from gram_lightning import losses
from gram_lightning.errors import GramUserError, NonFiniteError, checkpoint_nonfinite, first_nonfinite
from gram_lightning.metrics import SolveMetrics
from gram_lightning.keyed_noise import sample_keys
from gram_lightning.model import GRAM, StepOutput
from gram_lightning.samples import Samples
from gram_lightning.selection import SELECTION_RULES, SelectionRule, select

# Inference knobs are not saved as hyperparameters: `gram test --ckpt_path` restores the saved ones
# over the command line, and these must stay settable per run.
INFERENCE_ARGS = ("num_samples", "num_steps", "selection", "halt_at_inference", "test_noise_sigma", "inference_seed")
# Likewise per run: a run stopped by a NaN must be resumable with `--model.nonfinite skip`.
PER_RUN_ARGS = (*INFERENCE_ARGS, "nonfinite", "checkpoint_carry")
# The checkpoint entry of the training state beyond weights and optimizer: RNG, ACT carry, skipped-step count.
TRAINING_STATE_KEY = "gram_training_state"
# The loss terms a non-finite loss is traced to (the names of `_loss_terms`).
LOSS_TERMS = ("ce", "ce_prior_draw", "kl", "halt_loss", "value_loss")


class CheckpointMismatchError(GramUserError):
    """A checkpoint that does not fit the data it is asked to run on (e.g. ARC tasks it has no embedding for)."""


SolutionChecker = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (inputs (B, L_in), preds (B, L_out)) -> (B,)


@dataclass
class Carry:
    """Per-row training state that persists across optimizer steps (TRM's ACT carry)."""

    h: torch.Tensor  # (B, L_total, D)
    l: torch.Tensor  # (B, L_total, D)
    batch: dict[str, torch.Tensor]  # the example each row is working on
    steps: torch.Tensor  # (B,) supervision steps taken on it
    halted: torch.Tensor  # (B,) replace the row with a fresh example at the next step


def without_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The batch without the rows a distributed evaluation sampler added to even out the ranks (`pad`), so
    that every input is scored exactly once; None when nothing is left."""
    pad = batch.get("pad")
    if pad is None:
        return batch
    keep = ~pad
    if not keep.any():
        return None
    return {k: v[keep] for k, v in batch.items() if k != "pad"}


def _net_args(net: Any) -> dict[str, Any]:
    """The net's settings in saved hyperparameters: the CLI's {"class_path", "init_args"} (else none)."""
    return dict(net.get("init_args") or {}) if isinstance(net, dict) else {}


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
        if prior_ce_weight < 0:
            raise GramUserError(f"prior_ce_weight must be >= 0, got {prior_ce_weight}")
        if prior_ce_weight > 0 and net.noise_mode not in ("learned", "mean_only"):
            raise GramUserError("prior_ce_weight needs a learned prior and posterior (net noise='learned' or 'mean_only')")
        if beta < 0 or (beta_start is not None and (beta_start <= 0 or beta <= 0)):
            raise GramUserError(f"beta must be >= 0, and > 0 with beta_start > 0 for the geometric schedule; got beta {beta}, beta_start {beta_start}")
        if kl_reduction not in ("mean", "sum"):
            raise GramUserError(f"kl_reduction must be 'mean' or 'sum' (over latent positions), got {kl_reduction!r}")
        if beta_anneal_steps < 0:
            raise GramUserError(f"beta_anneal_steps must be >= 0, got {beta_anneal_steps}")
        if carry not in ("posterior", "prior_draw"):
            raise GramUserError(f"carry must be 'posterior' or 'prior_draw', got {carry!r}")
        if carry == "prior_draw" and net.noise_mode not in ("learned", "mean_only"):
            raise GramUserError("carry='prior_draw' needs a learned prior and posterior (net noise='learned' or 'mean_only')")
        if nonfinite not in ("stop", "skip"):
            raise GramUserError(f"nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        if test_noise_sigma > 0 and net.noise_mode != "none":
            raise GramUserError("test_noise_sigma (PTRM) applies to a deterministic net: set net noise='none'")
        # Under the CLI the hyperparameters are the parsed config (net and optimizer as class_path/init_args).
        # From Python they are objects (a module the state dict already holds, an optimizer class) that
        # would make the checkpoint unreadable with torch.load(weights_only=True), as `gram test` reads it.
        from_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=[*PER_RUN_ARGS, *(() if from_cli else ("net", "optimizer"))])
        self.net = net
        self.optimizer_factory = plain_optimizer_factory(optimizer)
        self.warmup_steps = warmup_steps
        self.puzzle_embedding_lr, self.puzzle_embedding_weight_decay = puzzle_embedding_lr, puzzle_embedding_weight_decay
        if net.puzzle_embed is not None:
            # The table is updated identically on every rank (see puzzle_embedding.py): DDP must not broadcast
            # its gigabytes from rank 0 at every forward.
            self._ddp_params_and_buffers_to_ignore = ["net.puzzle_embed.weight"]
        self.beta, self.kl_balance, self.loss_kind = beta, kl_balance, loss
        self.beta_start, self.beta_anneal_steps = beta_start, beta_anneal_steps
        # Every latent position holds a KL, so their sum is L_total times their mean.
        self.kl_positions = net.total_len if kl_reduction == "sum" else 1
        self.prior_ce_weight, self.carry_kind = prior_ce_weight, carry
        self.halt_loss_weight, self.value_loss_weight = halt_loss_weight, value_loss_weight
        self.act, self.halt_exploration_prob = act, halt_exploration_prob
        self.compile_step = compile
        self.val_num_samples = val_num_samples
        self.num_samples, self.num_steps, self.selection = num_samples, num_steps, selection
        self.halt_at_inference, self.test_noise_sigma, self.inference_seed = halt_at_inference, test_noise_sigma, inference_seed
        self.nonfinite = nonfinite
        self.skipped_steps = 0  # steps dropped for a non-finite loss or gradient (nonfinite="skip")
        self._drop_gradients = False  # this step was skipped: on_before_optimizer_step clears its gradients
        self.checkpoint_carry = checkpoint_carry
        self._resumed_state: dict[str, Any] | None = None  # TRAINING_STATE_KEY of the checkpoint a fit resumes

        self.val_metrics = SolveMetrics()
        self.val_posterior_metrics = SolveMetrics()
        self.test_metrics = SolveMetrics()
        self.carry: Carry | None = None
        self._saved_rng: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.solution_checker: SolutionChecker | None = None
        self.canonical_output: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.count_conflicts: SolutionChecker | None = None
        self.task_metric_factories: dict[str, Callable[[], Any] | None] = {}
        # A plain dict, not registered submodules: a generation metric's feature extractor (FID's MNIST
        # classifier) must stay out of the checkpoint and the optimizer.
        self.task_metrics: dict[tuple[str, str], Any] = {}
        self._compiled_step: Callable[..., StepOutput] | None = None

    # ---- set-up ----

    def setup(self, stage: str) -> None:
        self.attach_task(getattr(self.trainer, "datamodule", None) if self._trainer is not None else None)

    def attach_task(self, datamodule: Any) -> None:
        """Take the task's evaluation hooks from its DataModule (done by `setup`; call it when evaluating
        outside a Trainer)."""
        # Optional task hooks of the DataModule: the checker of "a valid solution", a canonical form of outputs
        # equal up to a symmetry (for counting distinct solutions), and a count of violated constraints.
        self.solution_checker = getattr(datamodule, "check_solution", None)
        self.canonical_output = getattr(datamodule, "canonical_output", None)
        self.count_conflicts = getattr(datamodule, "conflict_edges", None)
        # Metrics of the evaluation as a whole, each a factory of torchmetrics objects (or None):
        # - generation_metrics: of the chosen outputs as a set (unconditional tasks: validity / uniqueness, FID / IS);
        # - voting_metrics: of all N samples of every input, pooled over the input's augmented copies (ARC pass@k).
        self.task_metric_factories = {
            kind: getattr(datamodule, kind, None) for kind in ("generation_metrics", "voting_metrics")
        }
        self.task_metrics = {}

    def task_metric(self, kind: str, stage: str) -> Any | None:
        """The task's `kind` metric ("generation_metrics", "voting_metrics") for `stage` ("val", "test"), built on
        first use; None if the task has none."""
        factory = self.task_metric_factories.get(kind)
        if (kind, stage) not in self.task_metrics and factory is not None:
            metric = factory()
            self.task_metrics[kind, stage] = None if metric is None else metric.to(self.device)
        return self.task_metrics.get((kind, stage))

    def generation_metric(self, stage: str) -> Any | None:
        return self.task_metric("generation_metrics", stage)

    def voting_metric(self, stage: str) -> Any | None:
        return self.task_metric("voting_metrics", stage)

    @property
    def reports_solve_metrics(self) -> bool:
        """Accuracy, coverage and the like mean nothing for an image generator (no checker, only metrics of the
        sampled set): those tasks log their generation metrics alone."""
        return self.solution_checker is not None or self.task_metric_factories.get("generation_metrics") is None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the weights before the DataModule's state. The DataModule's check that the
        # checkpoint knows its tasks (ARC's per-task embeddings) runs first here, so that a test on other tasks
        # stops with that message rather than with torch's size mismatch of the embedding table.
        self._resumed_state = checkpoint.get(TRAINING_STATE_KEY)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        self.check_checkpoint(checkpoint, datamodule)

    def check_checkpoint(self, checkpoint: dict[str, Any], datamodule: Any = None) -> None:
        """Raise a one-line error for a checkpoint that does not fit this run: the DataModule's own check of its
        saved state first (ARC: the tasks the puzzle embeddings were trained on), then weights of another shape
        (another task or net size), then NaN / infinite weights (saved after training diverged)."""
        state = checkpoint.get(type(datamodule).__qualname__) if datamodule is not None else None
        try:
            if state is not None:
                datamodule.load_state_dict(state)
        except ValueError as error:
            raise CheckpointMismatchError(str(error)) from None
        table = checkpoint.get("state_dict", {}).get("net.puzzle_embed.weight")
        ours = self.net.puzzle_embed.weight if self.net.puzzle_embed is not None else None
        if (table is None) != (ours is None) or (table is not None and table.shape != ours.shape):
            shape = lambda t: "none" if t is None else f"{t.shape[0]:,} x {t.shape[1]}"  # noqa: E731
            raise CheckpointMismatchError(
                f"the checkpoint has puzzle embeddings {shape(table)}, this data and net need {shape(ours)} "
                f"(tasks x num_variants): test with the data settings of the training run"
            )
        data_name = type(datamodule).__qualname__ if datamodule is not None else None
        theirs, ours = checkpoint.get("state_dict") or {}, self.state_dict()
        differ = [k for k in ours if k in theirs and tuple(getattr(theirs[k], "shape", ())) != tuple(ours[k].shape)]
        missing, extra = [k for k in ours if k not in theirs], [k for k in theirs if k not in ours]
        if not self.strict_loading:  # the user allows missing and unexpected keys; shapes must still agree
            missing, extra = [], []
        if differ or missing or extra:
            data = checkpoint.get("datamodule_hyper_parameters") or {}
            task = data.get("_class_path", "other data")
            if "board_size" in data:
                task += f" (board_size {data['board_size']})"
            trained_net, our_net = (_net_args(h.get("net")) for h in (checkpoint.get("hyper_parameters") or {}, self.hparams))
            keys = ("vocab_size", "seq_len", "out_len", "num_puzzle_ids", "hidden_size", "num_layers", "core",
                    "puzzle_prefix_len", "noise")
            differ_args = [k for k in keys if k in trained_net and k in our_net and trained_net[k] != our_net[k]]
            examples = [f"{k}: {list(theirs[k].shape)} in the checkpoint, {list(ours[k].shape)} here" for k in differ[:2]]
            examples += [f"{k} missing from the checkpoint" for k in missing[:2]]
            examples += [f"{k} not in this net" for k in extra[:2]]
            if differ_args:
                trained = ", ".join(f"{k} {trained_net[k]}" for k in differ_args)
                here = ", ".join(f"{k} {our_net[k]}" for k in differ_args)
                what = f"with {trained}; this run{' on ' + data_name if data_name else ''} builds {here}"
            else:
                what = "with another net"
            raise CheckpointMismatchError(
                f"the checkpoint was trained on {task} {what} ({'; '.join(examples)}): run it with the config of the "
                f"training run (config.yaml in its log folder)"
            )
        bad = checkpoint_nonfinite(checkpoint)
        if bad:
            raise NonFiniteError(
                f"the checkpoint holds NaN or infinite weights ({', '.join(bad)}): it was saved after training "
                f"diverged; use an earlier checkpoint"
            )

    def lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then constant: the schedule of both the main optimizer and the puzzle embeddings."""
        return min(1.0, (step + 1) / max(1, self.warmup_steps))

    def kl_weight(self, step: int) -> float:
        """beta at optimizer step `step`: geometric from beta_start to beta over beta_anneal_steps, then beta."""
        if self.beta_start is None or step >= self.beta_anneal_steps:
            return self.beta
        return self.beta_start * (self.beta / self.beta_start) ** (step / self.beta_anneal_steps)

    def kl_weight_elbo(self, step: int) -> float:
        """The KL's weight on the ELBO's scale (CE summed over the L_out output tokens; 1 is the ELBO) at optimizer
        step `step`: beta x L_out / L_total with the KL per position (kl_reduction "mean"), beta x L_out with the
        KL of the whole latent ("sum"). One unit in which runs of any task and either reading compare."""
        return self.kl_weight(step) * self.kl_positions * self.net.out_len / self.net.total_len

    def on_fit_start(self) -> None:
        if self.net.posterior is None:
            return
        weight = self.kl_weight_elbo(self.global_step)
        reading = "summed over" if self.kl_positions > 1 else "averaged over"
        rank_zero_info(f"KL weight on the ELBO scale: {weight:.4g} (beta {self.kl_weight(self.global_step):g}, KL "
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
        if self._drop_gradients or self._nonfinite_gradients(optimizer):
            # No update at all: AdamW leaves parameters without a gradient (and their moments) untouched.
            self._drop_gradients = False
            optimizer.zero_grad(set_to_none=True)
            if embed is not None:
                embed.zero_grad()
            return
        # The sparse update of the puzzle embeddings.
        if embed is not None and embed.has_gradient:
            lr = self.puzzle_embedding_lr * self.lr_factor(self.global_step)
            embed.step(lr, self.puzzle_embedding_weight_decay)
            self.log("train/puzzle_embedding_lr", lr)

    # ---- non-finite losses and gradients ----

    def _on_any_rank(self, flag: bool) -> bool:
        """`flag` of any DDP rank: every rank must stop or skip together, or the others wait forever."""
        if self._trainer is None or self.trainer.world_size == 1:
            return flag
        return self.trainer.strategy.reduce_boolean_decision(flag, all=False)

    def _nonfinite_step(self, what: str) -> None:
        """Stop the run (nonfinite="stop") or count the step as skipped (the caller drops it)."""
        if self.nonfinite == "stop":
            raise NonFiniteError(
                f"training step {self.global_step}: {what}. Stopped before the optimizer step, so no checkpoint holds "
                f"weights of this step; lower the learning rate or raise warmup_steps, or resume from the last "
                f"checkpoint with --model.nonfinite skip"
            )
        if self.skipped_steps == 0:  # the later ones are counted in train/skipped_steps
            rank_zero_warn(f"training step {self.global_step} skipped: {what}; the run goes on (nonfinite='skip')")
        self.skipped_steps += 1
        self._drop_gradients = True

    def _nonfinite_loss(self, terms: dict[str, torch.Tensor]) -> bool:
        """Whether this step's loss is NaN or infinite (on any rank); raises under nonfinite="stop"."""
        loss = terms["loss"].detach()
        here = not bool(torch.isfinite(loss))
        if not self._on_any_rank(here):
            return False
        bad = [f"{k} = {terms[k].item()}" for k in LOSS_TERMS if k in terms and not bool(torch.isfinite(terms[k]))]
        if bad:
            what = f"non-finite loss term {', '.join(bad)}"
        elif here:
            what = f"non-finite loss {loss.item()} from finite terms (the weighted sum overflowed)"
        else:
            what = "non-finite loss on another DDP rank"
        self._nonfinite_step(what)
        return True

    def _nonfinite_gradients(self, optimizer) -> bool:
        """Whether the gradient norm is NaN or infinite (on any rank); raises under nonfinite="stop"."""
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return False  # fp16: the gradient scaler skips overflowing steps and lowers its scale
        named = [(n, p.grad) for n, p in self.named_parameters() if p.grad is not None]
        grads = [g for _, g in named]
        embed = self.net.puzzle_embed
        pending = embed.pending_gradients() if embed is not None else []
        norm = torch.nn.utils.get_total_norm(grads + pending) if grads or pending else None
        here = norm is not None and not bool(torch.isfinite(norm))
        if not self._on_any_rank(here):
            return False
        if here:
            names = first_nonfinite(dict(named)) or ["net.puzzle_embed (its sparse gradient)"]
            what = f"non-finite gradient norm {norm.item()} (in {', '.join(names)}) from a finite loss"
        else:
            what = "non-finite gradient norm on another DDP rank"
        self._nonfinite_step(what)
        return True

    @property
    def step_fn(self) -> Callable[..., StepOutput]:
        if not self.compile_step:
            return self.net.supervision_step
        if self._compiled_step is None:
            # Compile the bound method, never assign a compiled module: no `_orig_mod.` keys in checkpoints.
            self._compiled_step = torch.compile(self.net.supervision_step)
        return self._compiled_step

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
        if self._trainer is None or self.trainer.world_size > 1 or self.trainer.state.fn != TrainerFn.FITTING:
            return
        state: dict[str, Any] = {"rng_cpu": torch.get_rng_state(), "skipped_steps": self.skipped_steps}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.checkpoint_carry and self.carry is not None:
            c = self.carry
            state["carry"] = {"h": c.h, "l": c.l, "steps": c.steps, "halted": c.halted, "batch": dict(c.batch)}
        checkpoint[TRAINING_STATE_KEY] = state

    def _restore_training_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.skipped_steps = int(state.get("skipped_steps", 0))
        carry = state.get("carry")
        if carry is not None:
            to = lambda t: t.to(self.device)  # noqa: E731
            self.carry = Carry(to(carry["h"]), to(carry["l"]), {k: to(v) for k, v in carry["batch"].items()},
                               to(carry["steps"]), to(carry["halted"]))

    def _enter_inference_rng(self) -> None:
        """Fixed evaluation noise that leaves the training RNG stream where it was."""
        cuda = self.device.type == "cuda"
        # A stack: callbacks sample under their own inference_rng() inside the validation loop's.
        self._saved_rng.append((torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None))
        # Keyed by input where batches carry their index (see sample_depths); this seed covers the rest.
        torch.manual_seed(self.inference_seed)

    def _exit_inference_rng(self) -> None:
        cpu_state, cuda_state = self._saved_rng.pop()
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, self.device)

    @contextmanager
    def inference_rng(self):
        """The evaluation noise of validation / test, for evaluations run outside those loops."""
        self._enter_inference_rng()
        try:
            yield
        finally:
            self._exit_inference_rng()

    # ---- training ----

    def _refresh_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """Rows that halted at the last step start the next example of `batch` from z0 (TRM's ACT)."""
        B = batch["inputs"].shape[0]
        if self.carry is None or self.carry.steps.shape[0] != B:
            h, l = self.net.initial_state(B)
            self.carry = Carry(h.clone(), l.clone(), dict(batch), torch.zeros(B, dtype=torch.long, device=self.device),
                               torch.ones(B, dtype=torch.bool, device=self.device))
        c = self.carry
        fresh = c.halted
        h0, l0 = self.net.initial_state(B)
        c.h = torch.where(fresh[:, None, None], h0.to(c.h.dtype), c.h)
        c.l = torch.where(fresh[:, None, None], l0.to(c.l.dtype), c.l)
        c.steps = torch.where(fresh, 0, c.steps)
        c.batch = {k: torch.where(fresh.view(-1, *[1] * (v.dim() - 1)), v, c.batch[k]) for k, v in batch.items()}
        return c

    def _halt_decision(self, out: StepOutput, steps: torch.Tensor) -> torch.Tensor:
        halted = steps >= self.net.N_sup
        if self.act and self.net.N_sup > 1:
            halted = halted | (out.halt_logits > 0)
            # Exploration: some rows get a random minimum depth so the halt head sees later steps too.
            explore = torch.rand_like(out.halt_logits) < self.halt_exploration_prob
            min_steps = torch.randint_like(steps, 2, self.net.N_sup + 1) * explore
            halted = halted & (steps >= min_steps)
        return halted

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        c = self._refresh_carry(batch)
        labels = c.batch["labels"]
        e = self.net.embed_input(c.batch["inputs"], c.batch.get("puzzle_ids"))
        posterior = self.net.posterior is not None
        context = self.net.embed_target(labels) if posterior else None
        out = self.step_fn(c.h, c.l, e, "posterior" if posterior else "prior", context, prior_draw_grad=self.prior_ce_weight > 0)
        terms = self._loss_terms(out, c.batch["inputs"], labels)
        if self._nonfinite_loss(terms):  # under "skip": no update, and every row starts a fresh example
            c.halted = torch.ones_like(c.halted)
            self.log("train/skipped_steps", float(self.skipped_steps))
            if self.trainer.world_size == 1:
                return None
            # DDP needs a backward on every rank; its gradients are dropped in on_before_optimizer_step.
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

        with torch.no_grad():
            c.h, c.l = (t.detach() for t in out.next_state(self.carry_kind == "prior_draw"))
            c.steps = c.steps + 1
            c.halted = self._halt_decision(out, c.steps)
            logs = {f"train/{k}": v.detach() for k, v in terms.items()}
            logs["train/halt_steps"] = c.steps[c.halted].float().mean() if c.halted.any() else c.steps.float().mean()
            logs.update(self._noise_stats(out))
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({k: v for k, v in logs.items() if k != "train/loss"})
        if self.nonfinite == "skip":
            self.log("train/skipped_steps", float(self.skipped_steps))
        return terms["loss"]

    def _loss_terms(self, out: StepOutput, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = labels != losses.IGNORE_LABEL
        with torch.no_grad():
            preds = out.logits.argmax(-1)
            token_acc, seq_correct = self._agreement(preds, labels, mask)
            judged_preds = preds if out.judged_logits is None else out.judged_logits.argmax(-1)
            judged_acc, judged_correct = self._agreement(judged_preds, labels, mask)
            if self.solution_checker is not None:
                # On a puzzle with several solutions, a valid answer other than the label is right too.
                judged_correct = judged_correct | self.solution_checker(inputs, judged_preds)
                judged_acc = torch.where(judged_correct, 1.0, judged_acc)
        reconstruction = lambda logits: losses.mean_over_tokens(  # noqa: E731
            losses.token_cross_entropy(logits, labels, self.loss_kind), labels).mean()
        ce = reconstruction(out.logits)
        ce_prior = ce.new_zeros(())
        if self.prior_ce_weight > 0 and out.judged_logits is not None:
            ce_prior = reconstruction(out.judged_logits)
        kl = ce.new_zeros(())
        noise = out.noise
        if noise is not None and noise.posterior is not None:
            if self.net.noise_mode == "mean_only":
                kl = losses.balanced_mean_distance(noise.posterior, noise.prior, self.kl_balance).mean()
            else:
                kl = losses.balanced_kl(noise.posterior, noise.prior, self.kl_balance).mean()
        halt = losses.halt_loss(out.halt_logits, judged_correct).mean()
        value = losses.value_loss(out.value, judged_acc).mean()
        beta = self.kl_weight(self.global_step)
        loss = (ce + self.prior_ce_weight * ce_prior + beta * self.kl_positions * kl
                + self.halt_loss_weight * halt + self.value_loss_weight * value)
        terms = {"loss": loss, "ce": ce, "kl": kl, "halt_loss": halt, "value_loss": value,
                 "exact_acc_posterior": seq_correct.float().mean(), "token_acc_posterior": token_acc.mean()}
        if out.judged_logits is not None:
            terms["exact_acc_prior_draw"] = judged_correct.float().mean()
        if self.prior_ce_weight > 0:
            terms["ce_prior_draw"] = ce_prior
        if self.beta_start is not None:
            terms["beta"] = ce.new_tensor(beta)
        if noise is not None and noise.posterior is not None:
            terms["kl_weight_elbo"] = ce.new_tensor(self.kl_weight_elbo(self.global_step))
        return terms

    @staticmethod
    def _agreement(preds: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) token accuracy against the label and (B,) whether every token matches."""
        token_acc = ((preds == labels) & mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return token_acc, ((preds == labels) | ~mask).all(-1)

    @staticmethod
    def _noise_stats(out: StepOutput) -> dict[str, torch.Tensor]:
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

    # ---- sampling ----

    def _check(self, inputs: torch.Tensor, preds: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.solution_checker is not None:
            return self.solution_checker(inputs, preds)
        if labels is None:
            raise ValueError("no solution checker (DataModule.check_solution) and no labels to compare against")
        return ((preds == labels) | (labels == losses.IGNORE_LABEL)).all(-1)

    @property
    def test_sigma(self) -> float:
        """Std of PTRM's test-time noise: only a deterministic net gets it."""
        return self.test_noise_sigma if self.net.noise_mode == "none" else 0.0

    @torch.no_grad()
    def sample(
        self,
        batch: dict[str, torch.Tensor],
        num_samples: int,
        num_steps: int | None = None,
        selection: SelectionRule = "vote",
        posterior: bool = False,
    ) -> Samples:
        """Draw `num_samples` trajectories per input in one batch, `num_steps` supervision steps deep."""
        depth = num_steps or self.net.N_sup
        return dict(self.sample_depths(batch, num_samples, [depth], selection, posterior))[depth]

    @torch.no_grad()
    def sample_depths(
        self,
        batch: dict[str, torch.Tensor],
        num_samples: int,
        depths: list[int],
        selection: SelectionRule = "vote",
        posterior: bool = False,
    ) -> Iterator[tuple[int, Samples]]:
        """Roll N trajectories per input out to max(depths) once, yielding (depth, scored samples) at every
        depth of `depths` on the way (reading a shallower depth costs nothing extra).

        With the batch's `index` (each input's row in its split) every trajectory's noise is a function of
        (inference_seed, index, sample number): an input gets the same samples in any batch and on any DDP rank.
        Posterior rollouts (they see the label) draw from a separate stream.
        """
        inputs, labels = batch["inputs"], batch.get("labels")
        B, N = inputs.shape[0], num_samples
        wanted = sorted(set(depths))
        if not wanted or wanted[0] < 1:
            raise ValueError(f"depths must be supervision step counts >= 1, got {depths}")
        repeat = lambda t: None if t is None else t.repeat_interleave(N, dim=0)  # noqa: E731
        rows_in, rows_labels = repeat(inputs), repeat(labels)
        keys = sample_keys(self.inference_seed, batch["index"], N, stream=int(posterior)) if "index" in batch else None
        halted = torch.zeros(B * N, dtype=torch.bool, device=inputs.device)
        steps = torch.zeros(B * N, dtype=torch.long, device=inputs.device)
        final: StepOutput | None = None
        rollout = self.net.rollout(rows_in, wanted[-1], repeat(batch.get("puzzle_ids")), rows_labels if posterior else None,
                                   self.test_sigma, self.step_fn, carry_prior_draw=self.carry_kind == "prior_draw",
                                   noise_keys=keys)
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
            if depth in wanted:
                yield depth, self._score(final, rows_in, rows_labels, steps, B, N, selection)
            if self.halt_at_inference:
                halted = halted | (final.halt_logits > 0)
                if halted.all():  # every row has stopped: deeper readings are this one
                    for deeper in (d for d in wanted if d > depth):
                        yield deeper, self._score(final, rows_in, rows_labels, steps, B, N, selection)
                    return

    def _score(self, out: StepOutput, rows_in: torch.Tensor, rows_labels: torch.Tensor | None, steps: torch.Tensor,
               B: int, N: int, selection: SelectionRule) -> Samples:
        """Judge the (B * N) outputs of one step with the task and pick one per input."""
        preds = out.logits.argmax(-1)  # (B*N, L_out)
        is_solution = self._check(rows_in, preds, rows_labels).view(B, N)
        conflicts = self.count_conflicts(rows_in, preds).view(B, N) if self.count_conflicts is not None else None
        preds = preds.view(B, N, -1)
        keys = self.canonical_output(preds) if self.canonical_output is not None else preds
        value, halt_logits = out.value.view(B, N), out.halt_logits.view(B, N)
        choice = select(keys, selection, value, halt_logits)
        return Samples(preds, keys, value, halt_logits, is_solution, conflicts, steps.view(B, N), choice.index, choice.score)

    def update_metrics(self, metric: SolveMetrics, batch: dict[str, torch.Tensor], s: Samples) -> None:
        metric.update(s, batch["labels"], batch.get("num_solutions"))

    # ---- evaluation loops ----

    def _update_task_metrics(self, stage: str, batch: dict[str, torch.Tensor], s: Samples) -> None:
        generation, voting = self.generation_metric(stage), self.voting_metric(stage)
        if generation is not None:
            generation.update(batch, s.chosen)
        if voting is not None:
            voting.update(batch, s)

    def _reset_task_metrics(self, stage: str) -> None:
        # At the start of an epoch rather than its end, so that callbacks can still read the last results
        # (the ARC predictions writer reads the ranked answers after `gram test`).
        # Only metrics built already: a metric built now is empty, and building one may be costly (FID's classifier).
        for (_, metric_stage), metric in self.task_metrics.items():
            if metric_stage == stage and metric is not None:
                metric.reset()

    def _log_task_metrics(self, stage: str) -> None:
        for kind in self.task_metric_factories:
            metric = self.task_metric(kind, stage)
            if metric is not None:
                values = metric.compute()
                # A task metric may name its headline value (ARC's pass@2, FID, Sudoku validity) for the bar.
                headline = getattr(metric, "headline", None)
                if headline in values:
                    self.log(f"{stage}/{headline}", values.pop(headline), prog_bar=stage == "val")
                self.log_dict({f"{stage}/{k}": v for k, v in values.items()})

    def on_validation_epoch_start(self) -> None:
        self._enter_inference_rng()
        self._reset_task_metrics("val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = without_padding(batch)
        if batch is None:
            return
        s = self.sample(batch, self.val_num_samples, selection="vote")
        self.update_metrics(self.val_metrics, batch, s)
        self._update_task_metrics("val", batch, s)
        if self.net.posterior is not None:
            # Posterior rollouts see the target; the gap to the prior's accuracy exposes the posterior shortcut.
            self.update_metrics(self.val_posterior_metrics, batch, self.sample(batch, 1, selection="first", posterior=True))

    def on_validation_epoch_end(self) -> None:
        self._exit_inference_rng()
        metrics = {f"val/{k}": v for k, v in self.val_metrics.compute().items()}
        if self.reports_solve_metrics:
            self.log("val/exact_acc", metrics.pop("val/exact_acc"), prog_bar=True)
            self.log_dict(metrics)
        self.val_metrics.reset()
        self._log_task_metrics("val")
        if self.net.posterior is not None:
            post = self.val_posterior_metrics.compute()
            self.log_dict({"val/exact_acc_posterior": post["exact_acc"], "val/token_acc_posterior": post["token_acc"]})
            self.val_posterior_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self._enter_inference_rng()
        self._reset_task_metrics("test")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = without_padding(batch)
        if batch is None:
            return
        s = self.sample(batch, self.num_samples, self.num_steps, self.selection)
        self.update_metrics(self.test_metrics, batch, s)
        self._update_task_metrics("test", batch, s)

    def on_test_epoch_end(self) -> None:
        self._exit_inference_rng()
        if self.reports_solve_metrics:
            self.log_dict({f"test/{k}": v for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()
        self._log_task_metrics("test")

    def on_predict_epoch_start(self) -> None:
        self._enter_inference_rng()

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
        self._exit_inference_rng()

    def inference_settings(self) -> dict[str, Any]:
        """What a test / predict run used, written next to its results."""
        return {
            "num_samples": self.num_samples, "num_steps": self.num_steps or self.net.N_sup,
            "trained_steps": self.net.N_sup, "selection": self.selection, "halt_at_inference": self.halt_at_inference,
            "test_noise_sigma": self.test_noise_sigma, "noise": self.net.noise_mode, "inference_seed": self.inference_seed,
        }
