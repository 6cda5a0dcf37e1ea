"""ARC grid format: validation, TRM's dihedral x colour augmentations, the EOS canvas and its cropping."""

import numpy as np
import pytest

from datamodules.arc.grids import (
    CANVAS,
    DIHEDRAL_INVERSE,
    EOS,
    IDENTITY,
    NUM_DIHEDRAL,
    PAD,
    SEQ_LEN,
    ARCFormatError,
    Variant,
    _crop_sizes,
    _task_key,
    check_grid,
    crop_canvas,
    dihedral,
    encode_canvas,
    grid_hash,
    task_variants,
)


def random_grid(rng: np.random.Generator, h: int | None = None, w: int | None = None) -> np.ndarray:
    h = int(rng.integers(1, CANVAS + 1)) if h is None else h
    w = int(rng.integers(1, CANVAS + 1)) if w is None else w
    return rng.integers(0, 10, size=(h, w)).astype(np.uint8)


def random_variant(rng: np.random.Generator, k: int) -> Variant:
    return Variant(k, (0, *(int(c) + 1 for c in rng.permutation(9))))


# --- augmentations -------------------------------------------------------------------------------


def test_every_variant_composed_with_its_inverse_is_the_identity():
    rng = np.random.default_rng(0)
    for _ in range(25):
        for k in range(NUM_DIHEDRAL):
            g = random_grid(rng)
            v = random_variant(rng, k)
            assert np.array_equal(v.invert(v.apply(g)), g)
            assert np.array_equal(v.apply(v.invert(g)), g)
            assert np.array_equal(dihedral(dihedral(g, k), DIHEDRAL_INVERSE[k]), g)


def test_dihedral_follows_trm_numbering():
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    expected = [g, np.rot90(g, 1), np.rot90(g, 2), np.rot90(g, 3), np.fliplr(g), np.flipud(g), g.T, g[::-1, ::-1].T]
    for k, e in enumerate(expected):
        assert np.array_equal(dihedral(g, k), e), k
    # An asymmetric grid has 8 distinct images: the numbering covers the whole group.
    assert len({dihedral(g, k).tobytes() + bytes(dihedral(g, k).shape) for k in range(8)}) == 8
    with pytest.raises(ValueError, match="0..7"):
        dihedral(g, 8)


def test_variant_recolours_then_transforms():
    g = np.array([[0, 1, 2], [3, 0, 9]], dtype=np.uint8)
    colors = (0, 5, 6, 7, 8, 9, 1, 2, 3, 4)
    v = Variant(1, colors)
    assert np.array_equal(v.apply(g), np.rot90(np.asarray(colors)[g]))


@pytest.mark.parametrize("kwargs, problem", [
    (dict(dihedral=8, colors=tuple(range(10))), "dihedral"),
    (dict(dihedral=0, colors=(1, 0, 2, 3, 4, 5, 6, 7, 8, 9)), "black"),
    (dict(dihedral=0, colors=(0, 1, 1, 3, 4, 5, 6, 7, 8, 9)), "permutation"),
    (dict(dihedral=0, colors=tuple(range(9))), "permutation"),
])
def test_variant_rejects_invalid_parameters(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        Variant(**kwargs)


def test_task_variants_identity_first_distinct_and_deterministic():
    rng = np.random.default_rng(1)
    grids = [random_grid(rng, 3, 4), random_grid(rng, 5, 2), random_grid(rng, 4, 4)]
    variants = task_variants(grids, max_variants=20, seed=7)
    assert variants[0] == IDENTITY
    assert len(variants) == 20  # an ordinary task reaches max_variants
    keys = {_task_key([v.apply(g) for g in grids]) for v in variants}
    assert len(keys) == len(variants)
    assert all(v.colors[0] == 0 for v in variants)
    assert task_variants(grids, max_variants=20, seed=7) == variants
    assert task_variants(grids, max_variants=20, seed=8) != variants


def test_task_variants_of_a_symmetric_task():
    black = np.zeros((3, 3), dtype=np.uint8)
    assert task_variants([black], max_variants=10, seed=0) == [IDENTITY]
    # A one-colour shape without symmetries has 8 dihedral images x 9 colours: 72 distinct tasks at most.
    shape = np.array([[1, 1, 0], [1, 0, 0]], dtype=np.uint8)
    variants = task_variants([shape], max_variants=1000, seed=0, max_tries_factor=2)
    assert len(variants) == 8 * 9
    with pytest.raises(ValueError, match="max_variants"):
        task_variants([shape], max_variants=0, seed=0)


# --- the canvas ------------------------------------------------------------------------------------


def test_crop_recovers_every_grid_size():
    rng = np.random.default_rng(2)
    grids = [random_grid(rng, h, w) for h in range(1, CANVAS + 1) for w in range(1, CANVAS + 1)]
    canvases = np.stack([encode_canvas(g) for g in grids])  # (900, 900)
    assert canvases.shape == (CANVAS * CANVAS, SEQ_LEN) and canvases.dtype == np.uint8
    for g, c in zip(grids, canvases):
        cropped = crop_canvas(c)
        assert cropped.dtype == np.uint8 and np.array_equal(cropped, g), g.shape
    assert np.array_equal(_crop_sizes(canvases), [g.shape for g in grids])


def test_encode_with_offset_places_grid_and_eos():
    g = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    canvas = encode_canvas(g, (4, 5)).reshape(CANVAS, CANVAS)
    assert np.array_equal(canvas[4:6, 5:8], g + 2)
    eos = np.zeros((CANVAS, CANVAS), dtype=bool)
    eos[6, 5:9] = True  # the row below, corner included
    eos[4:6, 8] = True  # the column to the right
    assert np.array_equal(canvas == EOS, eos)
    colored = np.zeros_like(eos)
    colored[4:6, 5:8] = True
    assert (canvas[~eos & ~colored] == PAD).all()


def test_encode_at_the_canvas_edges():
    wide = np.ones((5, CANVAS), dtype=np.uint8)
    canvas = encode_canvas(wide).reshape(CANVAS, CANVAS)
    assert (canvas[5] == EOS).all() and (canvas == EOS).sum() == CANVAS  # no right EOS column
    corner = encode_canvas(np.ones((3, 3), dtype=np.uint8), (27, 27)).reshape(CANVAS, CANVAS)
    assert (corner == EOS).sum() == 0 and (corner[27:, 27:] == 3).all()
    tall = encode_canvas(np.ones((CANVAS, 2), dtype=np.uint8), (0, 10)).reshape(CANVAS, CANVAS)
    assert (tall[:, 12] == EOS).all() and (tall == EOS).sum() == CANVAS  # no bottom EOS row


@pytest.mark.parametrize("shape, offset", [((3, 3), (28, 0)), ((3, 3), (0, 28)), ((1, 30), (0, 1)), ((2, 2), (-1, 0))])
def test_encode_rejects_a_grid_that_does_not_fit(shape, offset):
    with pytest.raises(ValueError, match="does not fit|non-negative"):
        encode_canvas(np.zeros(shape, dtype=np.uint8), offset)


def test_crop_of_garbage_is_empty():
    garbage = [np.zeros(SEQ_LEN), np.full(SEQ_LEN, EOS), np.r_[EOS, np.full(SEQ_LEN - 1, 5)],  # all PAD, EOS first
               np.full(SEQ_LEN, 12), np.full(SEQ_LEN, -3)]  # out-of-vocabulary tokens are not colours
    for tokens in garbage:
        assert crop_canvas(tokens.astype(np.int64)).shape == (0, 0)
    with pytest.raises(ValueError, match="900"):
        crop_canvas(np.zeros(899))


def test_crop_picks_the_largest_top_left_rectangle():
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.int64)
    canvas[0, :5] = 2  # runs of colour from column 0: 5, 2, 2, then none
    canvas[1:3, :2] = 3
    assert crop_canvas(canvas.ravel()).shape == (3, 2)  # area 6 beats 5 (1x5) and 4 (2x2)
    canvas[2] = 0  # runs 5, 2: areas 5 and 4
    assert crop_canvas(canvas.ravel()).shape == (1, 5)
    canvas[0, 4] = 0  # runs 4, 2: areas 4 and 4 tie, the shorter wins (TRM scans rows in order)
    assert crop_canvas(canvas.ravel()).shape == (1, 4)
    # An unclosed prediction full of colours crops to the whole canvas.
    assert crop_canvas(np.full(SEQ_LEN, 11)).shape == (CANVAS, CANVAS)


# --- validation and hashing ------------------------------------------------------------------------


@pytest.mark.parametrize("grid, problem", [
    ([[1, 2], [3]], "not rectangular"),
    ([1, 2, 3], "2-D"),
    (np.zeros((2, 2, 2), dtype=int), "2-D"),
    ([], "2-D"),
    ([[]], "empty"),
    (np.zeros((31, 2), dtype=int), "31x2"),
    ([[0, 10]], "0..9, found 10"),
    ([[0, -1]], "0..9, found -1"),
    ([[0.5, 1]], "integers"),
    ([[True]], "integers"),
    ([["1"]], "integers"),
])
def test_check_grid_names_the_place_and_the_problem(grid, problem):
    where = "task 007bbfb7, train pair 2, output"
    with pytest.raises(ARCFormatError) as err:
        check_grid(grid, where)
    assert str(err.value).startswith(where) and problem in str(err.value)
    assert isinstance(err.value, ValueError)


def test_check_grid_returns_uint8():
    g = check_grid([[0, 9], [3, 4]], "here")
    assert g.dtype == np.uint8 and g.shape == (2, 2) and g.tolist() == [[0, 9], [3, 4]]


def test_grid_hash_is_stable_and_shape_aware():
    g = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    # A fixed value: a change of hashing scheme would silently break stored answers and submissions.
    assert grid_hash(g) == 3205067667500386615
    assert grid_hash(g.astype(np.int64)) == grid_hash(g)
    assert grid_hash(g.reshape(3, 2)) != grid_hash(g)  # same bytes, different shape
    assert grid_hash(np.zeros((0, 0), dtype=np.uint8)) != grid_hash(np.zeros((0, 3), dtype=np.uint8))
    rng = np.random.default_rng(3)
    hashes = [grid_hash(random_grid(rng)) for _ in range(200)]
    assert all(0 <= h < 2**63 for h in hashes)
