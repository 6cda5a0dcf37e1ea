"""Tests of the graph coloring data pipeline: enumeration, isomorphism keys, checks, augmentation,
cache and DataModule.

Colorings are checked against `_brute_force_colorings`, which tries all k^n colorings and
canonicalizes them with a plain loop written here, so it shares no code with the enumeration
under test.
"""

from __future__ import annotations

import itertools

import datasets
import numpy as np
import pytest
import torch

import datamodules.graph_coloring.data as gc_data
from datamodules.generation import GenerationError
from datamodules.graph_coloring import GraphColoringDataModule
from datamodules.graph_coloring.colorings import canonical_output, check_coloring, conflict_edges
from datamodules.graph_coloring.generator import generate_split
from datamodules.graph_coloring.graphs import augment_batch, enumerate_colorings, isomorphism_key, num_pairs

datasets.disable_progress_bars()

N, TRAIN, TEST, VAL = 7, 300, 40, 16  # a small DataModule: builds in well under a second


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def _edge_list(edges: np.ndarray, n: int) -> list[tuple[int, int]]:
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]  # input order, written out
    return [pair for pair, e in zip(pairs, edges) if e]


def _canonical(colors) -> tuple[int, ...]:
    relabel: dict[int, int] = {}
    return tuple(relabel.setdefault(c, len(relabel)) for c in colors)


def _brute_force_colorings(edges: np.ndarray, n: int, k: int) -> set[tuple[int, ...]]:
    """Canonical forms of all proper colorings among the k^n colorings."""
    edge_list = _edge_list(edges, n)
    return {
        _canonical(colors)
        for colors in itertools.product(range(k), repeat=n)
        if all(colors[i] != colors[j] for i, j in edge_list)
    }


def _is_proper(edges: np.ndarray, colors, n: int) -> bool:
    return all(colors[i] != colors[j] for i, j in _edge_list(edges, n))


def _tokens(edges) -> torch.Tensor:
    return torch.as_tensor(np.asarray(edges), dtype=torch.long) + 1  # no edge -> 1, edge -> 2


def _graph(n: int, edge_list: list[tuple[int, int]]) -> np.ndarray:
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return np.array([(i, j) in edge_list or (j, i) in edge_list for i, j in pairs])


def _random_graphs(n: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.1, 0.7, size=(count, 1))  # sparse (many colorings) to dense (none)
    return rng.random((count, num_pairs(n))) < probs


def _relabel(edges: np.ndarray, n: int, perm: np.ndarray) -> np.ndarray:
    """The graph whose node a is node perm[a] of ``edges``."""
    adj = np.zeros((n, n), dtype=bool)
    adj[np.triu_indices(n, 1)] = edges
    adj |= adj.T
    return adj[perm][:, perm][np.triu_indices(n, 1)]


@pytest.fixture(scope="module")
def dm(tmp_path_factory) -> GraphColoringDataModule:
    module = GraphColoringDataModule(
        num_nodes=N, num_train_graphs=TRAIN, num_test_graphs=TEST, num_val_graphs=VAL, batch_size=32,
        eval_batch_size=16, epoch_multiplier=2, cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    module.prepare_data()
    module.setup()
    return module


# ---------------------------------------------------------------------------------------------
# Enumeration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, k", [(6, 3), (7, 3), (5, 2), (5, 4)])
def test_enumeration_equals_brute_force(n, k):
    graphs = _random_graphs(n, 60, seed=n * 10 + k)
    graphs[0] = False  # empty graph: every set partition into <= k blocks
    graphs[1] = True  # complete graph: colorable only when k >= n
    colorings, counts = enumerate_colorings(graphs, n, k)
    assert counts.sum() == len(colorings)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for g, edges in enumerate(graphs):
        found = [tuple(row) for row in colorings[offsets[g] : offsets[g + 1]].tolist()]
        assert len(found) == len(set(found))  # no coloring twice
        assert set(found) == _brute_force_colorings(edges, n, k)
        assert found == sorted(found)  # lexicographic within a graph (stable storage order)
    assert counts[1] == (1 if k >= n else 0)


def test_enumerated_colorings_are_proper_and_canonical():
    n = 8
    graphs = _random_graphs(n, 200, seed=1)
    colorings, counts = enumerate_colorings(graphs, n, 3)
    owner = np.repeat(np.arange(len(graphs)), counts)
    for g, colors in zip(owner, colorings.tolist()):
        assert _is_proper(graphs[g], colors, n)
        # Canonical, so no two stored colorings of a graph are color permutations of each other
        # (together with the distinctness checked above).
        assert tuple(colors) == _canonical(colors)
        assert max(colors) < 3


def test_known_coloring_counts():
    # Up to color permutation: a triangle has one 3-coloring, the path 0-1-2 two (ABA, ABC), K4 none.
    triangle = _graph(3, [(0, 1), (1, 2), (0, 2)])
    path = _graph(3, [(0, 1), (1, 2)])
    k4 = _graph(4, [(i, j) for i in range(4) for j in range(i + 1, 4)])
    assert enumerate_colorings(triangle[None], 3, 3)[1].tolist() == [1]
    assert enumerate_colorings(path[None], 3, 3)[0].tolist() == [[0, 1, 0], [0, 1, 2]]
    assert enumerate_colorings(k4[None], 4, 3)[1].tolist() == [0]
    # The empty 10-node graph: Stirling numbers S(10,1) + S(10,2) + S(10,3) = 1 + 511 + 9330.
    assert enumerate_colorings(np.zeros((1, 45), bool), 10, 3)[1].tolist() == [9842]


def test_enumeration_rejects_wrong_shape():
    with pytest.raises(ValueError, match="edges must be"):
        enumerate_colorings(np.zeros((2, 10), bool), 6, 3)


# ---------------------------------------------------------------------------------------------
# Isomorphism keys
# ---------------------------------------------------------------------------------------------


def test_isomorphism_key_matches_brute_force_classes():
    n = 6
    perms = np.array(list(itertools.permutations(range(n))))
    rows, cols = np.triu_indices(n, 1)
    graphs = _random_graphs(n, 150, seed=3)
    graphs[0], graphs[1] = False, True
    keys, classes = [], []
    for edges in graphs:
        keys.append(isomorphism_key(edges, n))
        # The brute-force class: the smallest relabelled upper triangle over all n! relabellings.
        adj = np.zeros((n, n), dtype=bool)
        adj[np.triu_indices(n, 1)] = edges
        adj |= adj.T
        relabelled = adj[perms[:, :, None], perms[:, None, :]][:, rows, cols]  # (n!, n(n-1)/2)
        classes.append(min(map(bytes, np.packbits(relabelled, axis=1))))
    pairs = set(zip(keys, classes))
    assert len(pairs) == len(set(keys)) == len(set(classes))  # the same partition into classes


@pytest.mark.parametrize("n", [8, 10])
def test_isomorphism_key_is_invariant_under_relabelling(n):
    rng = np.random.default_rng(n)
    graphs = _random_graphs(n, 40, seed=n)
    # Highly symmetric graphs exercise the twin pruning and deep searches.
    graphs[0] = False
    graphs[1] = _graph(n, [(i, (i + 1) % n) for i in range(n)])  # cycle
    graphs[2] = _graph(n, [(2 * i, 2 * i + 1) for i in range(n // 2)])  # perfect matching
    graphs[3] = _graph(n, [(i, j) for i in range(n) for j in range(n) if i < n // 2 <= j])  # K_{n/2,n/2}
    # Regular but not vertex-transitive: refinement cannot split it, so the key depends on
    # branching on every node (a triangle node and a node of the other cycle give different leaves).
    graphs[4] = _graph(n, [(0, 1), (1, 2), (0, 2)] + [(i, i + 1) for i in range(3, n - 1)] + [(3, n - 1)])
    for g, edges in enumerate(graphs):
        key = isomorphism_key(edges, n)
        for _ in range(12 if g == 4 else 3):
            assert isomorphism_key(_relabel(edges, n, rng.permutation(n)), n) == key
    assert isomorphism_key(graphs[4], n) != isomorphism_key(graphs[1], n)  # two cycles vs one
    # A triangle plus isolated nodes differs from a path with the same number of edges.
    assert isomorphism_key(_graph(n, [(0, 1), (1, 2), (0, 2)]), n) != isomorphism_key(
        _graph(n, [(0, 1), (1, 2), (2, 3)]), n
    )


# ---------------------------------------------------------------------------------------------
# Checks and canonical outputs
# ---------------------------------------------------------------------------------------------


def test_conflict_edges_hand_made():
    triangle = _tokens(_graph(3, [(0, 1), (1, 2), (0, 2)]))[None]
    assert conflict_edges(triangle, torch.tensor([[3, 4, 3]])).tolist() == [1]  # 2 colors: edge 0-2
    assert conflict_edges(triangle, torch.tensor([[5, 5, 5]])).tolist() == [3]
    assert conflict_edges(triangle, torch.tensor([[3, 4, 5]])).tolist() == [0]
    # Path 0-1-2-3 plus edge 1-3: colors A A A B conflict on 0-1 and 1-2 only.
    graph = _tokens(_graph(4, [(0, 1), (1, 2), (2, 3), (1, 3)]))[None]
    preds = torch.tensor([[3, 3, 3, 4], [3, 4, 3, 5], [4, 4, 4, 4]])
    inputs = graph.expand(3, -1)
    assert conflict_edges(inputs, preds).tolist() == [2, 0, 4]
    assert check_coloring(inputs, preds).tolist() == [False, True, False]
    assert conflict_edges(inputs, preds).dtype == torch.long
    # Leading dimensions (e.g. samples per input) are kept.
    assert conflict_edges(inputs[None].expand(2, -1, -1), preds[None].expand(2, -1, -1)).shape == (2, 3)


def test_non_color_tokens_are_never_proper():
    # Node 3 is isolated, node 0 has two neighbours.
    inputs = _tokens(_graph(4, [(0, 1), (0, 2)]))[None]
    for bad in (0, 1, 2, 6):  # PAD, no edge, edge, one past the last of 3 colors
        isolated = torch.tensor([[3, 4, 4, bad]])
        assert conflict_edges(inputs, isolated).tolist() == [0]
        assert check_coloring(inputs, isolated).tolist() == [False]
        hub = torch.tensor([[bad, 4, 4, 3]])
        assert conflict_edges(inputs, hub).tolist() == [2]  # conflicts with both neighbours
        assert check_coloring(inputs, hub).tolist() == [False]
        everywhere = torch.full((1, 4), bad)
        assert check_coloring(inputs, everywhere).tolist() == [False]
    # With 4 colors token 6 is a color.
    assert check_coloring(inputs, torch.tensor([[6, 4, 4, 3]]), num_colors=4).tolist() == [True]


def test_check_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="nodes need"):
        conflict_edges(torch.ones(2, 10, dtype=torch.long), torch.full((2, 4), 3))


def test_canonical_output():
    preds = torch.tensor([[5, 3, 5, 4, 3], [4, 4, 3, 3, 5], [1, 5, 0, 3, 5]])
    expected = torch.tensor([[3, 4, 3, 5, 4], [3, 3, 4, 4, 5], [1, 3, 0, 4, 3]])  # non-colors kept
    assert torch.equal(canonical_output(preds), expected)
    assert canonical_output(preds.to(torch.int8)).dtype == torch.int8
    assert torch.equal(canonical_output(preds[None].expand(2, -1, -1)), expected[None].expand(2, -1, -1))
    # Every color permutation of a coloring maps to the same tensor.
    rng = np.random.default_rng(0)
    base = torch.as_tensor(rng.integers(3, 6, size=(20, 8)))
    for perm in itertools.permutations(range(3)):
        lookup = torch.tensor([0, 1, 2, *(3 + p for p in perm)])
        assert torch.equal(canonical_output(lookup[base]), canonical_output(base))
    assert torch.equal(canonical_output(canonical_output(base)), canonical_output(base))
    # A token past the last color is not a color when num_colors is given.
    assert canonical_output(torch.tensor([[6, 4]]), num_colors=3).tolist() == [[6, 3]]


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------


def test_augmentation_keeps_colorings_proper():
    n = 8
    graphs = _random_graphs(n, 300, seed=5)
    colorings, counts = enumerate_colorings(graphs, n, 3)
    colorable = counts > 0
    first = np.concatenate([[0], np.cumsum(counts)])[:-1][colorable]
    inputs = _tokens(graphs[colorable])
    labels = torch.as_tensor(colorings[first], dtype=torch.long) + 3
    generator = torch.Generator().manual_seed(0)
    aug_inputs, aug_labels = augment_batch(inputs, labels, generator)
    assert aug_inputs.shape == inputs.shape and aug_labels.shape == labels.shape
    assert check_coloring(aug_inputs, aug_labels).all()
    assert torch.equal((aug_inputs == 2).sum(1), (inputs == 2).sum(1))
    assert not torch.equal(aug_inputs, inputs)  # something moved
    # Each augmented graph is the original one relabelled.
    for before, after in list(zip(inputs.numpy() == 2, aug_inputs.numpy() == 2))[:30]:
        assert isomorphism_key(before, n) == isomorphism_key(after, n)
    # The labels follow the nodes: the color multiset is unchanged.
    assert torch.equal(aug_labels.sort(1).values, labels.sort(1).values)


def test_augmentation_relabels_consistently():
    # Path 0-1-2 colored A B C (distinct colors identify the nodes): after augmentation the middle
    # node, the only one with two neighbours, must still carry B.
    inputs = _tokens(_graph(3, [(0, 1), (1, 2)]))[None].expand(64, -1)
    labels = torch.tensor([[3, 4, 5]]).expand(64, -1)
    aug_inputs, aug_labels = augment_batch(inputs, labels, torch.Generator().manual_seed(1))
    for edges, colors in zip(aug_inputs.tolist(), aug_labels.tolist()):
        degree = [0, 0, 0]
        for (i, j), token in zip([(0, 1), (0, 2), (1, 2)], edges):
            if token == 2:
                degree[i] += 1
                degree[j] += 1
        assert colors[degree.index(2)] == 4
    assert len({tuple(x) for x in aug_labels.tolist()}) == 6  # all 3! relabellings show up


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


def test_shapes_linked_into_the_model():
    module = GraphColoringDataModule(num_nodes=10)
    assert (module.vocab_size, module.seq_len, module.out_len, module.num_puzzle_ids) == (6, 45, 10, 0)
    assert module.out_len != module.seq_len
    assert (module.num_train_graphs, module.num_test_graphs) == (13465, 192)
    module = GraphColoringDataModule(num_nodes=8)
    assert (module.num_train_graphs, module.num_test_graphs) == (7002, 255)
    assert GraphColoringDataModule(num_nodes=8, num_colors=4).vocab_size == 7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_nodes=1), "num_nodes"),
        (dict(edge_prob=0.0), "edge_prob"),
        (dict(edge_prob=1.0), "edge_prob"),
        (dict(edge_prob=-0.2), "edge_prob"),
        (dict(num_colors=1), "num_colors"),
        (dict(num_nodes=9), "num_train_graphs has a default only"),
        (dict(num_nodes=9, num_train_graphs=100), "num_test_graphs has a default only"),
        (dict(num_train_graphs=0), "num_train_graphs must be >= 1"),
        (dict(num_test_graphs=10, num_val_graphs=20), "num_val_graphs=20 exceeds"),
        (dict(num_val_graphs=-1), "num_val_graphs"),
        (dict(epoch_multiplier=0), "epoch_multiplier"),
        (dict(batch_size=0), "batch_size"),
        (dict(eval_batch_size=0), "eval_batch_size"),
        (dict(num_workers=-1), "num_workers"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GraphColoringDataModule(**kwargs)


def test_stored_colorings_are_all_colorings(dm):
    for split in ("train", "test"):
        data = dm.splits[split]
        assert len(data) == (TRAIN if split == "train" else TEST)
        assert (data.num_solutions >= 1).all()
        for p in range(0, len(data), 7):
            edges = data.inputs[p].numpy() == 2
            stored = [tuple(row) for row in (data.solutions[data.offsets[p] : data.offsets[p + 1]] - 3).tolist()]
            assert len(stored) == data.num_solutions[p] == len(set(stored))
            assert set(stored) == _brute_force_colorings(edges, N, 3)


def test_batches(dm):
    train = next(iter(dm.train_dataloader()))
    m = num_pairs(N)
    assert set(train) == {"inputs", "labels", "num_solutions", "index"}
    assert train["inputs"].shape == (32, m) and train["labels"].shape == (32, N)
    assert train["num_solutions"].shape == (32,) and train["index"].shape == (32,)
    assert all(v.dtype == torch.long for v in train.values())
    assert ((train["inputs"] == 1) | (train["inputs"] == 2)).all()
    assert check_coloring(train["inputs"], train["labels"]).all()  # augmented together
    assert len(dm.train_dataloader()) == TRAIN * 2 // 32  # epoch_multiplier 2, drop_last

    val = list(dm.val_dataloader())
    assert sum(len(b["index"]) for b in val) == VAL
    test = next(iter(dm.test_dataloader()))
    assert test["index"].tolist() == list(range(16))
    data = dm.splits["test"]
    assert torch.equal(test["inputs"], data.inputs[:16].long())  # unaugmented
    assert torch.equal(test["labels"], data.solutions[data.offsets[:16]].long())  # first canonical coloring
    assert dm.check(test["inputs"], test["labels"]).all()
    assert (dm.violations(test["inputs"], test["labels"]) == 0).all()


def test_training_labels_cover_colorings_and_permutations(dm):
    data = dm.splits["train"]
    p = int(torch.nonzero(data.num_solutions >= 3)[0])
    batches = gc_data._GraphBatches(data, 3, random_label=True)
    labels = batches.__getitems__([p] * 400)["labels"]
    assert check_coloring(data.inputs[p].long().expand(400, -1), labels).all()
    stored = {tuple(row) for row in data.solutions[data.offsets[p] : data.offsets[p + 1]].tolist()}
    assert {tuple(row) for row in dm.canonical(labels).tolist()} == stored  # all drawn
    assert len({tuple(row) for row in labels.tolist()}) > len(stored)  # colors permuted too


def test_solutions(dm):
    index = torch.tensor([3, 0, 5])
    solutions, counts = dm.solutions(index, "test")
    data = dm.splits["test"]
    assert torch.equal(counts, data.num_solutions[index])
    assert solutions.shape == (3, int(counts.max()), N) and solutions.dtype == torch.long
    for row, p in enumerate(index.tolist()):
        count = int(counts[row])
        assert torch.equal(solutions[row, :count], data.solutions[data.offsets[p] : data.offsets[p + 1]].long())
        assert (solutions[row, count:] == 0).all()
        assert torch.equal(dm.canonical(solutions[row, :count]), solutions[row, :count])


def test_train_and_test_are_disjoint_up_to_isomorphism(dm):
    def keys(split):
        return [isomorphism_key(row, N) for row in dm.splits[split].inputs.numpy() == 2]

    train, test = keys("train"), set(keys("test"))
    assert not set(train) & test
    rows = {row.tobytes() for row in dm.splits["train"].inputs.numpy()}
    assert len(rows) == TRAIN  # distinct adjacency matrices
    assert torch.equal(dm.splits["val"].inputs, dm.splits["test"].inputs[:VAL])


def _brute_force_classes(edges: np.ndarray, n: int) -> list[bytes]:
    """Isomorphism class of each (G, n(n-1)/2) bool graph: its smallest packed upper triangle over
    all n! relabellings (no code shared with `isomorphism_key`)."""
    perms = np.array(list(itertools.permutations(range(n))))
    rows, cols = np.triu_indices(n, 1)
    classes = []
    for row in edges:
        adj = np.zeros((n, n), dtype=bool)
        adj[rows, cols] = row
        adj |= adj.T
        relabelled = adj[perms[:, :, None], perms[:, None, :]][:, rows, cols]  # (n!, n(n-1)/2)
        classes.append(min(map(bytes, np.packbits(relabelled, axis=1))))
    return classes


def test_no_relabelling_maps_a_test_graph_onto_a_training_graph(dm):
    # Training relabels nodes at random, so a training graph isomorphic to a test graph would show
    # that test graph during training; brute force over all 7! relabellings finds none.
    test = set(_brute_force_classes(dm.splits["test"].inputs.numpy() == 2, N))
    train = _brute_force_classes(dm.splits["train"].inputs.numpy() == 2, N)
    assert not test & set(train)
    # Without the guard the same stream has such graphs, so the check above can fail.
    unguarded = generate_split("train", TRAIN, n=N)
    assert test & set(_brute_force_classes(np.array(unguarded["inputs"]) == 2, N))


def test_cached_reload_is_identical(dm, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(gc_data, "generate_split", fail)
    again = GraphColoringDataModule(
        num_nodes=N, num_train_graphs=TRAIN, num_test_graphs=TEST, num_val_graphs=VAL, cache_dir=dm.cache_dir,
    )
    again.setup()
    for split in ("train", "val", "test"):
        for field in ("inputs", "solutions", "offsets", "num_solutions"):
            assert torch.equal(getattr(again.splits[split], field), getattr(dm.splits[split], field))


def test_generation_is_a_prefix_and_seeded():
    small = generate_split("test", 20, n=6)
    large = generate_split("test", 50, n=6)
    assert small["inputs"] == large["inputs"][:20]
    assert small["solutions"] == large["solutions"][:20]
    assert generate_split("test", 20, n=6, seed=1)["inputs"] != small["inputs"]


def test_unique_up_to_isomorphism():
    ds = generate_split("train", 60, n=6, unique_up_to_isomorphism=True)
    keys = [isomorphism_key(np.array(row) == 2, 6) for row in ds["inputs"]]
    assert len(set(keys)) == 60
    # 6 nodes have 156 isomorphism classes of graphs: far fewer than asked for.
    with pytest.raises(GenerationError, match="only"):
        generate_split("train", 200, n=6, unique_up_to_isomorphism=True)
