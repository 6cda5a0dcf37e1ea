"""Runs that survive: divergence stops (or skips) cleanly, checkpoints stay finite and whole, user errors are one line."""

import json
import os
import re
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import RandomBoards, TINY_TRAINER, build_cli, tiny_net
from gram_lightning.cli import GramCLI, main
from gram_lightning.errors import NonFiniteError
from gram_lightning.module import GRAMModule
from test_cli import ROOT, run_gram, tiny_args

DIVERGE = ("--model.optimizer.init_args.lr", "1e6", "--model.warmup_steps", "1", "--trainer.max_steps", "12",
           "--trainer.val_check_interval", "100")


def every_step_cli(tmp_path: Path, *extra: str) -> GramCLI:
    """The tiny demo run, checkpointing after every optimizer step (all of them kept)."""
    cli = build_cli(tiny_args(tmp_path, *extra))
    cli.trainer.callbacks.append(ModelCheckpoint(dirpath=tmp_path / "every", every_n_train_steps=1, save_top_k=-1,
                                                 save_last=True, filename="{step}"))
    return cli


def all_finite(path: Path) -> bool:
    saved = torch.load(path, weights_only=True)
    return all(torch.isfinite(v).all() for k in ("state_dict", "current_model_state")
               for v in saved.get(k, {}).values() if v.is_floating_point())


# ---- non-finite loss / gradient ----


def test_nan_loss_stops_before_the_step_and_every_checkpoint_stays_finite(tmp_path):
    cli = every_step_cli(tmp_path, *DIVERGE)
    with pytest.raises(NonFiniteError, match=r"training step (\d+): non-finite loss term ce = nan") as info:
        cli.trainer.fit(cli.model, cli.datamodule)
    step = int(re.search(r"training step (\d+)", str(info.value)).group(1))
    assert cli.trainer.global_step == step  # no optimizer step was taken on the NaN
    checkpoints = sorted((tmp_path / "every").glob("*.ckpt"))
    assert len(checkpoints) >= 2 and all(all_finite(c) for c in checkpoints)
    assert torch.load(tmp_path / "every" / "last.ckpt", weights_only=True)["global_step"] == step
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def test_nan_loss_is_one_line_and_a_failure_from_the_command(tmp_path):
    result = run_gram("fit", *tiny_args(tmp_path, *DIVERGE), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gram: training step ") and "non-finite loss term ce" in last


def test_nan_loss_skip_drops_the_steps_and_finishes(tmp_path):
    cli = every_step_cli(tmp_path, *DIVERGE, "--model.nonfinite", "skip")
    before = {k: v.clone() for k, v in cli.model.state_dict().items()}
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 12
    assert cli.model.skipped_steps >= 1
    assert cli.trainer.callback_metrics["train/skipped_steps"] == cli.model.skipped_steps
    assert all(all_finite(c) for c in (tmp_path / "every").glob("*.ckpt"))
    assert any(not torch.equal(before[k], v) for k, v in cli.model.state_dict().items())  # finite steps did train


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_nonfinite_gradient_norm_from_a_finite_loss(mode):
    torch.manual_seed(0)
    module = GRAMModule(tiny_net(), warmup_steps=1, nonfinite=mode)
    target = module.net.token_embed.weight
    target.register_hook(lambda grad: grad * float("inf"))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(max_steps=3, **TINY_TRAINER)
    if mode == "stop":
        with pytest.raises(NonFiniteError, match=r"training step 0: non-finite gradient norm .*net\.token_embed\.weight"):
            trainer.fit(module, RandomBoards())
    else:
        trainer.fit(module, RandomBoards())
        assert module.skipped_steps == 3
    # Neither mode updated anything: every step had an infinite gradient.
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_nonfinite_must_be_stop_or_skip():
    with pytest.raises(ValueError, match="nonfinite"):
        GRAMModule(tiny_net(), nonfinite="ignore")


def test_checkpoint_with_nan_weights_is_refused_by_test_and_predict(tmp_path):
    cli = build_cli(tiny_args(tmp_path, "--trainer.max_steps", "2", "--trainer.val_check_interval", "100"))
    cli.trainer.fit(cli.model, cli.datamodule)
    good = Path(cli.trainer.checkpoint_callback.last_model_path)
    saved = torch.load(good, weights_only=True)
    saved["state_dict"]["net.h0"][0, 0] = float("nan")
    bad = tmp_path / "nan.ckpt"
    torch.save(saved, bad)
    for subcommand in ("test", "predict"):
        with pytest.raises(SystemExit) as info:
            main([subcommand, *tiny_args(tmp_path), "--ckpt_path", str(bad)])
        message = str(info.value.code)
        assert message.startswith(f"gram: checkpoint {bad}: ") and "NaN or infinite weights (net.h0)" in message


# ---- atomic checkpoints ----


def test_atomic_checkpoint_io_replaces_the_target_and_leaves_no_temp_files(tmp_path):
    from gram_lightning.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, target)
    io.save_checkpoint({"state_dict": {"w": torch.full((3,), 2.0)}, "global_step": 2}, target)
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(target, weights_only=True)["global_step"] == 2

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed halfway through the write")

    with pytest.raises(RuntimeError, match="halfway"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 3, "x": Unpicklable()}, target)
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(target, weights_only=True)["global_step"] == 2  # the old checkpoint, whole

    with pytest.raises(NonFiniteError, match="refusing to write checkpoint .*last.ckpt.*\\(w\\)"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "global_step": 4}, target)
    assert torch.load(target, weights_only=True)["global_step"] == 2


def test_stale_temp_files_of_dead_writers_are_removed_on_the_first_save(tmp_path):
    import subprocess

    from gram_lightning.atomic import _temp_prefix, remove_stale_temp_files
    from gram_lightning.checkpoint_io import AtomicCheckpointIO

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / _temp_prefix("last.ckpt").replace(f"-{os.getpid()}.", f"-{dead_pid}.")
    stale = stale.with_name(stale.name + "abc_12.tmp")
    live = tmp_path / (_temp_prefix("last.ckpt") + "def_34.tmp")  # this process: a write in progress
    other = tmp_path / ".last.ckpt.otherhost-1.ghi_56.tmp"  # another machine's writer on a shared folder
    for f in (stale, live, other):
        f.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temp_files(tmp_path) == []


def test_the_gram_command_installs_atomic_checkpoints_and_keeps_a_users_plugin(tmp_path):
    from lightning.pytorch.plugins.io import AsyncCheckpointIO

    from gram_lightning.checkpoint_io import AtomicCheckpointIO

    cli = build_cli(tiny_args(tmp_path))
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    cli = build_cli(tiny_args(tmp_path, "--trainer.plugins", "lightning.pytorch.plugins.io.AsyncCheckpointIO"))
    io = cli.trainer.strategy.checkpoint_io
    assert isinstance(io, AsyncCheckpointIO) and type(io.checkpoint_io) is AtomicCheckpointIO


WRITER = """
import sys, torch
from gram_lightning.checkpoint_io import AtomicCheckpointIO
# No finite check: its pass over the weights runs before the temporary file exists and takes about half of each
# cycle, so kills at fixed delays would often land outside the write this test is about.
io, big = AtomicCheckpointIO(check_finite=False), torch.randn(8_000_000)  # 32 MB: a write takes a while
for step in range(10_000):
    io.save_checkpoint({"state_dict": {"w": big}, "global_step": step}, sys.argv[1])
    print(step, flush=True)
"""


def test_sigkill_during_checkpoint_writes_leaves_every_ckpt_whole(tmp_path):
    import signal
    import subprocess
    import time

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    target = tmp_path / "last.ckpt"
    killed_mid_write = 0
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env, stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # the first write is done: from here on, writes follow each other
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        killed_mid_write += any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        assert torch.load(target, weights_only=True)["state_dict"]["w"].numel() == 8_000_000
    # A kill between two writes leaves no temporary file; most of these kills cut a write short.
    assert killed_mid_write >= 1
    from gram_lightning.checkpoint_io import AtomicCheckpointIO

    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_gram_fit_killed_at_several_moments_leaves_loadable_checkpoints_and_resumes(tmp_path):
    import signal
    import subprocess
    import time

    ckpts = tmp_path / "ckpts"
    every_step = ("--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                  f"--trainer.callbacks.init_args.dirpath={ckpts}", "--trainer.callbacks.init_args.every_n_train_steps=1",
                  "--trainer.callbacks.init_args.save_top_k=-1", "--trainer.callbacks.init_args.save_last=true",
                  "--trainer.val_check_interval", "1000")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{root / 'tests'}", OMP_NUM_THREADS="1")
    resume: tuple[str, ...] = ()
    for wait_for, delay in ((3, 0.0), (2, 0.037), (2, 0.11)):
        before = len(list(ckpts.glob("*.ckpt"))) if ckpts.exists() else 0
        proc = subprocess.Popen([sys.executable, "-m", "gram_lightning.cli", "fit",
                                 *tiny_args(tmp_path, "--trainer.max_steps", "1000", *every_step), *resume],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (len(list(ckpts.glob("*.ckpt"))) if ckpts.exists() else 0) < before + wait_for:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for ckpt in tmp_path.rglob("*.ckpt"):
            torch.load(ckpt, weights_only=True)  # every checkpoint on disk is whole
        resume = ("--ckpt_path", str(ckpts / "last.ckpt"))
    step = torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"]
    done = run_gram("fit", *tiny_args(tmp_path, "--trainer.max_steps", str(step + 2), *every_step), *resume, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == step + 2
    assert not [p for p in ckpts.iterdir() if p.name.endswith(".tmp")]


# ---- user errors: one line naming the cause ----

SUDOKU_Q = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SUDOKU_A = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def test_header_only_sudoku_csv_is_named_and_nothing_is_cached(tmp_path):
    from datamodules.sudoku import SudokuDataModule
    from datamodules.sudoku.csv import SudokuFormatError

    empty = tmp_path / "empty.csv"
    empty.write_text("source,question,answer,rating\n")
    data = SudokuDataModule(board_size=9, unique=True, train_csv=str(empty), test_csv=str(empty.with_name("t.csv")),
                            num_train_puzzles=-1, num_test_puzzles=-1, num_val_puzzles=0,
                            cache_dir=str(tmp_path / "cache"))
    with pytest.raises(SudokuFormatError, match=f"{empty} has no puzzles"):
        data._csv_source(str(empty))
    assert not any((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_train_csv_equal_to_test_csv_is_named(tmp_path):
    from datamodules.sudoku import SudokuDataModule

    rows = f"a,{SUDOKU_Q},{SUDOKU_A},0\n"
    same = tmp_path / "same.csv"
    same.write_text("source,question,answer,rating\n" + rows)
    common = dict(board_size=9, unique=True, num_train_puzzles=-1, num_test_puzzles=-1, num_val_puzzles=1,
                  cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="train_csv and test_csv are the same file"):
        SudokuDataModule(train_csv=str(same), test_csv=str(same), **common)
    copy = tmp_path / "copy.csv"
    copy.write_text(same.read_text())
    data = SudokuDataModule(train_csv=str(copy), test_csv=str(same), **common)
    with pytest.raises(ValueError, match="every training puzzle is also a test puzzle"):
        data.setup("fit")


def test_arc_format_error_is_one_line_naming_file_and_grid(tmp_path, monkeypatch):
    from datamodules.arc.grids import ARCFormatError

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    bad = tasks / "t1.json"
    bad.write_text(json.dumps({"train": [{"input": [[1, 2], [3]], "output": [[1]]}],
                               "test": [{"input": [[1]], "output": [[1]]}]}))
    args = ["fit", "--config", str(ROOT / "experiments" / "arc_smoke.yaml"), "--data.init_args.version", "null",
            "--data.init_args.eval_dirs", json.dumps([str(tasks)]), "--data.init_args.cache_dir", str(tmp_path / "c")]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == f"gram: {bad}: task t1 train[0].input: grid is not rectangular (row lengths [1, 2])"
    monkeypatch.setenv("GRAM_DEBUG", "1")  # the traceback, for a bug report
    with pytest.raises(ValueError) as info:
        main(args)
    assert isinstance(info.value.__cause__, ARCFormatError)


def test_arc_colours_given_as_json_booleans_are_rejected():
    from datamodules.arc.grids import ARCFormatError, check_grid

    for grid in ([[True, 0], [1, 2]], [[False]], json.loads("[[1, true]]")):
        with pytest.raises(ARCFormatError, match="found true/false"):
            check_grid(grid, "task x test[0].input")


def test_configuration_error_of_the_module_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["fit", *tiny_args(tmp_path), "--model.num_samples", "0"])
    assert info.value.code == "gram: num_samples and val_num_samples must be >= 1"


def test_checkpoint_of_another_task_names_it_and_leaves_no_log_folder(tmp_path):
    nq = build_cli([
        "--config", str(ROOT / "experiments" / "nqueens6_cpu.yaml"), "--trainer.max_steps", "1",
        "--trainer.val_check_interval", "1000", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "nq"), "--data.init_args.cache_dir", str(tmp_path / "c"),
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.num_layers", "1"])
    nq.trainer.fit(nq.model, nq.datamodule)
    ckpt = nq.trainer.checkpoint_callback.last_model_path
    for subcommand in ("test", "predict"):
        with pytest.raises(SystemExit) as info:
            main([subcommand, *tiny_args(tmp_path), "--ckpt_path", ckpt])
        message = str(info.value.code)
        assert message.startswith(f"gram: checkpoint {ckpt}: the checkpoint was trained on "
                                  "datamodules.nqueens.NQueensDataModule (board_size 6) with vocab_size 3, seq_len 36")
        assert "builds vocab_size 6, seq_len 16" in message and "net.h0: [40, 16] in the checkpoint" in message
    assert not (tmp_path / "logs").exists()


# ---- caches: corruption is named, killed builds are cleaned up ----


def test_cache_corrupted_in_place_is_named_on_load(tmp_path):
    import datasets

    from datamodules.cache import CacheError, cached_dataset

    build = lambda: datasets.Dataset.from_dict({"inputs": [[i % 7] * 64 for i in range(2000)]})  # noqa: E731
    first = cached_dataset(tmp_path, "toy", {"n": 1}, build)
    folder = next(tmp_path.glob("toy-*"))
    arrow = next(folder.glob("*.arrow"))
    size = arrow.stat().st_size
    with open(arrow, "r+b") as f:  # 4 KB overwritten: the same size, other bytes
        f.seek(size // 2)
        f.write(b"\xff" * 4096)
    assert arrow.stat().st_size == size and len(first) == 2000
    with pytest.raises(CacheError, match=f"the cached dataset in {folder} is corrupt: {arrow.name} was changed"):
        cached_dataset(tmp_path, "toy", {"n": 1}, build)


def test_stale_cache_builds_of_killed_processes_are_removed(tmp_path):
    import subprocess

    import datasets

    from datamodules.cache import cached_dataset
    from gram_lightning.atomic import _host

    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)
    stale = tmp_path / f"toy-0123456789ab.tmp-{_host()}-{dead_pid}-deadbeef"
    live = tmp_path / f"toy-0123456789ab.tmp-{_host()}-{os.getpid()}-cafef00d"
    other = tmp_path / "toy-0123456789ab.tmp-otherhost-1-00000000"
    legacy = tmp_path / f"toy-0123456789ab.tmp-{dead_pid}-0badcafe"  # named before hosts were recorded
    for folder in (stale, live, other, legacy):
        folder.mkdir()
        (folder / "data-00000-of-00001.arrow").write_bytes(b"half")
    cached_dataset(tmp_path, "toy", {"n": 2}, lambda: datasets.Dataset.from_dict({"x": [1, 2]}))
    assert not stale.exists() and not legacy.exists() and live.exists() and other.exists()


GENERATOR = """
import sys
from datamodules.sudoku.generator import generate_split
generate_split("train", 200_000, n=9, unique=True, num_proc=2)
"""


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_generation_workers_die_with_a_killed_parent(tmp_path):
    import signal
    import subprocess
    import time

    from gram_lightning.atomic import pid_alive

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(tmp_path / "hf"))
    proc = subprocess.Popen([sys.executable, "-c", GENERATOR], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        # Until two workers have spent half a CPU-second generating puzzles (`datasets` also forks a manager).
        while True:
            children = _children(proc.pid)
            if sum(_cpu_seconds(c) >= 0.5 for c in children) >= 2:
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(pid_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [c for c in children if pid_alive(c)]
    for c in alive:  # do not leave them behind if the test fails
        os.kill(c, signal.SIGKILL)
    assert len(children) >= 2 and not alive


# ---- exact resume ----


class RecordLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def _fit(tmp_path: Path, steps: int, *extra: str, ckpt_path: str | None = None) -> tuple[GramCLI, list[float]]:
    cli = build_cli(tiny_args(tmp_path, "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "3",
                                 "--data.init_args.epoch_multiplier", "1", *extra))
    record = RecordLosses()
    cli.trainer.callbacks += [record, ModelCheckpoint(dirpath=tmp_path / "every", every_n_train_steps=1, save_top_k=-1,
                                                      filename="{step}")]
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt_path)
    return cli, record.losses


@pytest.mark.parametrize("carry", ["true", pytest.param("false", marks=pytest.mark.slow)])
def test_resume_in_the_middle_of_an_epoch_is_exact(tmp_path, carry, recwarn):
    # 40 training puzzles x epoch_multiplier 1 / batch 8: 5 batches an epoch, so 7 + 3 steps cross an epoch and
    # resume 2 batches into the second one.
    straight, straight_losses = _fit(tmp_path / "straight", 10)
    first, first_losses = _fit(tmp_path / "resumed", 7, "--model.checkpoint_carry", carry)
    assert first.trainer.num_training_batches == 5
    ckpt = str(tmp_path / "resumed" / "every" / "step=7.ckpt")
    second, second_losses = _fit(tmp_path / "resumed", 10, "--model.checkpoint_carry", carry, ckpt_path=ckpt)
    resumed = first_losses + second_losses
    # Lightning warns about a mid-epoch resume unless the loader says it resumes: this one does.
    assert not [w for w in recwarn if "ended before the epoch ended" in str(w.message)]
    assert len(resumed) == len(straight_losses) == 10
    if carry == "false":  # the rows restart on fresh examples: the run goes on, but differently
        assert resumed[:7] == straight_losses[:7] and resumed[7:] != straight_losses[7:]
        return
    assert resumed == straight_losses  # bit for bit
    for (name, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_cache_written_before_checksums_gets_them_on_first_load(tmp_path):
    import datasets

    from datamodules.cache import CHECKSUM_FILE, CacheError, cached_dataset

    build = lambda: datasets.Dataset.from_dict({"inputs": [[i % 7] * 64 for i in range(2000)]})  # noqa: E731
    cached_dataset(tmp_path, "toy", {"n": 3}, build)
    folder = next(tmp_path.glob("toy-*"))
    (folder / CHECKSUM_FILE).unlink()  # as an older version wrote it
    cached_dataset(tmp_path, "toy", {"n": 3}, build)
    assert (folder / CHECKSUM_FILE).is_file()
    arrow = next(folder.glob("*.arrow"))
    with open(arrow, "r+b") as f:
        f.seek(100)
        f.write(b"\xa5" * 16)
    with pytest.raises(CacheError, match="is corrupt"):
        cached_dataset(tmp_path, "toy", {"n": 3}, build)
