"""N-Queens and graph coloring through the `gram` CLI, their metrics, and the depth x width scaling grid."""

from pathlib import Path

import pytest

from conftest import build_cli
from gram_lightning.cli import GramCLI
from gram_lightning.scaling import evaluate_grid, plot

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.precision", "32-true",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.num_layers", "1", "--model.net.init_args.N_sup", "2", "--model.net.init_args.T", "2",
        "--model.net.init_args.K", "1", "--model.net.init_args.puzzle_prefix_len", "2",
        "--model.val_num_samples", "3", "--model.num_samples", "4", "--model.warmup_steps", "1"]
TASKS = {
    "nqueens8": ["--data.init_args.board_size", "6", "--data.init_args.batch_size", "16",
                 "--data.init_args.eval_batch_size", "16", "--data.init_args.num_workers", "0",
                 "--data.init_args.epoch_multiplier", "4"],
    "graph_coloring8": ["--data.init_args.num_nodes", "6", "--data.init_args.num_train_graphs", "64",
                        "--data.init_args.num_test_graphs", "16", "--data.init_args.num_val_graphs", "8",
                        "--data.init_args.batch_size", "16", "--data.init_args.num_workers", "0"],
}


def _cli(task: str, tmp_path: Path, *extra: str) -> GramCLI:
    return build_cli(["--config", str(ROOT / "experiments" / f"{task}.yaml"), *TINY, *TASKS[task],
                         "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
                         "--data.init_args.cache_dir", str(tmp_path / "cache"), *extra])


def _ready_for_test(task: str, tmp_path: Path, *extra: str):
    """An untrained module and its task's DataModule, set up to evaluate on the test split."""
    cli = _cli(task, tmp_path, *extra)
    module, datamodule = cli.model.eval(), cli.datamodule
    datamodule.prepare_data()
    datamodule.setup("test")
    module.attach_task(datamodule)
    return module, datamodule


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_config_fits_and_tests_with_its_metrics(task, tmp_path):
    cli = _cli(task, tmp_path)
    cli.trainer.fit(cli.model, cli.datamodule)
    val_metrics = set(cli.trainer.callback_metrics)
    (metrics,) = cli.trainer.test(cli.model, cli.datamodule, verbose=False)
    assert {"test/exact_acc", "test/coverage", "test/distinct_solutions", "test/pass_at_n"} <= set(metrics)
    if task.startswith("graph_coloring"):
        assert cli.model.net.out_len == 6 and cli.model.net.seq_len == 15  # output shorter than the input
        assert "test/conflict_edges" in metrics and "val/conflict_edges" in val_metrics
        assert metrics["test/conflict_edges"] == int(metrics["test/conflict_edges"])  # a count over the test set


def test_scaling_grid_reads_every_depth_of_one_rollout_and_plots(tmp_path):
    module, datamodule = _ready_for_test("graph_coloring8", tmp_path)
    result = evaluate_grid(module, datamodule.test_dataloader(), widths=[1, 3], steps=[1, 3])
    rows = result.table()
    assert [(r["N"], r["steps"]) for r in rows] == [(1, 1), (1, 3), (3, 1), (3, 3)]
    assert all(r["inputs"] == 16 and 0 <= r["coverage"] <= 1 and "conflict_edges" in r for r in rows)
    assert all(r["distinct_solutions"] <= r["N"] for r in rows)
    by = result.by_num_solutions(3, [1, 2, 5])
    assert sum(r["inputs"] for r in by if r["N"] == 1) == 16
    plot(result, tmp_path / "scaling.png", "test", trained_steps=2)
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_scaling_width_one_of_a_deterministic_net_equals_its_width_n(tmp_path):
    module, datamodule = _ready_for_test("nqueens8", tmp_path, "--model.net.init_args.noise", "none")
    rows = evaluate_grid(module, datamodule.test_dataloader(), widths=[1, 4], steps=[2]).table()
    assert rows[0]["exact_acc"] == rows[1]["exact_acc"]  # copies vote for themselves
    assert rows[1]["distinct_solutions"] <= 1.0


def test_inference_residual_switches_between_a_prior_draw_its_mean_and_none(tmp_path):
    import torch

    from gram_lightning.scaling import set_inference_residual

    module, datamodule = _ready_for_test("nqueens8", tmp_path)
    inputs = next(iter(datamodule.test_dataloader()))["inputs"][:2].repeat_interleave(3, 0)  # 2 inputs x 3 rows
    keys = torch.arange(6)
    with torch.no_grad():  # the prior's mean starts at zero: move it, so that "mean" and "none" differ
        for weight in module.net.prior.parameters():
            weight.add_(0.1 * torch.randn_like(weight))

    def logits(residual: str) -> torch.Tensor:
        set_inference_residual(module, residual)
        with torch.no_grad():
            return list(module.generate(inputs, [2], keys))[-1][1].logits.view(2, 3, *inputs.shape[1:], -1)

    sampled, mean, none = logits("sampled"), logits("mean"), logits("none")
    assert not torch.equal(sampled[:, 0], sampled[:, 1])  # each row its own draw
    for fixed in (mean, none):  # no draw: every row of an input the same
        assert torch.equal(fixed[:, 0], fixed[:, 1]) and torch.equal(fixed[:, 0], fixed[:, 2])
    assert not torch.allclose(mean, none)  # the prior's mean moves the state
    trm = _cli("nqueens8", tmp_path / "trm", "--model.net.init_args.noise", "none").model
    with pytest.raises(ValueError, match="none noise"):
        set_inference_residual(trm, "none")
