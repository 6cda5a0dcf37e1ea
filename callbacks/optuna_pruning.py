"""Reports a sweep trial's validation metric to its Optuna study and stops the run when the study prunes it.

`gram sweep` runs each trial as its own `gram fit` process and adds this callback to its command line, so the
trial's config.yaml holds it too: re-running or resuming that config by hand after the sweep finds the trial
finished and reports nothing.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

# The user attributes of a trial this callback writes, read back by `gram sweep` when the run ends.
PRUNED_AT_STEP = "pruned_at_step"
FINAL_METRICS = "metrics"
FINAL_STEP = "step"


class OptunaPruning(L.Callback):
    """Args:
        storage: The study's storage URL (sqlite:///..., postgresql://..., mysql://...).
        study_name: The study (the sweep's name).
        trial_number: The trial this run is.
        monitor: The metric reported at the end of each validation, at the run's global step.
    """

    def __init__(self, storage: str, study_name: str, trial_number: int, monitor: str):
        self.storage = storage
        self.study_name = study_name
        self.trial_number = trial_number
        self.monitor = monitor
        self._trial = None
        self._active = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._active = False
        if stage != "fit":
            return
        active = False
        if trainer.is_global_zero:
            try:
                active = self._open_trial()
            except Exception as error:  # the config re-run where the study is not (another machine, a removed db)
                rank_zero_warn(f"cannot open trial {self.trial_number} of sweep {self.study_name} in {self.storage} "
                               f"({type(error).__name__}: {(str(error).splitlines() or [''])[0]}): this run reports "
                               "nothing to the study")
        self._active = bool(trainer.strategy.broadcast(active, src=0))

    def _open_trial(self) -> bool:
        import optuna

        from gram_lightning.sweep_spec import make_pruner

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.storage.startswith("sqlite:///") and not Path(self.storage[len("sqlite:///"):]).is_file():
            raise FileNotFoundError("no such database")  # opening it would create an empty one
        storage = optuna.storages.RDBStorage(self.storage, engine_kwargs=engine_kwargs(self.storage))
        study_id = storage.get_study_id_from_name(self.study_name)
        pruner_spec = storage.get_study_user_attrs(study_id).get("sweep", {}).get("pruner", {"type": "none"})
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=make_pruner(pruner_spec))
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        state = storage.get_trial(trial_id).state
        if state != optuna.trial.TrialState.RUNNING:
            rank_zero_warn(f"trial {self.trial_number} of sweep {self.study_name} is {state.name}: this run reports "
                           "nothing to the study")
            return False
        self._trial = optuna.trial.Trial(study, trial_id)
        return True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active or trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                self._trial.report(float(value), trainer.global_step)
                prune = self._trial.should_prune()
                if prune:
                    self._trial.set_user_attr(PRUNED_AT_STEP, trainer.global_step)
        if trainer.strategy.broadcast(prune, src=0):
            rank_zero_info(f"trial {self.trial_number} pruned at step {trainer.global_step}: {self.monitor} is "
                           "behind the study's other trials")
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        self._trial.set_user_attr(FINAL_METRICS, metrics)
        self._trial.set_user_attr(FINAL_STEP, trainer.global_step)


def engine_kwargs(url: str) -> dict:
    """SQLAlchemy settings for a study's storage: SQLite waits for other workers' writes instead of failing."""
    return {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
