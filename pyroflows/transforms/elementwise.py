r"""The element-wise affine map, written once, and its parameterisations.

.. math::

    y = x \odot e^{s} + t, \qquad x = (y - t) \odot e^{-s}, \qquad
    \log\left|\det \frac{\partial y}{\partial x}\right| = \textstyle\sum s,

with ``s`` and ``t`` broadcast against ``x`` (per feature, per channel, or per element) and the sum
over the event dims. Couplings, ActNorm, Glow's priors, DUAL-GLOW's relation prior, MotionFlow's
dynamic prior and CRow's blocks and gate all compute it through :func:`elementwise_affine`.

A coupling's conditioner returns raw values; an element-wise map (:class:`Affine`) turns them into
``(s, t)``: Real NVP's soft bound :math:`s = B\tanh(h/B)` or Glow's
:math:`e^{s} = 1/\sigma(h + 2)` (the data-to-latent direction multiplies by :math:`\sigma(h + 2)`).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch.distributions import Transform

from .. import fused
from ..precision import full_precision
from ..shapes import broadcast_shapes, sum_event
from ..validation import check_positive
from .base import OnePassTransform, event_constraint, soft_clamp

SCALES = ("softclamp", "sigmoid")


def elementwise_affine(
    v: torch.Tensor, log_scale: torch.Tensor | None, shift: torch.Tensor | None, event_dim: int, inverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(output, log|det J| of the forward map)`` of :math:`y = v e^{s} + t` (``inverse``:
    :math:`(v - t) e^{-s}`), ``log_scale`` :math:`s` and ``shift`` :math:`t` broadcast against ``v``
    (either may be None: no scale, no shift). The log-det has the broadcast batch shape. Under
    autocast, a half-precision ``log_scale`` or ``shift`` is taken to ``v``'s dtype first, so that the
    exponential, the output and the sum of the log-det are computed in float32."""
    log_scale = None if log_scale is None else full_precision(log_scale, v)
    shift = None if shift is None else full_precision(shift, v)
    if inverse:
        out = v if shift is None else v - shift
        out = out if log_scale is None else out * torch.exp(-log_scale)
    else:
        out = v if log_scale is None else v * torch.exp(log_scale)
        out = out if shift is None else out + shift
    if log_scale is None:
        ladj = out.new_zeros(out.shape[: out.dim() - event_dim])
    elif log_scale.shape == out.shape:
        ladj = sum_event(log_scale, event_dim)
    else:
        ladj = sum_event(log_scale.expand(out.shape), event_dim)
    return out, ladj


class Elementwise(Protocol):
    """What a coupling or an autoregressive transform needs of its element-wise map: the number of
    raw conditioner values per transformed feature, and the map itself."""

    params_per_feature: int

    def __call__(self, v: torch.Tensor, raw: torch.Tensor, event_dim: int, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, log-det of the forward map)`` for ``v``, given the conditioner's ``raw`` output."""
        ...


class Affine:
    r"""How a coupling's raw conditioner output ``[h, t]`` (split in two along the feature axis)
    becomes the log-scale and shift of :func:`elementwise_affine`.

    Args:
        scale: ``"softclamp"``: :math:`s = B\tanh(h/B)`; ``"sigmoid"``: Glow's
            :math:`s = B\tanh(-\log\sigma(h + 2) / B)`, so that the inverse (data to latent)
            multiplies by a factor in :math:`(e^{-B}, 1)`, :math:`\sigma(h + 2)` while that is not
            tiny; the bound keeps sampling finite when the network is far from its initialisation.
        clamp: the bound :math:`B` (None: unbounded).
    """

    params_per_feature = 2

    def __init__(self, scale: str = "softclamp", clamp: float | None = 3.0) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")
        self.scale, self.clamp = scale, check_positive("clamp", clamp, allow_none=True)

    def __repr__(self) -> str:
        return f"Affine(scale={self.scale!r}, clamp={self.clamp})"

    def log_scale_shift(self, raw: torch.Tensor, feature_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        h, t = raw.chunk(2, dim=feature_dim)
        if self.scale == "sigmoid":
            # -log sigma(h + 2) >= 0 has no upper bound: a network far from its initialisation can
            # make sampling (which multiplies by exp(s)) overflow, so it is bounded like softclamp
            return soft_clamp(F.softplus(-(h + 2.0)), self.clamp), t
        return soft_clamp(h, self.clamp), t

    def __call__(self, v: torch.Tensor, raw: torch.Tensor, event_dim: int, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, log-det of the forward map)`` for the transformed part ``v``."""
        if self.scale == "softclamp":
            fast = fused.soft_clamped_affine(v, raw, self.clamp, event_dim, inverse)
            if fast is not None:
                return fast
        log_scale, shift = self.log_scale_shift(raw, -event_dim)
        return elementwise_affine(v, log_scale, shift, event_dim, inverse)


class ElementwiseAffine(OnePassTransform, Transform):
    r""":math:`y = x e^{s} + t` with given ``log_scale`` :math:`s` and ``shift`` :math:`t` (either may
    be None), broadcast against inputs with ``event_dim`` event dims; the math behind ActNorm and the
    learned priors.

    Example::

        >>> t = ElementwiseAffine(torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0]), event_dim=1)
        >>> x = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(x)), x), t.log_abs_det_jacobian(x, t(x))[0].item()
        (True, -0.5)
    """

    bijective = True

    def __init__(
        self, log_scale: torch.Tensor | None, shift: torch.Tensor | None, event_dim: int, event_shape_spec: tuple | None = None
    ) -> None:
        super().__init__(cache_size=1)
        if log_scale is None and shift is None:
            raise ValueError("log_scale, shift: expected at least one tensor, got two None")
        self.log_scale, self.shift, self._edim = log_scale, shift, event_dim
        params = [p for p in (log_scale, shift) if p is not None]
        shape = params[0].shape if len(params) == 1 else broadcast_shapes(params[0].shape, params[1].shape)
        self.event_shape_spec = (None,) * event_dim if event_shape_spec is None else tuple(event_shape_spec)
        self.domain = self.codomain = event_constraint(event_dim)
        self.context_batch_shape = shape[: max(len(shape) - event_dim, 0)]

    def held_tensors(self) -> tuple:
        return tuple(p for p in (self.log_scale, self.shift) if p is not None)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return elementwise_affine(x, self.log_scale, self.shift, self._edim)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return elementwise_affine(y, self.log_scale, self.shift, self._edim, inverse=True)
