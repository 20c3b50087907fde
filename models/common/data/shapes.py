r"""Synthetic binary-segmentation images: textured foreground shapes on textured backgrounds, with their
masks (the offline stand-in for the Weizmann horses of MotionFlow's Sec. 5.5).

Each image is ``size`` x ``size`` RGB in :math:`[0, 1]` (32 x 32 by default, the paper's resolution)
on the grid :math:`u, v \in [-1, 1]`. Its mask is the union of one or two shapes, each chosen uniformly
from

* an ellipse, :math:`(u'/a)^2 + (v'/b)^2 \le 1`;
* a rectangle, :math:`|u'| \le a,\ |v'| \le b`;
* an equilateral triangle of inradius :math:`r = (a + b)/3`,
  :math:`\max_{k=0,1,2} (u', v') \cdot (\cos\frac{2\pi k}{3}, \sin\frac{2\pi k}{3}) \le r` (the
  three half-planes of its sides),

where :math:`(u', v')` are the coordinates relative to a centre :math:`\sim U(-0.4, 0.4)^2`, turned by
an angle :math:`\sim U(0, \pi)`, and :math:`a, b \sim U(0.25, 0.6)`.

**Textures.** The foreground is striped: :math:`m = \tfrac12 + \tfrac12\sin(\omega(u\cos\alpha + v\sin\alpha) + \beta)`
with :math:`\omega \sim U(10, 18)`, mixing two random colours :math:`c_1 m + c_2 (1 - m)`; the
background is smooth: a mix of two other random colours by
:math:`\tfrac12 + \tfrac12\sin(\omega_1 u + \beta_1)\cos(\omega_2 v + \beta_2)`, :math:`\omega_i \sim U(1, 4)`.
All four colours are uniform in :math:`[0, 1]^3`, so colour alone does not tell foreground from
background: the texture and the shape's outline do. The shape's edge is softened over about one
pixel, then every pixel gets :math:`\mathcal N(0, \sigma^2)` noise (``noise`` :math:`= \sigma = 0.1`)
and the image is clipped to :math:`[0, 1]`. The mask is the hard union, 1 inside.

Example::

    >>> images, masks = sample(8, generator=0)
    >>> images.shape, masks.shape, images.dtype
    (torch.Size([8, 3, 32, 32]), torch.Size([8, 1, 32, 32]), torch.float32)
    >>> bool(((masks == 0) | (masks == 1)).all()), 0.05 < float(masks.mean()) < 0.6
    (True, True)

Reference: M. Zand, A. Etemad, M. Greenspan, "Flow-based spatio-temporal structured prediction of
motion dynamics" (MotionFlow), IEEE TPAMI 2023, Sec. 5.5 and Table 6 (Weizmann horses at 32 x 32,
mean IoU from the mean of 10 samples).
"""

from __future__ import annotations

import math

import torch

from ._checks import check_positive_ints, seeded_generator

__all__ = ["SHAPES", "sample"]

SHAPES = ("ellipse", "rectangle", "triangle")


def _uniform(low: float, high: float, shape, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def _shape_distance(u: torch.Tensor, v: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """A signed level of one random shape per image, ``(n, H, W)``: <= 0 inside (in units of the grid)."""
    centre = _uniform(-0.4, 0.4, (n, 2, 1, 1), g)
    angle = _uniform(0, math.pi, (n, 1, 1), g)
    a, b = _uniform(0.25, 0.6, (n, 1, 1), g), _uniform(0.25, 0.6, (n, 1, 1), g)
    kind = torch.randint(0, len(SHAPES), (n, 1, 1), generator=g)
    du, dv = u - centre[:, 0], v - centre[:, 1]
    x = du * angle.cos() + dv * angle.sin()
    y = -du * angle.sin() + dv * angle.cos()
    # each level is roughly a distance to the outline (ellipse: radial, scaled by the mean radius)
    ellipse = ((x / a).pow(2) + (y / b).pow(2)).sqrt().sub(1) * (a + b) / 2
    rectangle = torch.maximum(x.abs() - a, y.abs() - b)
    sides = torch.arange(3, dtype=torch.float64) * 2 * math.pi / 3
    along = x.unsqueeze(-1) * sides.cos() + y.unsqueeze(-1) * sides.sin()
    triangle = along.amax(-1) - (a + b) / 3
    return torch.where(kind == 0, ellipse, torch.where(kind == 1, rectangle, triangle))


def sample(
    n: int,
    size: int = 32,
    noise: float = 0.1,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images and masks (see the module docstring).

    Args:
        n: number of images.
        size: height and width in pixels.
        noise: standard deviation of the pixel noise.
        generator: a ``torch.Generator``, an int seed, or ``None`` (seed 0).
        dtype: of the results (generated in float64).

    Returns:
        ``(images, masks)`` of shapes ``(n, 3, size, size)`` (values in [0, 1]) and ``(n, 1, size, size)`` (0 or 1).
    """
    check_positive_ints(n=n, size=size)
    if noise < 0:
        raise ValueError(f"noise: expected a standard deviation >= 0, got {noise}")
    g = seeded_generator(generator)
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    level = _shape_distance(u, v, n, g)
    second = _shape_distance(u, v, n, g)
    two = torch.rand(n, 1, 1, generator=g, dtype=torch.float64) < 0.5
    level = torch.where(two, torch.minimum(level, second), level)
    mask = (level <= 0).to(torch.float64)
    pixel = 2 / size
    soft = torch.sigmoid(-level / (0.5 * pixel)).unsqueeze(1)  # (n, 1, H, W), about one pixel wide

    colours = torch.rand(n, 4, 3, 1, 1, generator=g, dtype=torch.float64)
    omega, alpha, beta = _uniform(10, 18, (n, 1, 1, 1), g), _uniform(0, math.pi, (n, 1, 1, 1), g), _uniform(0, 2 * math.pi, (n, 1, 1, 1), g)
    stripes = 0.5 + 0.5 * (omega * (u * alpha.cos() + v * alpha.sin()) + beta).sin()
    fg = colours[:, 0] * stripes + colours[:, 1] * (1 - stripes)
    w1, w2 = _uniform(1, 4, (n, 1, 1, 1), g), _uniform(1, 4, (n, 1, 1, 1), g)
    b1, b2 = _uniform(0, 2 * math.pi, (n, 1, 1, 1), g), _uniform(0, 2 * math.pi, (n, 1, 1, 1), g)
    blend = 0.5 + 0.5 * (w1 * u + b1).sin() * (w2 * v + b2).cos()
    bg = colours[:, 2] * blend + colours[:, 3] * (1 - blend)
    image = soft * fg + (1 - soft) * bg + noise * torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
    return image.clamp(0, 1).to(dtype), mask.unsqueeze(1).to(dtype)
