r"""The eight-mode Gaussian mixture toy of Ardizzone et al. (2019), used by Xiao, Yan and Amit (2019).

Eight isotropic Gaussians with standard deviation :math:`\sigma = 0.2` and equal weights sit on
the corners of a regular octagon with side 2 (circumradius :math:`\sqrt{4 + 2\sqrt 2} \approx 2.613`):

.. math::

    \mu_k = R\,(\cos\theta_k, \sin\theta_k), \qquad \theta_k = \tfrac{\pi}{8} + k\,\tfrac{\pi}{4},
    \qquad k = 0, \dots, 7,

that is :math:`(\pm a, \pm 1)` and :math:`(\pm 1, \pm a)` with :math:`a = 1 + \sqrt 2 \approx 2.4142`.
Modes are numbered counter-clockwise from :math:`\mu_0 = (a, 1)`:

====  ==============  ===========  ==========
mode  centre          ``"eight"``  ``"four"``
====  ==============  ===========  ==========
0     ( 2.414,  1)    0            0
1     ( 1,  2.414)    1            0
2     (-1,  2.414)    2            0
3     (-2.414,  1)    3            0
4     (-2.414, -1)    4            1
5     (-1, -2.414)    5            1
6     ( 1, -2.414)    6            2
7     ( 2.414, -1)    7            3
====  ==============  ===========  ==========

Two label mappings: ``"eight"`` gives every mode its own label (one-hot of size 8); ``"four"``
maps the modes to labels ``[0, 0, 0, 0, 1, 1, 2, 3]`` (one-hot of size 4), so label 0 is shared by
the four modes of the upper half-plane (modes 0-3), label 1 by the two lower-left modes (4, 5), and
labels 2 and 3 each own one lower-right mode.

Given label :math:`l` with mode set :math:`M_l`, the true posterior :math:`p(x \mid l)` is the
equal-weight mixture of the modes in :math:`M_l`, with exact moments

.. math::

    m_l = \frac{1}{|M_l|}\sum_{k \in M_l} \mu_k, \qquad
    C_l = \sigma^2 I + \frac{1}{|M_l|}\sum_{k \in M_l} (\mu_k - m_l)(\mu_k - m_l)^\top.

Example::

    >>> g = torch.Generator().manual_seed(0)
    >>> x, y, mode = octagon_mixture(5, "four", generator=g)
    >>> x.shape, y.shape, mode.shape
    (torch.Size([5, 2]), torch.Size([5, 4]), torch.Size([5]))
    >>> mean, cov = posterior_moments("four")
    >>> mean[0]
    tensor([0.0000, 1.7071])

Reference: L. Ardizzone et al., "Analyzing inverse problems with invertible neural networks",
ICLR 2019; Z. Xiao, Q. Yan, Y. Amit, "A method to model conditional distributions with normalizing
flows", arXiv:1911.02052, Sec. 5.1.
"""

from __future__ import annotations

import math

import torch

#: standard deviation of every mode
STD = 0.2

#: number of mixture components
NUM_MODES = 8

#: label of each mode (indexed by mode) under each mapping
LABEL_MAPS: dict[str, tuple[int, ...]] = {
    "eight": (0, 1, 2, 3, 4, 5, 6, 7),
    "four": (0, 0, 0, 0, 1, 1, 2, 3),
}

_A = 1.0 + math.sqrt(2.0)
_CENTRES = ((_A, 1.0), (1.0, _A), (-1.0, _A), (-_A, 1.0), (-_A, -1.0), (-1.0, -_A), (1.0, -_A), (_A, -1.0))


def _check_mapping(mapping: str) -> tuple[int, ...]:
    if mapping not in LABEL_MAPS:
        raise ValueError(f"mapping: expected one of {sorted(LABEL_MAPS)}, got {mapping!r}")
    return LABEL_MAPS[mapping]


def octagon_centres(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The eight mode centres, shape ``(8, 2)``, in mode order (counter-clockwise from ``(1 + sqrt 2, 1)``)."""
    return torch.tensor(_CENTRES, dtype=dtype, device=device)


def num_labels(mapping: str) -> int:
    """Size of the one-hot label under ``mapping`` (8 for ``"eight"``, 4 for ``"four"``)."""
    return max(_check_mapping(mapping)) + 1


def mode_labels(mapping: str, device: torch.device | str | None = None) -> torch.Tensor:
    """The label of each mode under ``mapping``: a ``LongTensor`` of shape ``(8,)``."""
    return torch.tensor(_check_mapping(mapping), dtype=torch.long, device=device)


def modes_of_label(mapping: str, label: int) -> list[int]:
    """The modes that carry ``label`` under ``mapping``, e.g. ``modes_of_label("four", 0) == [0, 1, 2, 3]``."""
    labels = _check_mapping(mapping)
    if not 0 <= label < num_labels(mapping):
        raise ValueError(f"label: expected an integer in [0, {num_labels(mapping) - 1}], got {label}")
    return [k for k, lab in enumerate(labels) if lab == label]


def octagon_mixture(
    n: int,
    mapping: str = "eight",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` points from the mixture with their labels.

    Sampling runs on the CPU with ``generator`` (a CPU ``torch.Generator``; the global RNG if None),
    so a seeded generator gives the same data on every device; the results are then moved to
    ``device``.

    Returns:
        ``x`` of shape ``(n, 2)``, the one-hot labels ``y`` of shape ``(n, num_labels(mapping))``
        and the mode index of each point, shape ``(n,)``.
    """
    labels = mode_labels(mapping)
    if n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n}")
    mode = torch.randint(NUM_MODES, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x = octagon_centres(torch.float64)[mode] + STD * noise
    y = torch.nn.functional.one_hot(labels[mode], num_labels(mapping))
    return x.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device), mode.to(device=device)


def posterior_moments(
    mapping: str, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact mean and covariance of :math:`p(x \mid l)` for every label :math:`l`.

    Returns:
        ``mean`` of shape ``(L, 2)`` and ``cov`` of shape ``(L, 2, 2)`` with ``L = num_labels(mapping)``
        (formulas in the module docstring).
    """
    centres = octagon_centres(torch.float64)
    means, covs = [], []
    for label in range(num_labels(mapping)):
        mu = centres[modes_of_label(mapping, label)]
        m = mu.mean(0)
        d = mu - m
        means.append(m)
        covs.append(STD**2 * torch.eye(2, dtype=torch.float64) + d.T @ d / len(mu))
    return torch.stack(means).to(dtype=dtype, device=device), torch.stack(covs).to(dtype=dtype, device=device)


def assign_modes(x: torch.Tensor, num_std: float = 3.0) -> torch.Tensor:
    r"""The mode each point lies in: index ``k`` if :math:`\lVert x - \mu_k\rVert \le` ``num_std`` :math:`\sigma`, else -1.

    The discs of radius :math:`3\sigma = 0.6` do not overlap (neighbouring centres are 2 apart). A
    point drawn from mode :math:`k` falls inside its disc with probability
    :math:`1 - e^{-\mathrm{num\_std}^2 / 2}` (0.989 for 3 standard deviations), so even exact samples
    put about 1.1 % "elsewhere" (-1).

    Args:
        x: points of shape ``batch + (2,)``.
        num_std: disc radius in units of :math:`\sigma`.

    Returns:
        ``LongTensor`` of shape ``batch``.
    """
    if x.shape[-1] != 2:
        raise ValueError(f"x: expected shape (..., 2), got {tuple(x.shape)}")
    centres = octagon_centres(x.dtype, x.device)
    dist = (x.unsqueeze(-2) - centres).norm(dim=-1)
    nearest = dist.argmin(-1)
    inside = dist.gather(-1, nearest.unsqueeze(-1)).squeeze(-1) <= num_std * STD
    return torch.where(inside, nearest, torch.full_like(nearest, -1))
