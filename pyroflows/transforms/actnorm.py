r"""Activation normalisation (Glow) for vectors, images and volumes, unconditional and conditional.

Per feature (channel) :math:`k`:

.. math::

    y_k = x_k \exp(s_k) + b_k, \qquad \log|\det J| = S \textstyle\sum_k s_k,

where :math:`S` is the number of spatial positions (1 for vectors). The first non-empty batch seen by an
uninitialised :class:`ActNorm` in training mode, in either direction, sets :math:`s, b` so that the
output of that call has zero mean and unit variance per channel (data-dependent initialisation).
The flag recording this is a buffer, so a reloaded model is not initialised again.

Reference: Kingma, Dhariwal, "Glow: generative flow with invertible 1x1 convolutions", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from ..nn.dense import context_mlp
from ..shapes import context_event_shape
from ..validation import check_event_dim, check_size
from .elementwise import ElementwiseAffine
from .parameterized import ConditionalFlowModule, FlowModule


def ConditionedActNorm(log_scale: torch.Tensor, bias: torch.Tensor, event_dim: int = 1) -> ElementwiseAffine:
    """ActNorm's map with given per-channel ``log_scale`` and ``bias`` of shape ``batch' + (C,)``:
    an :class:`~pyroflows.transforms.elementwise.ElementwiseAffine` broadcast over the positions."""
    spread = (1,) * (event_dim - 1)
    c = log_scale.shape[-1]
    return ElementwiseAffine(
        log_scale.reshape(log_scale.shape + spread), bias.reshape(bias.shape + spread), event_dim, (c,) + (None,) * (event_dim - 1)
    )


class DataInit(nn.Module):
    """Per-channel ``log_scale`` and ``bias`` with data-dependent initialisation, recorded in the
    buffer ``initialized`` so that a reloaded model is not initialised again."""

    def __init__(self, num_features: int, event_dim: int) -> None:
        super().__init__()
        self.num_features, self.event_dim = num_features, event_dim
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))
        self._initialized = False  # host mirror of the buffer: no device sync per call

    def _load_from_state_dict(self, state_dict: Mapping[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        flag = state_dict.get(prefix + "initialized")
        self._initialized = bool(flag) if flag is not None and flag.device.type != "meta" else self._initialized

    @property
    def is_initialized(self) -> bool:
        return self._initialized

    def mark_initialized(self) -> None:
        self.initialized.fill_(True)
        self._initialized = True

    @torch.no_grad()
    def maybe_initialize(self, v: torch.Tensor, inverse: bool) -> None:
        """Set ``log_scale`` and ``bias`` from the first non-empty batch seen in training mode, so that
        this call's output has zero mean and unit variance per channel (``inverse``: ``v`` is data)."""
        # an empty batch has no statistics: initialisation waits for one with data
        if self._initialized or not self.training or v.numel() == 0 or v.device.type == "meta":
            return
        dims = [d for d in range(v.dim()) if d != v.dim() - self.event_dim]
        mean = v.mean(dim=dims)
        std = v.std(dim=dims, unbiased=False) if v.numel() > self.num_features else torch.ones_like(mean)
        log_std = torch.log(std.clamp_min(1e-6))
        try:
            if inverse:  # data comes in as y: x = (y - b) e^{-s} standardised
                self.log_scale.copy_(log_std)
                self.bias.copy_(mean)
            else:  # y = x e^s + b standardised
                self.log_scale.copy_(-log_std)
                self.bias.copy_(-mean / std.clamp_min(1e-6))
        except RuntimeError as err:
            if "transform" not in str(err):
                raise
            raise RuntimeError(
                "ActNorm: its data-dependent initialisation writes its parameters, which a torch.func transform "
                "(jacrev, vmap, grad) cannot do; call the flow once on a batch of data before transforming it"
            ) from err
        self.mark_initialized()


class ActNorm(FlowModule):
    r"""Learnable per-channel affine map :math:`y = x \exp(s) + b` with data-dependent initialisation.

    Args:
        num_features: features (vectors) or channels (images, volumes).
        event_dim: 1 for vectors, 3 for images ``(C, H, W)``, 4 for volumes ``(C, D, H, W)``.

    Example::

        >>> t = ActNorm(3, event_dim=3)
        >>> y = torch.randn(8, 3, 4, 4) * 5 + 2
        >>> x = t.inv(y)                      # first batch initialises: x is standardised
        >>> bool(x.mean().abs() < 1e-5)
        True
    """

    def __init__(self, num_features: int, event_dim: int = 1) -> None:
        super().__init__()
        self.num_features = check_size("num_features", num_features)
        self.params = DataInit(num_features, check_event_dim(event_dim))
        self.set_event((num_features,) + (None,) * (event_dim - 1))

    def prepare(self, v: torch.Tensor, inverse: bool) -> None:
        self.params.maybe_initialize(v, inverse)

    def transform(self) -> ElementwiseAffine:
        return ConditionedActNorm(self.params.log_scale, self.params.bias, self.params.event_dim)


class ConditionalActNorm(ConditionalFlowModule):
    r"""ActNorm whose scale and bias also depend on a context vector:

    .. math:: [s, b] = [s_0, b_0] + g(c),

    with :math:`s_0, b_0` data-initialised as in :class:`ActNorm` and :math:`g` a zero-initialised
    network, so the layer starts as a plain ActNorm. The context has shape ``batch' + (K,)``, or
    ``batch' + context_shape`` when ``context_shape`` is given (e.g. a feature map ``(K, H, W)``,
    flattened into the MLP: MotionFlow's conditional ActNorm, eq. (4), with :math:`g` its FC1).

    Example::

        >>> t = ConditionalActNorm(3, context_dim=2)
        >>> t.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        num_features: int,
        context_dim: int,
        event_dim: int = 1,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
        context_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_features, self.event_dim = check_size("num_features", num_features), check_event_dim(event_dim)
        self.context_shape = context_event_shape(check_size("context_dim", context_dim), context_shape)
        self.params = DataInit(num_features, event_dim)
        self.net = context_mlp(self.context_shape, 2 * num_features, hidden) if net is None else net
        self.set_event((num_features,) + (None,) * (event_dim - 1))

    def prepare(self, v: torch.Tensor, inverse: bool) -> None:
        self.params.maybe_initialize(v, inverse)

    def transform(self, context: torch.Tensor) -> ElementwiseAffine:
        ds, db = self.net(context).chunk(2, dim=-1)
        return ConditionedActNorm(self.params.log_scale + ds, self.params.bias + db, self.event_dim)


def actnorm(num_features: int, event_dim: int = 1) -> ActNorm:
    """ActNorm for vectors (``event_dim=1``), images (3) or volumes (4)."""
    return ActNorm(num_features, event_dim)


def conditional_actnorm(
    num_features: int, context_dim: int, event_dim: int = 1, hidden: Sequence[int] = (64,), context_shape: Sequence[int] | None = None
) -> ConditionalActNorm:
    """Conditional ActNorm with an MLP from the context (a vector, or a flattened map of
    ``context_shape``) to per-channel offsets of scale and bias."""
    return ConditionalActNorm(num_features, context_dim, event_dim, hidden, context_shape=context_shape)
