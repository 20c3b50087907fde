r"""The four two-dimensional test energies of Rezende & Mohamed (2015), Table 1.

Each is an unnormalised density :math:`p(z) \propto e^{-U(z)}` on :math:`z = (z_1, z_2)`, with

.. math::

    w_1(z) = \sin\!\left(\frac{2\pi z_1}{4}\right), \qquad
    w_2(z) = 3 \exp\!\left[-\frac12\left(\frac{z_1 - 1}{0.6}\right)^2\right], \qquad
    w_3(z) = 3\,\sigma\!\left(\frac{z_1 - 1}{0.3}\right),

.. math::

    U_1(z) &= \frac12\left(\frac{\lVert z\rVert - 2}{0.4}\right)^2
        - \log\left(e^{-\frac12\left(\frac{z_1 - 2}{0.6}\right)^2} + e^{-\frac12\left(\frac{z_1 + 2}{0.6}\right)^2}\right), \\
    U_2(z) &= \frac12\left(\frac{z_2 - w_1(z)}{0.4}\right)^2, \\
    U_3(z) &= -\log\left(e^{-\frac12\left(\frac{z_2 - w_1(z)}{0.35}\right)^2}
        + e^{-\frac12\left(\frac{z_2 - w_1(z) + w_2(z)}{0.35}\right)^2}\right), \\
    U_4(z) &= -\log\left(e^{-\frac12\left(\frac{z_2 - w_1(z)}{0.4}\right)^2}
        + e^{-\frac12\left(\frac{z_2 - w_1(z) + w_3(z)}{0.35}\right)^2}\right),

where :math:`\sigma` is the logistic sigmoid. ``U1`` is a ring of radius 2 with two lobes at
:math:`z_1 = \pm 2`; ``U2`` a sine wave; ``U3`` a sine wave that splits in two near
:math:`z_1 = 1`; ``U4`` a sine wave that splits in two for :math:`z_1 > 1`. The sums of exponentials
are computed as ``logaddexp`` (stable far from the modes).

**Only U1 is a proper density on the plane.** ``U2``-``U4`` do not depend on :math:`z_1` except
through the bounded :math:`w_i`, so :math:`\int e^{-U}` over the strip :math:`|z_1| < L` grows like
:math:`2L` and is infinite on :math:`\mathbb R^2`; the paper shows them in the window
:math:`[-4, 4]^2`. A variational fit to them is ill-posed (the ELBO grows without bound as
:math:`q` spreads along :math:`z_1`), so this module offers a *wall*: ``energy(name, wall=a)`` adds

.. math::

    W_a(z) = \frac12\left(\frac{\max(|z_1| - a, 0)}{0.4}\right)^2,

which is zero inside :math:`|z_1| \le a` (the density there is the paper's, unchanged) and confines
the mass outside with the energies' own length scale. With ``a = 4`` (:data:`WALL`, the paper's
window) every energy is proper. The wall is this project's choice, not the paper's.

**Normalisers.** :func:`log_normaliser` integrates :math:`e^{-U}` by the trapezoidal rule on a
square grid in float64 (spectrally accurate here: the integrand is smooth and negligible at the
grid's edges). For ``U1`` it gives :math:`\log Z_1 = 1.8775` (1.877502 on grids of half-width 4 to
10; the ring's mass beyond radius 4 is :math:`e^{-12.5}` of the total). The walled normalisers are
in :data:`LOG_Z_WALLED`. Without a wall, ``U2``-``U4`` give the log mass inside the grid's square,
which grows with ``limit``.

Example::

    >>> u1 = energy("U1")
    >>> z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> u1(z).round(decimals=3)  # on the ring, in a lobe; at the origin
    tensor([-0.0000, 17.3620])
    >>> round(log_normaliser("U1"), 4)
    1.8775

Reference: D. J. Rezende, S. Mohamed, "Variational inference with normalizing flows", ICML 2015,
Table 1 and Fig. 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyroflows.validation import check_tensor

#: names of the energies of Table 1
ENERGIES = ("U1", "U2", "U3", "U4")

#: the energies whose :math:`e^{-U}` is integrable on the plane without a wall
PROPER = ("U1",)

#: half-width of the default wall in :math:`z_1` (the paper's plotting window is ``[-4, 4]``)
WALL = 4.0

#: length scale of the wall's quadratic rise
WALL_SCALE = 0.4

#: the log normaliser of :math:`e^{-U_1}` on the plane (by quadrature, see :func:`log_normaliser`)
LOG_Z_U1 = 1.8775

#: :math:`\log\int e^{-U - W_4}` by quadrature (``log_normaliser(name, wall=4.0)``), to 4 decimals
LOG_Z_WALLED = {"U1": 1.8775, "U2": 2.2002, "U3": 2.7598, "U4": 2.8288}


def _w1(z1):
    return torch.sin(0.5 * math.pi * z1)


def _w2(z1):
    return 3.0 * torch.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)


def _w3(z1):
    return 3.0 * torch.sigmoid((z1 - 1.0) / 0.3)


def _u1(z):
    z1 = z[..., 0]
    r = torch.linalg.vector_norm(z, dim=-1)
    return 0.5 * ((r - 2.0) / 0.4) ** 2 - torch.logaddexp(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)


def _u2(z):
    return 0.5 * ((z[..., 1] - _w1(z[..., 0])) / 0.4) ** 2


def _u3(z):
    d = z[..., 1] - _w1(z[..., 0])
    return -torch.logaddexp(-0.5 * (d / 0.35) ** 2, -0.5 * ((d + _w2(z[..., 0])) / 0.35) ** 2)


def _u4(z):
    d = z[..., 1] - _w1(z[..., 0])
    return -torch.logaddexp(-0.5 * (d / 0.4) ** 2, -0.5 * ((d + _w3(z[..., 0])) / 0.35) ** 2)


_FORMULAS = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def _check_name(name: str) -> str:
    if name not in _FORMULAS:
        raise ValueError(f"name: expected one of {ENERGIES}, got {name!r}")
    return name


def _check_wall(wall: float | None) -> float | None:
    if wall is None:
        return None
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or wall <= 0:
        raise ValueError(f"wall: expected None or a positive finite number, got {wall!r}")
    return float(wall)


def wall_energy(z: torch.Tensor, wall: float = WALL) -> torch.Tensor:
    r"""The confining term :math:`W_a(z) = \frac12 (\max(|z_1| - a, 0) / 0.4)^2`, shape ``z.shape[:-1]``."""
    excess = (z[..., 0].abs() - wall).clamp_min(0.0)
    return 0.5 * (excess / WALL_SCALE) ** 2


def energy(name: str, wall: float | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The energy :math:`U` of Table 1 called ``name`` (``"U1"`` .. ``"U4"``), as a function.

    The function takes a floating-point tensor of shape ``batch + (2,)`` and returns :math:`U(z)`
    with shape ``batch``; it is differentiable and works in any dtype and on any device. It raises
    ``TypeError`` / ``ValueError`` naming the problem for a non-tensor, an integer tensor, a last
    dimension other than 2 or (while validation is on) NaN / inf entries.

    Args:
        name: one of :data:`ENERGIES`.
        wall: if given, add the confining term :func:`wall_energy` with this half-width (see the
            module docstring: it makes ``U2``-``U4`` proper densities).

    Example::

        >>> u = energy("U2", wall=4.0)
        >>> u(torch.zeros(3, 2)).shape
        torch.Size([3])
        >>> bool(u(torch.tensor([6.0, 0.0])) > energy("U2")(torch.tensor([6.0, 0.0])))
        True
    """
    formula = _FORMULAS[_check_name(name)]
    wall = _check_wall(wall)

    def U(z: torch.Tensor) -> torch.Tensor:
        check_tensor("z", z, (2,))
        if not z.is_floating_point():
            raise TypeError(f"z: expected a floating-point tensor, got dtype {z.dtype}")
        out = formula(z)
        return out if wall is None else out + wall_energy(z, wall)

    U.__name__ = name if wall is None else f"{name}_wall{wall:g}"
    U.__doc__ = f"Energy {name} of Rezende & Mohamed (2015), Table 1" + ("" if wall is None else f", plus a wall at |z1| = {wall:g}")
    return U


def grid(limit: float, points: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(axis, z)``: ``points`` equally spaced values in ``[-limit, limit]`` and the square grid
    ``z`` of shape ``(points, points, 2)`` with ``z[i, j] = (axis[j], axis[i])`` (rows are
    :math:`z_2`, columns :math:`z_1`, as ``imshow`` draws them)."""
    axis = torch.linspace(-limit, limit, points, dtype=dtype)
    z2, z1 = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([z1, z2], dim=-1)


def log_normaliser(name: str, limit: float = 8.0, points: int = 1001, wall: float | None = None) -> float:
    r""":math:`\log Z = \log \int e^{-U(z)}\,dz` over the square :math:`[-\text{limit}, \text{limit}]^2`.

    The trapezoidal rule on a ``points`` x ``points`` grid in float64, summed with ``logsumexp``
    row block by row block (memory stays small). For proper densities (``U1``, or any energy with
    a ``wall`` well inside the square) the result does not depend on ``limit`` or ``points`` once
    the square holds the mass and the grid resolves the narrowest feature (width 0.35): the
    defaults are accurate to about ``1e-9``; ``U1`` gives 1.877502. For ``U2``-``U4`` without a
    wall it is the log mass inside the square, which grows like :math:`\log(2\,\text{limit})`.

    Args:
        name: one of :data:`ENERGIES`.
        limit: half-width of the square.
        points: grid points per axis (at least 3).
        wall: as in :func:`energy`.

    Example::

        >>> a = log_normaliser("U1", limit=6.0, points=601)
        >>> b = log_normaliser("U1", limit=10.0, points=1001)
        >>> abs(a - 1.8775) < 1e-4 and abs(a - b) < 1e-8
        True
    """
    U = energy(name, wall)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit <= 0:
        raise ValueError(f"limit: expected a positive finite number, got {limit!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points: expected an integer >= 3, got {points!r}")
    axis = torch.linspace(-limit, limit, points, dtype=torch.float64)
    h = float(axis[1] - axis[0])
    # trapezoidal weights: 1/2 on the edges of each axis
    log_w = torch.zeros(points, dtype=torch.float64)
    log_w[0] = log_w[-1] = math.log(0.5)
    parts = []
    block = max(1, 250_000 // points)
    for start in range(0, points, block):
        z2 = axis[start : start + block]
        zz2, zz1 = torch.meshgrid(z2, axis, indexing="ij")
        z = torch.stack([zz1, zz2], dim=-1)
        terms = -U(z) + log_w.unsqueeze(0) + log_w[start : start + block].unsqueeze(1)
        parts.append(torch.logsumexp(terms.flatten(), 0))
    return float(torch.logsumexp(torch.stack(parts), 0)) + 2.0 * math.log(h)
