"""ARC through the `gram` command: fit on task folders, then `gram test` writes pass@k, the voted answers
and a submission; a test on tasks the checkpoint never saw stops with a message naming one."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from test_arc_data import tiny_task_dirs, write_task
from test_cli import ROOT, run_gram


def arc_args(tmp_path, dirs):
    return [
        "--config", str(ROOT / "experiments" / "arc_smoke.yaml"),
        "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_layers", "1",
        "--model.net.init_args.puzzle_prefix_len", "2",
        "--data.init_args.version", "null", "--data.init_args.train_dirs", json.dumps(dirs["train_dirs"]),
        "--data.init_args.eval_dirs", json.dumps(dirs["eval_dirs"]), "--data.init_args.num_variants", "4",
        "--data.init_args.batch_size", "4", "--data.init_args.cache_dir", str(tmp_path / "cache"),
    ]


def test_fit_then_test_writes_pass_at_k_and_the_voted_answers(tmp_path):
    dirs = tiny_task_dirs(tmp_path / "tasks")
    fit = run_gram("fit", *arc_args(tmp_path, dirs), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run_dir = tmp_path / "logs" / "arc_smoke" / "version_0"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert {"val/pass@2", "val/pass@1", "val/exact_acc", "train/puzzle_embedding_lr"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/pass@2")) == 2  # the pass@2 curve: one point per validation
    assert "val/samples" in events.Tags()["images"]
    common = ["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(ckpt),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]
    test = run_gram("test", *common, cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    test_dir = tmp_path / "logs" / "arc_smoke" / "version_1"
    metrics = json.loads((test_dir / "test_metrics.json").read_text())["metrics"]
    assert {"test/pass@1", "test/pass@2", "test/pass@5", "test/pass@10"} <= set(metrics)
    assert metrics["test/num_groups"] == 3 and metrics["test/num_tasks"] == 2
    rows = [json.loads(line) for line in (test_dir / "predictions.jsonl").read_text().splitlines()]
    assert [(r["task"], r["test_index"]) for r in rows] == [("e1", 0), ("e2", 0), ("e2", 1)]
    for row in rows:  # the top-2 answers read back as ARC grids
        assert 1 <= len(row["attempts"]) <= 2
        for grid in row["attempts"]:
            assert len({len(r) for r in grid}) == 1 and all(0 <= c <= 9 for r in grid for c in r)
    submission = json.loads((test_dir / "submission.json").read_text())
    assert set(submission) == {"e1", "e2"} and len(submission["e2"]) == 2
    assert set(submission["e1"][0]) == {"attempt_1", "attempt_2"}

    # the same checkpoint on data with a task it has no embedding for
    extra = tmp_path / "tasks" / "extra"
    write_task(extra, "unseen", [([[1]], [[2]])], [([[3]], [[4]])])
    other = run_gram("test", *common, "--data.init_args.eval_dirs", json.dumps(dirs["eval_dirs"] + [str(extra)]), cwd=tmp_path)
    assert other.returncode != 0
    assert "'unseen'" in other.stderr and "has no puzzle embedding" in other.stderr
    assert "Traceback" not in other.stderr
