r"""Flow matching: train a continuous normalizing flow by regressing its vector field on straight
paths, with no ODE solve during training.

A :class:`~pyroflows.transforms.CNF` maps base samples to data (Pyro's direction): its solve runs
on the normalised time :math:`s \in [0, 1]` from the base at :math:`s = 0` to the data at
:math:`s = 1` with the field :math:`v_\theta(z, s[, c]) = T f_\theta(z, sT[, c])`
(:meth:`~pyroflows.transforms.CNF.velocity`). For a data point :math:`x_1` (with its context
:math:`c`), a base draw :math:`x_0 \sim p_0`, a time :math:`s \sim p(s)` on :math:`[0, 1]`
(:math:`\mathcal U(0, 1)` by default) and :math:`\varepsilon \sim \mathcal N(0, I)`, the
conditional path and its velocity are

.. math::

    x_s = (1 - s)\,x_0 + s\,x_1 + \sigma \varepsilon, \qquad u = x_1 - x_0,

and the loss is the regression

.. math::

    \mathcal L(\theta) = \mathbb E_{s, x_0, x_1, \varepsilon}\,
        \big\lVert v_\theta(x_s, s[, c]) - (x_1 - x_0) \big\rVert^2 .

Its minimiser is the marginal field whose flow carries :math:`p_0` at :math:`s = 0` to the data at
:math:`s = 1`, so the trained module inside ``TransformedDistribution(p0, [flow])`` is the density
model, with the exact ``log_prob`` of the CNF (an ODE solve with the trace). With ``ot=True`` the base
draws of a minibatch are paired with its data points by the permutation :math:`\pi` that minimises
:math:`\sum_i \lVert x_0^{\pi(i)} - x_1^i \rVert^2` (an exact assignment), which straightens the
learned paths.

The time density :math:`p(s)` weights the regression over time and leaves its minimiser, the
marginal field, unchanged wherever :math:`p(s) > 0`; it moves the network's capacity and the
gradient's samples to the times it favours. The logit-normal
:math:`s = 1 / (1 + e^{-u})`, :math:`u \sim \mathcal N(m, \varsigma^2)` (Esser et al. 2024) with
:math:`m > 0` favours the data end, where the field of a density with sharp edges is hardest.

References: Y. Lipman, R. T. Q. Chen, H. Ben-Hamu, M. Nickel, M. Le, "Flow matching for generative
modeling", ICLR 2023; A. Tong, K. Fatras, N. Malkin, G. Huguet, Y. Zhang, J. Rector-Brooks, G. Wolf,
Y. Bengio, "Improving and generalizing flow-based generative models with minibatch optimal
transport", TMLR 2024; P. Esser, S. Kulal, A. Blattmann, R. Entezari, J. Müller, H. Saini, Y. Levi,
D. Lorenz, A. Sauer, F. Boesel et al., "Scaling rectified flow transformers for high-resolution image
synthesis", ICML 2024 (logit-normal times).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution

from ..shapes import broadcast_batch, flatten_batch
from ..transforms.base import module_reference
from ..transforms.cnf import CNF, ConditionalCNF
from ..validation import check_broadcast, check_tensor, is_validation_enabled


def ot_pairing(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    r"""The pairing of two equal-size samples that minimises the total squared distance.

    Solves the assignment :math:`\min_\pi \sum_i \lVert x_0^{\pi(i)} - x_1^i \rVert^2` exactly (the
    discrete optimal transport between two empirical measures of equal size and weight is a
    permutation) with :func:`scipy.optimize.linear_sum_assignment` on the CPU: one device-to-host
    copy of the :math:`N \times N` cost matrix.

    Args:
        x0: samples of shape ``(N, D)``.
        x1: samples of shape ``(N, D)``.

    Returns:
        ``perm``, a long tensor of shape ``(N,)`` on ``x0``'s device: ``x0[perm][i]`` is paired with
        ``x1[i]``.

    Example::

        >>> x0 = torch.tensor([[0.0], [10.0], [5.0]])
        >>> x1 = torch.tensor([[9.0], [4.0], [1.0]])
        >>> ot_pairing(x0, x1).tolist()
        [1, 2, 0]
    """
    from scipy.optimize import linear_sum_assignment  # a core dependency, imported when first needed

    check_tensor("x0", x0, (None,))
    if x0.dim() != 2:
        raise ValueError(f"x0: expected shape (N, D), got {tuple(x0.shape)}")
    check_tensor("x1", x1, (x0.shape[1],), x0.dtype, x0.device)
    if x1.shape != x0.shape:
        raise ValueError(f"x1: expected shape {tuple(x0.shape)} (that of x0), got {tuple(x1.shape)}")
    cost = torch.cdist(x0.detach(), x1.detach()).pow(2)
    rows, cols = linear_sum_assignment(cost.cpu().double().numpy())
    perm = torch.empty(x0.shape[0], dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return perm.to(x0.device)


class FlowMatching:
    r"""The flow-matching loss of a :class:`~pyroflows.transforms.CNF` or
    :class:`~pyroflows.transforms.ConditionalCNF` (the equations are in the module's docstring).

    Args:
        flow: the CNF to train, used afterwards as ``TransformedDistribution(base, [flow])`` (base to
            data, the forward direction). Its dynamics network must accept one time per sample
            (``dynamics(t, z[, context])`` with ``t`` of shape ``(N,)``), as
            :class:`~pyroflows.nn.ConcatSquashNet` (the default of :func:`~pyroflows.transforms.cnf`)
            does.
        base: the base distribution :math:`p_0` (event shape ``(dim,)``, batch shape ``()``); None
            for a standard Normal.
        ot: pair each minibatch's base draws with its data points by an exact optimal-transport
            assignment (:func:`ot_pairing`; one device-to-host copy per step). Unconditional flows
            only: with a context the pairing would couple the base with the data's marginal over
            the batch's contexts instead of with each conditional.
        sigma: standard deviation :math:`\sigma \ge 0` of the Gaussian noise around the straight paths.
        time_distribution: the time density :math:`p(s)`, a distribution on :math:`[0, 1]` with event
            and batch shape ``()`` whose samples have the flow's dtype and device; None for
            :math:`\mathcal U(0, 1)`. For the logit-normal times of Esser et al. (2024), centred
            at :math:`m`: ``TransformedDistribution(Normal(m, 1.0), [SigmoidTransform()])``.

    ``loss(x, context=None)`` (also ``fm(x, context)``) returns the scalar loss for a minibatch ``x``
    of shape ``batch + (dim,)``; the context of a conditional flow has shape
    ``batch' + (context_dim,)`` with ``batch'`` broadcasting against ``batch``. The loss is a batch
    mean of squared norms, so its gradient is that of the expectation above.

    Example::

        >>> from pyroflows.transforms import cnf
        >>> flow = cnf(2, hidden=(16,))
        >>> fm = FlowMatching(flow, ot=True)
        >>> loss = fm(torch.randn(64, 2) + 3.0)
        >>> loss.backward()
        >>> loss.shape, flow.dynamics.layers[-1].linear.weight.grad is not None
        (torch.Size([]), True)

    Reference: Lipman et al., "Flow matching for generative modeling", ICLR 2023; Tong et al.,
    "Improving and generalizing flow-based generative models with minibatch optimal transport",
    TMLR 2024; Esser et al., "Scaling rectified flow transformers for high-resolution image
    synthesis", ICML 2024 (logit-normal times).
    """

    def __init__(
        self,
        flow: CNF | ConditionalCNF,
        base: Distribution | None = None,
        ot: bool = False,
        sigma: float = 0.0,
        time_distribution: Distribution | None = None,
    ) -> None:
        if not isinstance(flow, (CNF, ConditionalCNF)):
            raise TypeError(f"flow: expected a CNF or ConditionalCNF, got {type(flow).__name__}")
        if base is not None:
            if not isinstance(base, Distribution):
                raise TypeError(f"base: expected a torch Distribution or None, got {type(base).__name__}")
            if tuple(base.event_shape) != (flow.dim,) or tuple(base.batch_shape) != ():
                raise ValueError(
                    f"base: expected event shape ({flow.dim},) and batch shape (), got event shape "
                    f"{tuple(base.event_shape)} and batch shape {tuple(base.batch_shape)}"
                )
        if not isinstance(ot, bool):
            raise TypeError(f"ot: expected True or False, got {ot!r}")
        if ot and isinstance(flow, ConditionalCNF):
            raise ValueError(
                "ot: minibatch OT pairing needs an unconditional flow (with a context it couples the base with the "
                "data's marginal over the batch's contexts, not with each conditional); use ot=False with a ConditionalCNF"
            )
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma: expected a finite number >= 0, got {sigma!r}")
        if time_distribution is not None:
            if not isinstance(time_distribution, Distribution):
                raise TypeError(
                    f"time_distribution: expected a torch Distribution on [0, 1] or None, got {type(time_distribution).__name__}"
                )
            if tuple(time_distribution.event_shape) != () or tuple(time_distribution.batch_shape) != ():
                raise ValueError(
                    f"time_distribution: expected event shape () and batch shape (), got event shape "
                    f"{tuple(time_distribution.event_shape)} and batch shape {tuple(time_distribution.batch_shape)}"
                )
        self.flow, self.base, self.ot, self.sigma = flow, base, ot, float(sigma)
        self.time_distribution = time_distribution

    def __repr__(self) -> str:
        return (
            f"FlowMatching(flow={type(self.flow).__name__}(dim={self.flow.dim}), base={self.base!r}, ot={self.ot}, "
            f"sigma={self.sigma:g}, time_distribution={self.time_distribution!r})"
        )

    def _inputs(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` and the context checked, broadcast and flattened to ``(N, dim)`` and ``(N, context_dim)``."""
        flow, ref = self.flow, module_reference(self.flow)
        check_tensor("x", x, (flow.dim,), ref.dtype, ref.device)
        if isinstance(flow, ConditionalCNF):
            if context is None:
                raise ValueError(f"context: expected a tensor of shape (..., {flow.context_dim}) for a ConditionalCNF, got None")
            flow.check_context(context)
            check_broadcast("context", context.shape[:-1], "x", x.shape[:-1])
        elif context is not None:
            raise ValueError("context: an unconditional CNF takes no context, got a tensor")
        x, context = broadcast_batch(x, 1, context, 1)
        x, _ = flatten_batch(x, 1)
        if x.shape[0] == 0:
            raise ValueError(f"x: expected at least one sample, got shape {tuple(x.shape)}")
        return x, None if context is None else flatten_batch(context, 1)[0]

    def sample_base(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n`` draws of the base distribution with ``like``'s dtype and device, shape ``(n, dim)``."""
        if self.base is None:
            return torch.randn((n, self.flow.dim), dtype=like.dtype, device=like.device)
        x0 = self.base.sample((n,))
        check_tensor("base sample", x0, (self.flow.dim,), like.dtype, like.device)
        return x0

    def sample_time(self, n: int, like: torch.Tensor) -> torch.Tensor:
        r"""``n`` times :math:`s \sim p(s)` with ``like``'s dtype and device, shape ``(n,)``: uniform on
        :math:`[0, 1]` unless ``time_distribution`` is set (whose samples are checked to lie in
        :math:`[0, 1]` while validation is on)."""
        if self.time_distribution is None:
            return torch.rand((n,), dtype=like.dtype, device=like.device)
        s = self.time_distribution.sample((n,))
        check_tensor("time sample", s, (n,), like.dtype, like.device)
        if is_validation_enabled() and not bool(((s >= 0) & (s <= 1)).all()):
            raise ValueError(f"time sample: expected times in [0, 1], got values in [{float(s.min()):g}, {float(s.max()):g}]")
        return s

    def regression(
        self, x0: torch.Tensor, x1: torch.Tensor, s: torch.Tensor, context: torch.Tensor | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""The regression on given pairs and times:
        :math:`\frac1N \sum_i \lVert v_\theta(x_s^i, s_i[, c_i]) - (x_1^i - x_0^i) \rVert^2` with
        :math:`x_s = (1 - s) x_0 + s x_1` plus ``noise`` (:meth:`loss` draws all of them).

        Args:
            x0: base points, shape ``(N, dim)``.
            x1: data points, shape ``(N, dim)``.
            s: times in :math:`[0, 1]`, shape ``(N,)``.
            context: contexts ``(N, context_dim)`` of a conditional flow, else None.
            noise: the perturbation :math:`\sigma \varepsilon` of the paths, shape ``(N, dim)``, or None.
        """
        xs = (1 - s).unsqueeze(-1) * x0 + s.unsqueeze(-1) * x1
        if noise is not None:
            xs = xs + noise
        v = self.flow.velocity(s, xs, context)
        if v.shape != xs.shape:
            raise ValueError(
                f"flow.dynamics: expected dz/dt of shape {tuple(xs.shape)} for a time of shape {tuple(s.shape)} (one per "
                f"sample), got {tuple(v.shape)}; FlowMatching needs a dynamics network that takes a time per sample"
            )
        return (v - (x1 - x0)).pow(2).sum(-1).mean()

    def loss(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The flow-matching loss of the minibatch ``x`` (shape ``batch + (dim,)``), a 0-dim tensor
        with gradients for the flow's parameters."""
        x1, c = self._inputs(x, context)
        x0 = self.sample_base(x1.shape[0], x1)
        if self.ot:
            x0 = x0[ot_pairing(x0, x1)]
        s = self.sample_time(x1.shape[0], x1)
        noise = self.sigma * torch.randn_like(x1) if self.sigma > 0 else None
        return self.regression(x0, x1, s, c, noise)

    __call__ = loss
