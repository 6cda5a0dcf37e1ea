"""Unconditional Sudoku: blank inputs and distinct solved grids, the validity / uniqueness / novelty metrics, the
unconditional sampling path, and `gram fit` / `gram predict` writing samples a person can read."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.sudoku import SudokuDataModule
from datamodules.sudoku.boards import BLANK_TOKEN, is_valid_sudoku
from datamodules.sudoku.equivalence import EquivalenceIndex
from datamodules.sudoku.generator import generate_full_grid
from conftest import build_cli
from gram_lightning.sample_set_metrics import SampleSetMetrics, row_hashes
from tests.conftest import tiny_net

ROOT = Path(__file__).resolve().parents[1]

# A valid 9x9 grid (digits), the classic shifted pattern.
GRID = [[(3 * (r % 3) + r // 3 + c) % 9 + 1 for c in range(9)] for r in range(9)]


def tokens(digits) -> torch.Tensor:
    return torch.tensor(digits).flatten() + BLANK_TOKEN  # digit d -> token d + 1


def test_validity_check_on_hand_made_boards():
    good = tokens(GRID)
    repeated_in_row = good.clone()
    repeated_in_row[0] = repeated_in_row[1]  # row 0 holds its second digit twice
    swapped_columns = tokens([row[1:2] + row[0:1] + row[2:] for row in GRID])  # still valid: a column swap in a stack
    with_blank = good.clone()
    with_blank[40] = BLANK_TOKEN
    latin_square = tokens([[(r + c) % 9 + 1 for c in range(9)] for r in range(9)])  # rows, columns ok; boxes not
    batch = torch.stack([good, repeated_in_row, swapped_columns, with_blank, latin_square])
    assert is_valid_sudoku(batch, 9).tolist() == [True, False, True, False, False]


def test_sample_set_metrics_count_validity_uniqueness_and_novelty():
    good = tokens(GRID)
    other = tokens([row[3:] + row[:3] for row in GRID])  # stacks rotated: another valid grid
    bad = good.clone()
    bad[0] = bad[1]
    check = lambda inputs, samples: is_valid_sudoku(samples, 9)  # noqa: E731
    metric = SampleSetMetrics(check, reference=good[None])
    blank = torch.full((2, 81), BLANK_TOKEN)
    metric.update({"inputs": blank}, torch.stack([good, good]))
    metric.update({"inputs": blank}, torch.stack([other, bad]))
    out = metric.compute()
    assert out["validity"] == pytest.approx(0.75)
    assert out["unique_fraction"] == pytest.approx(0.75)  # good, other, bad
    assert out["unique_valid"] == pytest.approx(0.5)  # good, other
    assert out["novel_fraction"] == pytest.approx(1 / 3)  # of the 3 valid samples only `other` is new
    assert len(set(row_hashes(torch.stack([good, other, bad])).tolist())) == 3


def test_novelty_counts_samples_equivalent_to_a_training_grid_as_known():
    good = tokens(GRID)
    # The transpose with digits relabelled: another valid grid, and one that augmentation makes from `good`.
    image = tokens([[(GRID[c][r] % 9) + 1 for c in range(9)] for r in range(9)])
    outside = tokens([row[:2] + row[3:4] + row[2:3] + row[4:] for row in GRID])  # columns 2, 3: not a group move
    rng_grid = torch.tensor(generate_full_grid(9, np.random.default_rng(0))) + BLANK_TOKEN
    check = lambda inputs, samples: torch.ones(len(samples), dtype=torch.bool)  # noqa: E731
    samples = torch.stack([good, image, outside, rng_grid])
    blank = torch.full((4, 81), BLANK_TOKEN)
    plain = SampleSetMetrics(check, reference=good[None])
    plain.update({"inputs": blank}, samples)
    assert plain.compute()["novel_fraction"] == pytest.approx(3 / 4)  # only `good` itself is known
    aware = SampleSetMetrics(check, known=EquivalenceIndex(good[None], 9).known)
    aware.update({"inputs": blank}, samples)
    assert aware.compute()["novel_fraction"] == pytest.approx(2 / 4)  # `image` is known too
    with pytest.raises(ValueError, match="not both"):
        SampleSetMetrics(check, reference=good[None], known=lambda s: s)


def test_generation_metrics_follow_the_augmentation(tmp_path):
    with_aug, without = _datamodule(tmp_path), _datamodule(tmp_path, augment=False)
    for dm in (with_aug, without):
        dm.setup()
    grids = with_aug.splits["train"].solutions.long()
    assert torch.equal(grids, without.splits["train"].solutions.long())  # the same data
    test_grids = with_aug.splits["test"].solutions.long()  # valid, never training grids
    blank = torch.full((len(test_grids), 16), BLANK_TOKEN)
    novelty = {}
    for name, dm in (("augment", with_aug), ("plain", without)):
        metric = dm.generation_metrics()
        metric.update({"inputs": blank}, test_grids)
        novelty[name] = float(metric.compute()["novel_fraction"])
    # The 288 solved 4x4 grids form 2 classes, both among 60 training grids: with augmentation
    # nothing is new; by plain equality every held-out grid is.
    assert novelty == {"augment": 0.0, "plain": 1.0}


def _datamodule(tmp_path, **kw) -> SudokuDataModule:
    args = dict(board_size=4, unconditional=True, num_train_puzzles=60, num_test_puzzles=20, num_val_puzzles=8,
                batch_size=16, num_proc=1, cache_dir=str(tmp_path / "cache"), epoch_multiplier=2)
    args.update(kw)
    return SudokuDataModule(**args)


def test_unconditional_data_is_blank_inputs_and_distinct_valid_grids(tmp_path):
    dm = _datamodule(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    train, test = dm.splits["train"], dm.splits["test"]
    assert len(train) == 60 and len(test) == 20
    assert (train.inputs == BLANK_TOKEN).all() and (test.inputs == BLANK_TOKEN).all()
    assert (train.num_solutions == 1).all() and (test.num_solutions == 1).all()  # one grid per blank board
    grids = train.solutions.long()
    assert is_valid_sudoku(grids, 4).all()
    assert len({tuple(g.tolist()) for g in grids}) == 60  # distinct
    test_grids = {tuple(g.tolist()) for g in test.solutions.long()}
    assert not test_grids & {tuple(g.tolist()) for g in grids}  # train leaves out the test grids
    batch = next(iter(dm.train_dataloader()))
    assert (batch["inputs"] == BLANK_TOKEN).all() and is_valid_sudoku(batch["labels"], 4).all()
    # Any valid board is right for a blank input; the label is one of many.
    assert dm.check(batch["inputs"], batch["labels"].flip(0)).all()
    assert isinstance(dm.generation_metrics(), SampleSetMetrics)
    assert dm.format(batch["labels"][0]).count("\n") == 3


def test_unconditional_mode_rejects_givens_and_csv(tmp_path):
    with pytest.raises(ValueError, match="blank inputs"):
        _datamodule(tmp_path, min_givens=2, max_givens=4)
    with pytest.raises(ValueError, match="does not read CSV"):
        _datamodule(tmp_path, train_csv="x.csv")


def test_conditional_sudoku_has_no_generation_metrics(tmp_path):
    dm = SudokuDataModule(board_size=4, num_train_puzzles=8, num_test_puzzles=4, num_val_puzzles=2, batch_size=4,
                          num_proc=1, cache_dir=str(tmp_path / "cache"))
    assert dm.generation_metrics() is None


def test_unconditional_sampling_from_a_blank_input_differs_across_seeds():
    net = tiny_net(vocab_size=6, seq_len=16, init_sigma=0.9).eval()
    blank = torch.full((4, 16), BLANK_TOKEN)
    outs = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        *_, last = net.rollout(blank, num_steps=3)
        outs.append(last.logits.argmax(-1))
    assert not torch.equal(outs[0], outs[1])  # the prior alone drives the trajectory
    assert torch.equal(outs[0], outs[2])  # and the seed fixes it


TINY = ["--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.precision", "32-true",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.num_layers", "1", "--model.net.init_args.N_sup", "2", "--model.net.init_args.T", "2",
        "--model.net.init_args.K", "1", "--model.net.init_args.puzzle_prefix_len", "2", "--model.warmup_steps", "1",
        "--data.init_args.board_size", "4", "--data.init_args.num_train_puzzles", "60",
        "--data.init_args.num_test_puzzles", "24", "--data.init_args.num_val_puzzles", "8",
        "--data.init_args.batch_size", "16", "--data.init_args.eval_batch_size", "16",
        "--data.init_args.num_workers", "0", "--data.init_args.num_proc", "1"]


def test_fit_logs_generation_metrics_and_predict_writes_readable_samples(tmp_path):
    common = ["--config", str(ROOT / "experiments" / "sudoku_uncond.yaml"), *TINY,
              "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
              "--data.init_args.cache_dir", str(tmp_path / "cache")]
    cli = build_cli(common)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert {"val/validity", "val/unique_fraction", "val/novel_fraction", "val/exact_acc"} <= set(cli.trainer.callback_metrics)
    assert {"val/validity", "val/exact_acc"} <= set(cli.trainer.progress_bar_metrics)  # the headline on the bar
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    out = subprocess.run([sys.executable, "-m", "gram_lightning.cli", "predict", *common, "--ckpt_path", str(ckpt),
                          "--model.num_steps", "3", "--trainer.logger.init_args.version", "samples"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "logs" / "sudoku_uncond" / "samples"
    boards = (run_dir / "samples.txt").read_text().strip().split("\n\n")
    assert len(boards) == 24 and all(len(b.splitlines()) == 4 for b in boards)
    report = json.loads((run_dir / "sample_metrics.json").read_text())
    assert report["num_samples"] == 24 and report["settings"]["num_steps"] == 3
    assert 0 <= report["metrics"]["validity"] <= 1 and "unique_fraction" in report["metrics"]
    assert (run_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"
    # The depth sweep of benchmarks/generation.py on the same checkpoint.
    out = subprocess.run([sys.executable, "benchmarks/generation.py", "--config", str(ROOT / "experiments" / "sudoku_uncond.yaml"),
                          "--ckpt_path", str(ckpt), "--steps", "1", "3", "--repeats", "2", "--out", str(tmp_path / "gen"), "--", *TINY,
                          "--data.init_args.cache_dir", str(tmp_path / "cache")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = (tmp_path / "gen" / "generation.csv").read_text().splitlines()
    assert rows[0].startswith("steps,samples,validity") and [r.split(",")[0] for r in rows[1:]] == ["1", "3"]
    assert rows[0].endswith(",distinct_valid") and rows[1].split(",")[1] == "48"  # 2 passes over the 24 test boards
    assert (tmp_path / "gen" / "samples_3.png").is_file()
