"""`gram test` on 2 DDP ranks (CPU, gloo) gives exactly the metrics of 1 rank on the same checkpoint."""

import json
from pathlib import Path

import pytest
import torch

from datamodules.puzzle_data import EvenShards, PuzzleBatches
from tests.test_cli import ROOT, run_gram


class _Rows(PuzzleBatches):
    def batch(self, index):
        return {"inputs": self.data[index]}


def test_even_shards_cover_every_input_once_and_pad_the_short_ranks():
    data = _Rows(torch.arange(11))
    shards = [list(EvenShards(data, 3, rank)) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    real = sorted(i for s in shards for i in s if i >= 0)
    assert real == list(range(11)) and sum(i < 0 for s in shards for i in s) == 1
    batch = data.__getitems__(shards[2])  # [2, 5, 8, -1]
    assert batch["pad"].tolist() == [False, False, False, True] and batch["index"].tolist() == [2, 5, 8, 0]


def coloring_args(tmp_path: Path, *extra: str) -> list[str]:
    """8-node graph coloring shrunk to seconds; 13 test graphs so that 2 ranks split them unevenly."""
    return [
        "--config", str(ROOT / "experiments" / "graph_coloring8_cpu.yaml"),
        "--trainer.max_steps", "20", "--trainer.max_time", "null", "--trainer.val_check_interval", "20",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.num_layers", "1", "--model.net.init_args.N_sup", "2", "--model.warmup_steps", "5",
        "--model.num_samples", "5", "--model.val_num_samples", "3",
        "--data.init_args.num_train_graphs", "64", "--data.init_args.num_test_graphs", "13",
        "--data.init_args.num_val_graphs", "13", "--data.init_args.batch_size", "16",
        "--data.init_args.eval_batch_size", "4", "--data.init_args.cache_dir", str(tmp_path / "cache"),
        *extra,
    ]


@pytest.mark.slow
def test_two_ranks_give_the_metrics_of_one(tmp_path):
    fit = run_gram("fit", *coloring_args(tmp_path, "--trainer.logger.init_args.version", "fit"), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "logs" / "graph_coloring8_cpu" / "fit" / "checkpoints" / "last.ckpt"
    metrics = {}
    for devices in (1, 2):
        version = f"test{devices}"
        result = run_gram("test", *coloring_args(tmp_path, "--trainer.devices", str(devices), "--trainer.strategy",
                                                 "ddp" if devices > 1 else "auto", "--trainer.logger.init_args.version",
                                                 version), "--ckpt_path", str(ckpt), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        written = json.loads((tmp_path / "logs" / "graph_coloring8_cpu" / version / "test_metrics.json").read_text())
        metrics[devices] = written["metrics"] if "metrics" in written else written
    one, two = metrics[1], metrics[2]
    assert {"test/sample_acc", "test/conflict_edges", "test/sample_conflict_edges", "test/coverage"} <= set(one)
    assert one == two
