r"""Paired 3-D brain phantoms: an MRI-like volume of tissue classes and a PET-like uptake volume that
depends on tissue, disease status and age, with hypometabolism in named regions of interest.

Each subject has an age :math:`a \sim \mathcal U[0, 1]` (read as 55 + 40a years) and a disease
status :math:`d \sim \text{Bernoulli}(0.2 + 0.5a)`. Its head is an ellipsoid with radii
:math:`(0.85, 0.75, 0.70)` (axes: inferior-superior, posterior-anterior, left-right, on a
:math:`[-1, 1]^3` grid of ``size`` voxels per axis), scaled by :math:`\mathcal U[0.92, 1.05]` per
axis and shifted by :math:`\mathcal N(0, 0.03^2)`; in the head's normalised radius :math:`r`:

* white matter (WM): :math:`r \le 0.62`;
* grey matter (GM): :math:`0.62 < r \le r_b`, with the brain's surface
  :math:`r_b = 0.94 - 0.08a - 0.05d` (cortical atrophy with age and disease);
* cerebrospinal fluid (CSF): :math:`r_b < r \le 1`, and two ventricles, ellipsoids at
  :math:`(0.1, 0, \pm 0.16)` with radii :math:`v\,(0.35, 0.45, 0.12)`,
  :math:`v = 1 + 0.6a + 0.5d` (enlarging with age and disease);
* in the temporal regions, disease thins the cortex further (GM with :math:`r > r_b - 0.10 d` turns into CSF).

The **MRI** (T1-like) takes the values CSF 0.15, GM 0.5, WM 0.8 (background 0), blurred with a
Gaussian of :math:`0.5\,n/16` voxels (partial volumes), plus noise :math:`\mathcal N(0, 0.02^2)`.

The **PET** (FDG-like uptake) is GM 1.0, WM 0.4, CSF 0.08 (background 0), times a global decline
:math:`1 - 0.1a`, times :math:`1 - h` inside the regions of interest (:data:`ROI_NAMES`), with the
hypometabolism

.. math::

    h = 0.30\,a + 0.20\,d + 0.15\,a d,

growing with age and disease; then scaled by 0.85, blurred with :math:`0.8\,n/16` voxels (PET's
resolution) and given noise :math:`\mathcal N(0, 0.02^2)`. Both volumes are clipped to
:math:`[0, 1]`. The regions are spheres of normalised radius 0.38 intersected with the brain
(GM and WM), centred at :data:`ROI_CENTRES`, and move with each subject's head.

Example::

    >>> ph = brain_phantoms(8, size=16, seed=0)
    >>> ph.mri.shape, ph.pet.shape, ph.rois.shape
    (torch.Size([8, 1, 16, 16, 16]), torch.Size([8, 1, 16, 16, 16]), torch.Size([8, 3, 16, 16, 16]))
    >>> roi_means(ph.pet, ph.rois).shape
    torch.Size([8, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .modality_pairs import gaussian_blur

#: the regions of interest with hypometabolism, in the order of ``BrainPhantoms.rois``
ROI_NAMES = ("posterior_cingulate", "temporal_left", "temporal_right")
#: their centres in the head's normalised coordinates (inferior-superior, posterior-anterior, left-right)
ROI_CENTRES = ((0.35, -0.55, 0.0), (-0.35, 0.15, -0.75), (-0.35, 0.15, 0.75))
ROI_RADIUS = 0.38
HEAD_RADII = (0.85, 0.75, 0.70)
MRI_VALUES = {"csf": 0.15, "gm": 0.5, "wm": 0.8}
PET_VALUES = {"csf": 0.08, "gm": 1.0, "wm": 0.4}


@dataclass(frozen=True)
class BrainPhantoms:
    """Paired volumes ``(N, 1, n, n, n)`` in ``[0, 1]``, ages ``(N,)`` in ``[0, 1]``, disease status
    ``(N,)`` (0 / 1, ``int64``), and the regions of interest ``(N, len(ROI_NAMES), n, n, n)`` (bool)."""

    mri: torch.Tensor
    pet: torch.Tensor
    age: torch.Tensor
    disease: torch.Tensor
    rois: torch.Tensor


def hypometabolism(age: torch.Tensor, disease: torch.Tensor) -> torch.Tensor:
    r"""The fractional uptake loss in the regions of interest, :math:`h = 0.3a + 0.2d + 0.15ad`."""
    d = disease.to(age.dtype)
    return 0.30 * age + 0.20 * d + 0.15 * age * d


def _ellipsoid(q: torch.Tensor, centre, radii) -> torch.Tensor:
    c = torch.tensor(centre, dtype=q.dtype)
    r = torch.tensor(radii, dtype=q.dtype)
    return (((q - c) / r) ** 2).sum(-1) <= 1


def brain_phantoms(num: int, size: int = 16, seed: int = 0, noise: float = 0.02) -> BrainPhantoms:
    """``num`` subjects on a ``size``-voxel grid per axis (module docstring); fixed by ``seed``."""
    if size < 8 or size % 4:
        raise ValueError(f"size: expected a multiple of 4 of at least 8, got {size}")
    g = torch.Generator().manual_seed(seed)
    age = torch.rand(num, generator=g)
    disease = (torch.rand(num, generator=g) < 0.2 + 0.5 * age).to(torch.int64)
    scale = 0.92 + 0.13 * torch.rand(num, 3, generator=g)
    shift = 0.03 * torch.randn(num, 3, generator=g)
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # (n, n, n, 3)
    radii = torch.tensor(HEAD_RADII) * scale  # (N, 3)
    q = (grid - shift.reshape(num, 1, 1, 1, 3)) / radii.reshape(num, 1, 1, 1, 3)  # normalised head coordinates
    r = q.norm(dim=-1)
    a, d = age.reshape(num, 1, 1, 1), disease.to(torch.float32).reshape(num, 1, 1, 1)
    surface = 0.94 - 0.08 * a - 0.05 * d
    rois = torch.stack([((q - torch.tensor(c)) ** 2).sum(-1) <= ROI_RADIUS**2 for c in ROI_CENTRES], dim=1)
    temporal = rois[:, 1] | rois[:, 2]
    surface = torch.where(temporal, surface - 0.10 * d, surface)
    v = (1 + 0.6 * a + 0.5 * d).unsqueeze(-1)
    ventricles = torch.zeros_like(r, dtype=torch.bool)
    for side in (-0.16, 0.16):
        ventricles |= (((q - torch.tensor((0.1, 0.0, side))) / (v * torch.tensor((0.35, 0.45, 0.12)))) ** 2).sum(-1) <= 1
    wm = (r <= 0.62) & ~ventricles
    gm = (r > 0.62) & (r <= surface)
    csf = (r <= 1) & ~wm & ~gm
    brain = wm | gm
    rois = rois & brain.unsqueeze(1)

    def volume(values, blur):
        vol = values["csf"] * csf + values["gm"] * gm + values["wm"] * wm
        return vol.to(torch.float32).unsqueeze(1), blur * size / 16

    mri, blur_m = volume(MRI_VALUES, 0.5)
    pet, blur_p = volume(PET_VALUES, 0.8)
    loss = hypometabolism(age, disease).reshape(num, 1, 1, 1)
    in_roi = rois.any(1)
    pet = pet * (1 - 0.1 * a).unsqueeze(1) * torch.where(in_roi, 1 - loss, torch.ones_like(loss)).unsqueeze(1) * 0.85
    mri = gaussian_blur(mri, blur_m) + noise * torch.randn(mri.shape, generator=g)
    pet = gaussian_blur(pet, blur_p) + noise * torch.randn(pet.shape, generator=g)
    return BrainPhantoms(mri.clamp(0, 1), pet.clamp(0, 1), age, disease, rois)


def roi_means(volumes: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Mean intensity of ``volumes`` ``batch + (1, n, n, n)`` in each region ``batch + (R, n, n, n)``: shape ``batch + (R,)``."""
    mask = rois.to(volumes.dtype)
    return (volumes * mask).flatten(-3).sum(-1) / mask.flatten(-3).sum(-1).clamp_min(1)
