"""What every model of this project shares as a LightningModule: the task it is scored by, evaluation by sampling N
outputs per input (`sampling.sample_depths`), the metrics of validation / test / predict, the optimizer with its
warm-up, the guard against non-finite steps and the RNG state in checkpoints.

A model family is a subclass that adds its training step and `generate` (how it draws outputs): `GRAMModule`
(`module.py`: GRAM, TRM, HRM and the other recursive models), `ARModule` and `MDLMModule` (`baselines/`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Iterator

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.trainer.states import TrainerFn
from torchmetrics import Metric

from gram_lightning.checkpoint_fit import check_checkpoint_fits
from gram_lightning.errors import GramUserError
from gram_lightning.inference_rng import InferenceRNG
from gram_lightning.metrics import SolveMetrics
from gram_lightning.nonfinite import NonFiniteGuard
from gram_lightning.samples import Samples
from gram_lightning.sampling import Readout, sample_depths, without_padding
from gram_lightning.selection import SELECTION_RULES, SelectionRule
from gram_lightning.task import Task, as_task

# Inference knobs are not saved as hyperparameters: `gram test --ckpt_path` restores the saved ones
# over the command line, and these must stay settable per run.
INFERENCE_ARGS = ("num_samples", "num_steps", "selection", "inference_seed")
# Likewise per run: a run stopped by a NaN must be resumable with `--model.nonfinite skip`.
PER_RUN_ARGS = (*INFERENCE_ARGS, "nonfinite")
# The checkpoint entry of the training state beyond weights and optimizer: RNG, skipped-step count (and GRAM's carry).
TRAINING_STATE_KEY = "gram_training_state"
# The training examples a fit has drawn so far, over all DDP ranks (the same on every rank, so saved by any run).
EXAMPLES_SEEN_KEY = "gram_examples_seen"
# The task's own metrics (`Task.generation_metrics`, `Task.voting_metrics`), logged beside SolveMetrics.
TASK_METRIC_KINDS = ("generation", "voting")


def plain_optimizer_factory(factory: OptimizerCallable) -> OptimizerCallable:
    """jsonargparse hands over partial(call_without_instantiate_context, instantiator, cls, **kwargs), whose
    instantiator references the CLI and its trainer (process handles under DDP): the EMA callback's deep
    copy of the module fails on it. The class and its keyword arguments are all the factory needs."""
    if isinstance(factory, functools.partial) and len(factory.args) == 2 and isinstance(factory.args[1], type):
        return functools.partial(factory.args[1], **factory.keywords)
    return factory


def hyperparameters_to_ignore(per_run: tuple[str, ...]) -> list[str]:
    """What a module's `save_hyperparameters` leaves out: the per-run knobs, and, outside the CLI, the net and the
    optimizer.

    Under the CLI the hyperparameters are the parsed config (net and optimizer as class_path/init_args). From
    Python they are objects (a module the state dict already holds, an optimizer class) that would make the
    checkpoint unreadable with torch.load(weights_only=True), as `gram test` reads it. Lightning sets
    `_given_hyperparameters` while its CLI instantiates the model and offers no public way to tell the two apart.
    """
    from_cli = _given_hyperparameters.get() is not None
    return [*per_run, *(() if from_cli else ("net", "optimizer"))]


class BaseModule(L.LightningModule):
    """A model trained on a task's DataModule and evaluated by sampling N outputs per input, scored by the task.

    Subclasses implement `training_step`, `generate` and `default_depth`, and call `save_hyperparameters`.

    Args:
        net: The network (a plain nn.Module); its vocab / lengths are linked from the DataModule by the CLI.
        optimizer: Optimizer factory taking the parameters.
        warmup_steps: Linear learning-rate warmup, then constant.
        val_num_samples: Outputs sampled per input in validation (majority vote).
        num_samples: Width N of test / predict: outputs sampled per input, in one batch.
        num_steps: Depth of test / predict: GRAM's supervision steps, MDLM's denoising steps (None: the model's
            default); the AR baseline has no depth.
        selection: How test / predict picks one of the N samples: vote, lprm (value head), halt, first. Models
            without value and halt heads (the baselines) offer vote and first.
        inference_seed: Seed of the randomness of validation / test / predict; an input's samples are a function of
            it and the input's index, the same on any number of DDP ranks and at any batch size.
        nonfinite: What a training step with a NaN or infinite loss or gradient norm does: "stop" the run with an
            error naming the step and the term before the optimizer step (every checkpoint stays finite), or
            "skip" it (no update), counted in `train/skipped_steps`. Not saved with the checkpoint.
    """

    has_value_head = False  # a value (LPRM) and a halt head, which selection "lprm" and "halt" read
    net_type: type[torch.nn.Module] = torch.nn.Module  # the kind of net the family trains
    net_config = ""  # the config that sets that net, named when another kind is given

    def __init__(
        self,
        net: torch.nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 2000,
        val_num_samples: int = 1,
        num_samples: int = 1,
        num_steps: int | None = None,
        selection: SelectionRule = "vote",
        inference_seed: int = 1234,
        nonfinite: str = "stop",
    ):
        if not isinstance(net, self.net_type):
            where = f" ({self.net_config})" if self.net_config else ""
            raise GramUserError(f"{type(self).__name__} needs a {self.net_type.__name__} net{where}, got {type(net).__name__}")
        super().__init__()
        if selection not in SELECTION_RULES:
            raise GramUserError(f"selection must be one of {SELECTION_RULES}, got {selection!r}")
        if selection in ("lprm", "halt") and not self.has_value_head:
            raise GramUserError(f"selection {selection!r} reads a value or halt head, which {type(self).__name__} "
                                f"does not have: use 'vote' or 'first'")
        if num_samples < 1 or val_num_samples < 1:
            raise GramUserError("num_samples and val_num_samples must be >= 1")
        if num_steps is not None and num_steps < 1:
            raise GramUserError(f"num_steps must be >= 1 (or null for the model's default), got {num_steps}")
        self.net = net
        self.optimizer_factory = plain_optimizer_factory(optimizer)
        self.warmup_steps = warmup_steps
        self.val_num_samples = val_num_samples
        self.num_samples, self.num_steps, self.selection = num_samples, num_steps, selection
        self.inference_seed = inference_seed
        self.guard = NonFiniteGuard(nonfinite)
        # Training examples drawn so far, summed over DDP ranks (`train/examples`): a 0-dim tensor, so that counting
        # never waits for the device.
        self.examples_seen = torch.zeros((), dtype=torch.long)
        self._resumed_state: dict[str, Any] | None = None  # TRAINING_STATE_KEY of the checkpoint a fit resumes
        # Set by the `gram` CLI once it has checked the --ckpt_path checkpoint itself (before any log folder is made):
        # the load that follows then skips the same shape and NaN scan.
        self.checkpoint_checked = False
        self.val_metrics = SolveMetrics()
        self.test_metrics = SolveMetrics()
        self._inference_rng = InferenceRNG()
        self.task = Task()  # the defaults until `setup` attaches the DataModule
        # A plain dict, not registered submodules: a generation metric's feature extractor (FID's MNIST
        # classifier) must stay out of the checkpoint and the optimizer.
        self.task_metrics: dict[tuple[str, str], Metric | None] = {}

    # ---- what a model family adds ----

    @property
    def default_depth(self) -> int:
        """The depth of an evaluation that names none (`num_steps` None)."""
        raise NotImplementedError

    @property
    def depth_name(self) -> str:
        """What one unit of depth is, for tables: "supervision steps" (GRAM), "denoising steps" (MDLM)."""
        return "steps"

    @property
    def description(self) -> str:
        """The model in a few words, for the titles of tables and plots."""
        return type(self).__name__

    def generate(self, inputs: torch.Tensor, depths: list[int], keys: torch.Tensor | None,
                 puzzle_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> Iterator[tuple[int, Readout]]:
        """Draw one output per row of `inputs` (B*N, L_in) at each depth of `depths` (sorted), yielding (depth,
        Readout). `keys` (B*N,) make each row's draws a function of its key (`keyed_noise.py`); None: torch's RNG.
        `labels` (B*N, L_out), given only for posterior rollouts, which only GRAM has."""
        raise NotImplementedError

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
        for metric in self.solve_metrics():
            metric.violations_name = self.task.violations_name
        self.task_metrics = {}

    def solve_metrics(self) -> list[SolveMetrics]:
        """Every SolveMetrics object of the module (a subclass adds its own)."""
        return [self.val_metrics, self.test_metrics]

    def task_metric(self, kind: str, stage: str) -> Metric | None:
        """The task's `kind` metric ("generation", "voting": `Task.generation_metrics`, `Task.voting_metrics`) for
        `stage` ("val", "test"), built on first use; None if the task has none."""
        if (kind, stage) not in self.task_metrics:
            metric = self.task.generation_metrics() if kind == "generation" else self.task.voting_metrics()
            self.task_metrics[kind, stage] = None if metric is None else metric.to(self.device)
        return self.task_metrics[kind, stage]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.examples_seen = torch.tensor(int(checkpoint.get(EXAMPLES_SEEN_KEY, 0)), dtype=torch.long)
        # Lightning restores the weights before the DataModule's state. The DataModule's check that the
        # checkpoint fits its data (ARC's per-task embeddings) runs first here, so that a test on other tasks
        # stops with that message rather than with torch's size mismatch of the embedding table.
        self._resumed_state = checkpoint.get(TRAINING_STATE_KEY)
        if self.checkpoint_checked:
            self.checkpoint_checked = False
            return
        trainer = self._attached_trainer()
        self.check_checkpoint(checkpoint, trainer.datamodule if trainer is not None else None)

    def check_checkpoint(self, checkpoint: dict[str, Any], datamodule: Task | None = None) -> None:
        """Raise a one-line error for a checkpoint that does not fit this run on `datamodule` (see
        `checkpoint_fit.check_checkpoint_fits`)."""
        check_checkpoint_fits(checkpoint, self.state_dict(), self.hparams, self.strict_loading, datamodule)

    # ---- optimizer steps ----

    def lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then constant."""
        return min(1.0, (step + 1) / max(1, self.warmup_steps))

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.lr_factor(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer) -> None:
        # After backward (all micro-batches), before gradient clipping and the main step.
        if self.guard.drop_gradients or self._nonfinite_gradients(self.pending_gradients()):
            # No update at all: AdamW leaves parameters without a gradient (and their moments) untouched.
            self.guard.drop_gradients = False
            optimizer.zero_grad(set_to_none=True)
            self.drop_pending_gradients()
            return
        self.apply_pending_gradients()

    def pending_gradients(self) -> list[torch.Tensor]:
        """Gradients of parameters updated outside the optimizer (GRAM's sparse puzzle embeddings), which the
        non-finite check covers too; none by default."""
        return []

    def drop_pending_gradients(self) -> None:
        """Discard `pending_gradients` of a skipped step."""

    def apply_pending_gradients(self) -> None:
        """The update of the parameters outside the optimizer, after a step whose gradients are finite."""

    def _on_any_rank(self, flag: bool) -> bool:
        """`flag` of any DDP rank: a non-finite step stops or is skipped on every rank together."""
        trainer = self._attached_trainer()
        if trainer is None or trainer.world_size == 1:
            return flag
        return trainer.strategy.reduce_boolean_decision(flag, all=False)

    def _nonfinite_gradients(self, pending: list[torch.Tensor]) -> bool:
        """Whether this step's gradient norm (with `pending` gradients applied outside the optimizer) is NaN or
        infinite on any rank (see NonFiniteGuard)."""
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return False  # fp16: the gradient scaler skips overflowing steps and lowers its scale
        grads = {n: p.grad for n, p in self.named_parameters() if p.grad is not None}
        return self.guard.gradients(grads, pending, self.global_step, self._on_any_rank)

    def skip_if_nonfinite(self, terms: dict[str, torch.Tensor]) -> tuple[bool, torch.Tensor | None]:
        """(skipped, what training_step returns then) for a step whose loss ("loss" of `terms`) is NaN or infinite
        on any rank: under "stop" the guard raises; under "skip" the step makes no update. DDP needs a backward on
        every rank, so there it gets a zero loss whose gradients `on_before_optimizer_step` drops."""
        if not self.guard.loss(terms, self.global_step, self._on_any_rank):
            return False, None
        self.log("train/skipped_steps", float(self.skipped_steps))
        if self.trainer.world_size == 1:
            return True, None
        return True, sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    @property
    def skipped_steps(self) -> int:
        """Training steps dropped for a non-finite loss or gradient (nonfinite="skip")."""
        return self.guard.skipped_steps

    # ---- the examples a fit has drawn ----

    def fresh_examples(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """How many new training examples this step starts on this rank (a 0-dim long tensor): every row of the
        batch by default; GRAM, whose rows keep an example for up to N_sup steps, counts the rows it refills."""
        return torch.tensor(batch["inputs"].shape[0], dtype=torch.long, device=batch["inputs"].device)

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Logged as train/examples: the x axis on which models whose step costs differ (GRAM's carry, AR's single
        # pass) compare by the data they have seen rather than by their steps.
        fresh = self.fresh_examples(batch)
        trainer = self._attached_trainer()
        if trainer is not None and trainer.world_size > 1:
            fresh = trainer.strategy.reduce(fresh, reduce_op="sum")
        self.examples_seen = self.examples_seen.to(fresh.device) + fresh
        if trainer is not None:
            self.log("train/examples", self.examples_seen.float())

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
            self.restore_training_state(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[EXAMPLES_SEEN_KEY] = int(self.examples_seen)
        # Per-process state: under DDP rank 0's would be wrong for every other rank.
        trainer = self._attached_trainer()
        if trainer is None or trainer.world_size > 1 or trainer.state.fn != TrainerFn.FITTING:
            return
        checkpoint[TRAINING_STATE_KEY] = self.training_state()

    def training_state(self) -> dict[str, Any]:
        """What a resumed single-process fit needs beyond weights, optimizer and data order (a subclass adds its
        own entries)."""
        state: dict[str, Any] = {"rng_cpu": torch.get_rng_state(), "skipped_steps": self.skipped_steps}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def restore_training_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.guard.skipped_steps = int(state.get("skipped_steps", 0))

    # ---- evaluation ----

    def inference_rng(self):
        """The evaluation randomness of validation / test (a context manager), for evaluations run outside those
        loops."""
        return self._inference_rng.scope(self.inference_seed, self.device)

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode and the evaluation randomness (`inference_rng`) for an evaluation run outside Lightning's loops
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
        """Draw `num_samples` outputs per input in one batch, `num_steps` deep (default: `default_depth`), scored by
        the task (see `sampling.sample_depths`)."""
        depth = num_steps or self.default_depth
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

    def on_validation_epoch_end(self) -> None:
        self._inference_rng.exit(self.device)
        self._log_metrics("val", self.val_metrics)

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
            "model": type(self).__name__, "num_samples": self.num_samples,
            "num_steps": self.num_steps or self.default_depth, "selection": self.selection,
            "inference_seed": self.inference_seed,
        }
