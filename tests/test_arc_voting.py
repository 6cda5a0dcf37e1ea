"""ARC pass@k by voting: ranking, de-augmentation, unknown solutions, output formats and DDP-style merging."""

import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datamodules.arc.grids import IDENTITY, SEQ_LEN, Variant, encode_canvas
from datamodules.arc.voting import _STATES, ARCVoting

# Three tasks: "a" with two test inputs (groups 0 and 1), "b" with one (group 2), "c" with one whose
# solution is unknown (group 3). Puzzle id 0 shows a group as is, 1 under a rotation and recolouring.
RIGHT = [np.array([[1, 2], [3, 4], [0, 5]], dtype=np.uint8), np.array([[7]], dtype=np.uint8),
         np.array([[2, 2, 0]], dtype=np.uint8), None]
WRONG = [np.array([[1, 1], [1, 1]], dtype=np.uint8), np.array([[8, 8]], dtype=np.uint8), np.array([[3]], dtype=np.uint8)]
ROTATED = Variant(1, (0, 2, 3, 4, 5, 6, 7, 8, 9, 1))
VARIANTS = [IDENTITY, ROTATED]
GROUP_TASK = [0, 0, 1, 2]
GROUP_NAMES = [("a", 0), ("a", 1), ("b", 0), ("c", 0)]


def make_metric(**kwargs) -> ARCVoting:
    return ARCVoting(VARIANTS, RIGHT, GROUP_TASK, GROUP_NAMES, **kwargs)


def predict(metric: ARCVoting, group: int, answers: list[np.ndarray], confidence: list[float] | None = None,
            puzzle_id: int = 0) -> None:
    """One batch row: the N answers the model drew for `group` shown under variant `puzzle_id`."""
    variant = VARIANTS[puzzle_id]
    preds = torch.stack([torch.from_numpy(encode_canvas(variant.apply(a))).long() for a in answers])[None]  # (1, N, 900)
    conf = torch.tensor([confidence or [0.5] * len(answers)])  # (1, N)
    metric.add(torch.tensor([group]), torch.tensor([puzzle_id]), preds, conf)


def scores(metric: ARCVoting) -> dict[str, float]:
    return {k: v.item() for k, v in metric.compute().items()}


def test_task_with_one_of_two_test_inputs_right_scores_half():
    m = make_metric()
    predict(m, 0, [RIGHT[0], RIGHT[0]])
    predict(m, 1, [WRONG[1], WRONG[1]])
    out = scores(m)
    assert out["pass@1"] == 0.5 and out["pass@10"] == 0.5
    assert out["num_tasks"] == 1 and out["num_groups"] == 2
    predict(m, 2, [RIGHT[2]])  # a second task, fully right: the mean over tasks
    assert scores(m)["pass@1"] == 0.75


def test_answer_ranked_third_counts_for_pass_at_5_not_2():
    m = make_metric()
    other = np.array([[4, 4], [4, 4]], dtype=np.uint8)
    predict(m, 0, [WRONG[0]] * 3 + [other] * 2 + [RIGHT[0]])
    out = scores(m)
    assert (out["pass@1"], out["pass@2"], out["pass@5"], out["pass@10"]) == (0.0, 0.0, 1.0, 1.0)
    assert m.ranked_answers(top_k=5)[0]["votes"] == [3, 2, 1]


@pytest.mark.parametrize("right_conf, expected_pass1", [(0.9, 1.0), (0.1, 0.0)])
def test_tied_votes_are_broken_by_mean_confidence(right_conf, expected_pass1):
    m = make_metric()
    predict(m, 2, [WRONG[2], RIGHT[2], WRONG[2], RIGHT[2]], [0.5, right_conf, 0.5, right_conf])
    out = scores(m)
    assert out["pass@1"] == expected_pass1 and out["pass@2"] == 1.0
    assert m.ranked_answers()[0]["confidence"] == pytest.approx(sorted([0.5, right_conf], reverse=True))


def test_value_confidence_through_the_module_adapter():
    def samples(value, halt_logits):
        preds = torch.stack([torch.from_numpy(encode_canvas(g)) for g in (WRONG[2], RIGHT[2])])[None].long()  # (1, 2, 900)
        return SimpleNamespace(preds=preds, value=torch.tensor([value]), halt_logits=torch.tensor([halt_logits]))

    batch = {"group": torch.tensor([2]), "puzzle_ids": torch.tensor([0])}
    # The halt head prefers the wrong answer, the value head the right one.
    s = samples(value=[0.2, 0.8], halt_logits=[3.0, -3.0])
    by_value, by_halt = make_metric(confidence="value"), make_metric(confidence="halt")
    by_value.update(batch, s)
    by_halt.update(batch, s)
    assert scores(by_value)["pass@1"] == 1.0 and scores(by_halt)["pass@1"] == 0.0
    assert by_halt.ranked_answers()[0]["confidence"] == pytest.approx(torch.tensor([3.0, -3.0]).sigmoid().tolist())


def test_augmented_predictions_are_deaugmented_and_pooled():
    m = make_metric()
    # Under the identity the wrong answer leads 2 to 1; the rotated puzzle's 2 votes for the right
    # answer only count once mapped back.
    predict(m, 0, [WRONG[0], WRONG[0], RIGHT[0]])
    predict(m, 0, [RIGHT[0], RIGHT[0]], puzzle_id=1)
    assert not np.array_equal(ROTATED.apply(RIGHT[0]), RIGHT[0])
    assert scores(m)["pass@1"] == 1.0
    top = m.ranked_answers()[0]
    assert top["votes"] == [3, 2] and top["correct"] == [True, False]
    assert top["attempts"] == [RIGHT[0].tolist(), WRONG[0].tolist()]


def test_group_without_solution_is_ranked_not_scored():
    m = make_metric()
    unknown = np.array([[6, 0], [0, 6]], dtype=np.uint8)
    predict(m, 3, [unknown, unknown, WRONG[2]])
    predict(m, 2, [RIGHT[2]])
    out = scores(m)
    assert out["num_tasks"] == 1 and out["num_groups"] == 1 and out["pass@1"] == 1.0
    ranked = m.ranked_answers()
    assert [(r["task"], r["test_index"]) for r in ranked] == [("b", 0), ("c", 0)]  # group order
    assert ranked[1]["correct"] is None and ranked[1]["attempts"] == [unknown.tolist(), WRONG[2].tolist()]


def test_nothing_scored_gives_zeros():
    m = make_metric()
    predict(m, 3, [WRONG[0]])
    assert scores(m) == {"pass@1": 0.0, "pass@2": 0.0, "pass@5": 0.0, "pass@10": 0.0, "num_tasks": 0.0, "num_groups": 0.0}


def test_empty_predictions_do_not_vote_but_the_group_is_scored():
    m = make_metric()
    garbage = torch.zeros(1, 3, SEQ_LEN, dtype=torch.long)  # all PAD: crops to an empty grid
    m.add(torch.tensor([2]), torch.tensor([1]), garbage, torch.ones(1, 3))
    assert scores(m)["num_groups"] == 1 and scores(m)["pass@10"] == 0.0
    assert m.ranked_answers() == [{"task": "b", "test_index": 0, "attempts": [], "votes": [], "confidence": [], "correct": []}]
    assert m.submission()["b"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]


def test_ranked_answers_read_back_the_voted_grids():
    m = make_metric()
    rng = np.random.default_rng(0)
    grids = [rng.integers(0, 10, size=(int(rng.integers(1, 31)), int(rng.integers(1, 31)))).astype(np.uint8) for _ in range(3)]
    # Votes 3, 2, 1, shown under both variants and in two batches.
    predict(m, 1, [grids[0], grids[1], grids[2]], puzzle_id=1)
    predict(m, 1, [grids[0], grids[0], grids[1]])
    top = m.ranked_answers(top_k=2)[0]
    assert top["attempts"] == [grids[0].tolist(), grids[1].tolist()] and top["votes"] == [3, 2]
    assert top["correct"] == [False, False] and all(type(c) is bool for c in top["correct"])
    json.dumps(m.ranked_answers())  # plain Python types, ready for the output files


def test_submission_format():
    m = make_metric()
    predict(m, 1, [RIGHT[1], WRONG[1], WRONG[1]])
    predict(m, 0, [RIGHT[0]])
    sub = m.submission()
    assert list(sub) == ["a", "b", "c"]  # every task, so the file is complete
    assert sub["a"] == [
        {"attempt_1": RIGHT[0].tolist(), "attempt_2": RIGHT[0].tolist()},  # one answer: repeated
        {"attempt_1": WRONG[1].tolist(), "attempt_2": RIGHT[1].tolist()},
    ]
    assert sub["b"] == sub["c"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]  # never seen


def feed_all(metrics: list[ARCVoting]) -> None:
    """The same predictions spread over the given metrics (one per rank), round-robin by batch."""
    batches = [
        (0, [RIGHT[0], WRONG[0]], [0.9, 0.2], 0),
        (0, [WRONG[0], RIGHT[0]], [0.3, 0.8], 1),
        (1, [WRONG[1], WRONG[1], RIGHT[1]], [0.5, 0.5, 0.7], 1),
        (2, [RIGHT[2], WRONG[2]], [0.4, 0.6], 0),
        (2, [WRONG[2]], [0.6], 1),
        (3, [WRONG[0], WRONG[0]], [0.1, 0.1], 0),
        (1, [RIGHT[1]], [0.9], 0),
    ]
    for i, (group, answers, conf, pid) in enumerate(batches):
        predict(metrics[i % len(metrics)], group, answers, conf, pid)


# Merged or hand-synced metrics never ran update themselves, which torchmetrics warns about.
@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_merged_states_give_the_same_result_as_one_metric():
    single = make_metric()
    feed_all([single])
    rank0, rank1 = make_metric(), make_metric()
    feed_all([rank0, rank1])
    expected = (scores(single), single.ranked_answers(), single.submission())

    merged = make_metric()
    merged.merge_state(rank0)
    merged.merge_state(rank1)
    assert (scores(merged), merged.ranked_answers(), merged.submission()) == expected

    # After a DDP sync every list state is one tensor, the ranks' rows concatenated.
    synced = make_metric()
    for name in synced._defaults:
        setattr(synced, name, torch.cat([torch.cat(getattr(r, name)) for r in (rank0, rank1)]))
    assert (scores(synced), synced.ranked_answers(), synced.submission()) == expected
    predict(synced, 2, [RIGHT[2]] * 3)  # and can keep accumulating
    assert scores(synced)["pass@1"] == 1.0


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_sync_from_a_rank_that_saw_nothing():
    """A 2-rank all-gather faked in-process: this rank is empty, the other saw every prediction."""
    other = make_metric()
    feed_all([other])
    sent = []

    def gather(tensor, group=None):
        # torchmetrics gathers the states one by one in the order they were added.
        name = list(_STATES)[len(sent) % len(_STATES)]
        sent.append((name, tensor.dtype, tuple(tensor.shape)))
        return [torch.cat(getattr(other, name)), tensor]

    empty = make_metric(dist_sync_fn=gather, distributed_available_fn=lambda: True)
    single = make_metric()
    feed_all([single])
    expected = (scores(single), single.ranked_answers(), single.submission())
    assert (scores(empty), empty.ranked_answers(), empty.submission()) == expected
    # Typed empty tensors went out (torchmetrics' default stand-in is float32, which would turn the
    # gathered int64 hashes into floats, or abort a real gloo / NCCL gather), and the local states
    # are the rank's own again afterwards.
    assert {(name, dtype, shape) for name, dtype, shape in sent} == {(n, d, (0, *tail)) for n, (d, tail) in _STATES.items()}
    assert all(getattr(empty, name) == [] for name in _STATES)


def test_clone_reset_and_bad_input():
    m = make_metric()
    predict(m, 0, [RIGHT[0]])
    twin = m.clone()
    predict(twin, 1, [WRONG[1]])  # the clone's add fills the clone, not the original
    assert scores(m)["num_groups"] == 1 and scores(twin)["num_groups"] == 2
    assert copy.deepcopy(twin).ranked_answers() == twin.ranked_answers()
    m.reset()
    predict(m, 2, [RIGHT[2]])
    assert scores(m)["pass@1"] == 1.0 and scores(m)["num_groups"] == 1

    preds = torch.zeros(1, 2, SEQ_LEN, dtype=torch.long)
    with pytest.raises(ValueError, match="preds"):
        m.add(torch.tensor([0]), torch.tensor([0]), preds[..., :10], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="confidence"):
        m.add(torch.tensor([0]), torch.tensor([0]), preds, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="group index"):
        m.add(torch.tensor([4]), torch.tensor([0]), preds, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="puzzle id"):
        m.add(torch.tensor([0]), torch.tensor([2]), preds, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="one entry per group"):
        ARCVoting(VARIANTS, RIGHT[:2], GROUP_TASK, GROUP_NAMES)
    with pytest.raises(ValueError, match="solution of \\('a', 0\\)"):
        ARCVoting(VARIANTS, [np.zeros((31, 1), dtype=int)] + RIGHT[1:], GROUP_TASK, GROUP_NAMES)
