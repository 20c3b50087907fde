r"""Conditional Recurrent Flow (CRow): recurrent affine coupling blocks over sequences ``(T, D)``.

A frame :math:`u_t \in \mathbb R^D` splits into :math:`u_{t,1}` (the first :math:`\lfloor D/2
\rfloor` features) and :math:`u_{t,2}`. Each block holds two complementary couplings whose
subnetworks :math:`q_a, q_b` contain a GRU cell (:class:`~pyroflows.nn.GRUConditioner`) and carry a
hidden state from :math:`t-1` to :math:`t`. In the paper's direction (data to latent, eq. (1)):

.. math::

    [s_a, r_a], h^a_t &= q_a(u_{t,2}, h^a_{t-1}), \qquad
    v_{t,1} = \mathrm{cgate}(h^a_{t-1}) \odot \big(u_{t,1} \odot e^{\tilde s_a} + r_a\big), \\
    [s_b, r_b], h^b_t &= q_b(v_{t,1}, h^b_{t-1}), \qquad
    v_{t,2} = u_{t,2} \odot e^{\tilde s_b} + r_b,

with soft-bounded log-scales :math:`\tilde s = B \tanh(s / B)` and the temporal context gate
(Sec. 3.2) :math:`\mathrm{cgate}(h) = \sigma(W h + b + 2) \in (0, 1)` (weights zero-initialised;
``gate=False`` drops it). A fixed permutation of the features follows each block. The hidden state
of each coupling is computed from that coupling's untouched input (:math:`u_{t,2}`, resp.
:math:`v_{t,1}`) and the previous state, both available in the inverse direction, so the inverse

.. math::

    u_{t,2} = (v_{t,2} - r_b) \odot e^{-\tilde s_b}, \qquad
    u_{t,1} = \big(v_{t,1} / \mathrm{cgate}(h^a_{t-1}) - r_a\big) \odot e^{-\tilde s_a}

is exact. Frame :math:`t`'s output depends on frames :math:`\le t` only, so the Jacobian of the
whole sequence map is block lower triangular and

.. math::

    \log\left|\det \frac{\partial v_{1:T}}{\partial u_{1:T}}\right| = \sum_t \log\left|\det
    \frac{\partial v_t}{\partial u_t}\right|, \qquad
    \log\left|\det \frac{\partial v_t}{\partial u_t}\right| = \sum_{\text{blocks}}
    \Big(\textstyle\sum \tilde s_a + \sum \log \mathrm{cgate}(h^a_{t-1}) + \sum \tilde s_b\Big).

With ``recurrent=False`` the subnetworks are plain residual MLPs and every frame is transformed
alone (the paper's cINN baseline); the gate needs the recurrence.

Directions: pyroflows transforms map latent to data (Pyro's convention), so ``t(v)`` is the
paper's :math:`f^{-1}` (sequential in time: step :math:`t` needs the states of step
:math:`t-1`), and ``t.inv(x)`` is the paper's :math:`f` (each block runs its couplings on all
steps at once; only the GRU recurrence loops over time). :meth:`ConditionedCRow.encode` and
:meth:`ConditionedCRow.decode` return the per-step log-determinants as well.

Reference: S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow: Conditional
Generation of Longitudinal Samples with Applications to Neuroimaging", ICCV 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Transform

from ..nn.dense import ResidualMLP
from ..nn.gru import GRUConditioner
from ..shapes import broadcast_batch
from ..transforms.base import OnePassTransform, event_constraint, module_reference
from ..transforms.elementwise import Affine, elementwise_affine
from ..transforms.parameterized import ConditionalFlowModule, FlowModule
from ..transforms.permute import block_permutations
from ..validation import check_positive, check_size

_GATE_OFFSET = 2.0  # cgate(h) = sigmoid(W h + b + 2): a fresh gate is sigmoid(2) = 0.88, away from saturation


@dataclasses.dataclass(frozen=True)
class CRowArchitecture:
    """The network of a CRow flow (a frozen configuration).

    Args:
        num_blocks: coupling blocks (two couplings each).
        hidden_size: size of each GRU state.
        hidden_features: width of the residual MLP inside each subnetwork.
        res_blocks: residual blocks of that MLP.
        recurrent: GRU subnetworks carrying states over time (False: each frame alone, the cINN
            baseline).
        gate: temporal context gating (default: on with ``recurrent``; it needs the recurrence).
        clamp: soft bound :math:`B` on the log-scales (None: unbounded).
        permutation: fixed feature permutation after each block: ``"random"`` (drawn with
            ``seed``), ``"reverse"`` or None.
        seed: seed of the random permutations.
    """

    num_blocks: int = 3
    hidden_size: int = 64
    hidden_features: int = 128
    res_blocks: int = 1
    recurrent: bool = True
    gate: bool | None = None
    clamp: float | None = 3.0
    permutation: str | None = "random"
    seed: int | None = None

    def __post_init__(self) -> None:
        check_size("num_blocks", self.num_blocks)
        check_size("hidden_size", self.hidden_size)
        check_size("hidden_features", self.hidden_features)
        check_size("res_blocks", self.res_blocks, 0)
        check_positive("clamp", self.clamp, allow_none=True)
        gate = self.recurrent if self.gate is None else self.gate  # on with the recurrence unless asked otherwise
        if gate and not self.recurrent:
            raise ValueError("gate: temporal context gating reads the hidden state h_{t-1}, so it needs recurrent=True")
        object.__setattr__(self, "gate", bool(gate))
        if self.permutation not in ("random", "reverse", None):
            raise ValueError(f"permutation: expected 'random', 'reverse' or None, got {self.permutation!r}")


def crow_architecture(architecture: CRowArchitecture | None, fields: dict) -> CRowArchitecture:
    """``architecture``, or one built from keyword ``fields`` (not both)."""
    if architecture is not None and fields:
        raise ValueError(f"architecture: give a CRowArchitecture or its fields as keywords, not both (got {sorted(fields)})")
    if architecture is None:
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(CRowArchitecture)})
        if unknown:
            raise TypeError(f"{unknown[0]}: not an option of CRowArchitecture")
        return CRowArchitecture(**fields)
    if not isinstance(architecture, CRowArchitecture):
        raise TypeError(f"architecture: expected a CRowArchitecture, got {type(architecture).__name__}")
    return architecture


class _CRowBlock(nn.Module):
    """Two complementary (recurrent) affine couplings, an optional temporal context gate and a
    fixed feature permutation. States are ``(h_a, h_b)`` of shape ``(N, hidden_size)`` each."""

    def __init__(self, dim: int, arch: CRowArchitecture, context_dim: int, permutation: torch.Tensor | None) -> None:
        super().__init__()
        self.dim, self.d1, self.d2 = dim, dim // 2, dim - dim // 2
        self.recurrent = arch.recurrent
        self.affine = Affine("softclamp", arch.clamp)
        sizes = (arch.hidden_features, arch.res_blocks, context_dim)
        if arch.recurrent:
            self.qa = GRUConditioner(self.d2, 2 * self.d1, arch.hidden_size, *sizes)
            self.qb = GRUConditioner(self.d1, 2 * self.d2, arch.hidden_size, *sizes)
        else:
            self.qa = ResidualMLP(self.d2, 2 * self.d1, *sizes)
            self.qb = ResidualMLP(self.d1, 2 * self.d2, *sizes)
        self.gate = None
        if arch.gate:
            self.gate = nn.Linear(arch.hidden_size, self.d1)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self.register_buffer("perm", permutation)
        self.register_buffer("inv_perm", None if permutation is None else torch.argsort(permutation))

    def initial_state(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        if not self.recurrent:
            return None
        return self.qa.initial_state((n,), like), self.qb.initial_state((n,), like)

    def _log_gate(self, h_prev: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(self.gate(h_prev) + _GATE_OFFSET)

    def encode(
        self, u: torch.Tensor, state: tuple[torch.Tensor, ...] | None, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Data side to latent side on whole sequences ``(N, T, D)``: ``(v, log-det (N, T), final state)``."""
        u1, u2 = u.split([self.d1, self.d2], dim=-1)
        if self.recurrent:
            ha0, hb0 = state
            pa, ha = self.qa(u2, ha0, c)
        else:
            pa = self.qa(u2, c)
        v1, logdet = self.affine(u1, pa, 1, inverse=False)
        if self.gate is not None:
            h_prev = torch.cat([ha0.unsqueeze(-2), ha[..., :-1, :]], dim=-2)  # h^a_{t-1} for every t
            v1, ladj_gate = elementwise_affine(v1, self._log_gate(h_prev), None, 1)
            logdet = logdet + ladj_gate
        if self.recurrent:
            pb, hb = self.qb(v1, hb0, c)
            state = (ha[..., -1, :], hb[..., -1, :])
        else:
            pb = self.qb(v1, c)
        v2, ladj_b = self.affine(u2, pb, 1, inverse=False)
        v = torch.cat([v1, v2], dim=-1)
        if self.perm is not None:
            v = v.index_select(-1, self.perm)
        return v, logdet + ladj_b, state

    def decode(
        self, v: torch.Tensor, state: tuple[torch.Tensor, ...] | None, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Latent side to data side on one frame ``(N, D)`` (or, without recurrence, a whole
        sequence): ``(u, log|det dv/du|, new state)``."""
        if self.perm is not None:
            v = v.index_select(-1, self.inv_perm)
        v1, v2 = v.split([self.d1, self.d2], dim=-1)
        if self.recurrent:
            ha, hb = state
            pb, hb_new = self.qb.step(v1, hb, c)
        else:
            pb = self.qb(v1, c)
        u2, logdet = self.affine(v2, pb, 1, inverse=True)
        w1 = v1
        if self.gate is not None:
            w1, ladj_gate = elementwise_affine(v1, self._log_gate(ha), None, 1, inverse=True)
            logdet = logdet + ladj_gate
        if self.recurrent:
            pa, ha_new = self.qa.step(u2, ha, c)
            state = (ha_new, hb_new)
        else:
            pa = self.qa(u2, c)
        u1, ladj_a = self.affine(w1, pa, 1, inverse=True)
        return torch.cat([u1, u2], dim=-1), logdet + ladj_a, state


def _make_blocks(dim: int, arch: CRowArchitecture, context_dim: int) -> nn.ModuleList:
    dim = check_size("dim", dim)
    if dim < 2:
        raise ValueError(f"dim: a coupling needs at least 2 features per frame, got {dim}")
    generator = torch.Generator().manual_seed(0 if arch.seed is None else int(arch.seed))
    perms = block_permutations(dim, arch.permutation, arch.num_blocks, generator)
    return nn.ModuleList(_CRowBlock(dim, arch, context_dim, perm) for perm in perms)


class ConditionedCRow(OnePassTransform, Transform):
    r"""A CRow sequence transform on given blocks and an optional per-step context (the pure math).

    Maps latent sequences ``(..., T, D)`` to data sequences ``(..., T, D)`` (``event_dim`` 2, any
    ``T``); see the module docstring for the equations. ``log_abs_det_jacobian`` is that of the
    latent-to-data map, :math:`-\sum_t \log|\det \partial v_t / \partial u_t|`.
    """

    bijective = True

    def __init__(self, blocks: nn.ModuleList, dim: int, context: torch.Tensor | None = None) -> None:
        super().__init__(cache_size=1)
        self.blocks, self.dim, self.context = blocks, dim, context
        self.event_shape_spec = (None, dim)
        self.domain = self.codomain = event_constraint(2)
        self.context_batch_shape = torch.Size() if context is None else context.shape[:-2]

    @property
    def recurrent(self) -> bool:
        return self.blocks[0].recurrent

    def _stamp_module(self) -> nn.ModuleList:
        return self.blocks

    def held_tensors(self) -> tuple:
        return () if self.context is None else (self.context,)

    def reference(self) -> torch.Tensor | None:
        return module_reference(self.blocks)

    # ------------------------------------------------------------------ shapes

    def _prepare(
        self, v: torch.Tensor, name: str, state: Sequence[tuple[torch.Tensor, ...] | None] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Size, Sequence[tuple[torch.Tensor, ...] | None]]:
        """Broadcast ``v`` and the context, flatten the batch: ``(v (N, T, D), context (N, T, K) or None, batch, state)``."""
        T = v.shape[-2]
        if T == 0:
            raise ValueError(f"{name}: expected at least one time step, got shape {tuple(v.shape)}")
        c = self.context
        if c is not None:
            tc = c.shape[-2]
            if tc not in (1, T):
                raise ValueError(f"context: expected {T} time steps (those of {name}) or 1, got {tc} in shape {tuple(c.shape)}")
            v, c = broadcast_batch(v, 2, c, 2)
        batch = v.shape[:-2]
        v = v.reshape((-1,) + v.shape[-2:])
        n = v.shape[0]
        if c is not None:
            c = c.reshape(n, tc, c.shape[-1])
            if tc != T:
                c = c.expand(n, T, c.shape[-1])
        if state is None:
            state = [b.initial_state(n, v) for b in self.blocks]
        elif self.recurrent:
            state = [tuple(self._flat_state(h, batch, n) for h in s) for s in state]
        return v, c, batch, state

    @staticmethod
    def _flat_state(h: torch.Tensor, batch: torch.Size, n: int) -> torch.Tensor:
        if h.shape[:-1] != batch:
            h = h.expand(batch + h.shape[-1:])
        return h.reshape(n, h.shape[-1])

    @staticmethod
    def _unflat_state(state: Sequence[tuple[torch.Tensor, ...] | None], batch: torch.Size) -> list[tuple[torch.Tensor, ...]] | None:
        if state[0] is None:
            return None
        return [tuple(h.reshape(batch + h.shape[-1:]) for h in s) for s in state]

    # ------------------------------------------------------------------ the two directions

    def _encode(
        self, x: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        x, c, batch, state = self._prepare(x, "x", state)
        v, logdet, out_state = x, 0.0, []
        for block, s in zip(self.blocks, state, strict=True):
            v, ld, s = block.encode(v, s, c)
            logdet = logdet + ld
            out_state.append(s)
        return v.reshape(batch + v.shape[-2:]), logdet.reshape(batch + v.shape[-2:-1]), self._unflat_state(out_state, batch)

    def _decode(
        self, v: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        v, c, batch, state = self._prepare(v, "v", state)
        if not self.recurrent:  # frames are independent: all steps at once
            x, logdet = v, 0.0
            for block in reversed(self.blocks):
                x, ld, _ = block.decode(x, None, c)
                logdet = logdet + ld
            return x.reshape(batch + x.shape[-2:]), logdet.reshape(batch + x.shape[-2:-1]), None
        frames, logdets = [], []
        for t in range(v.shape[-2]):
            u, ct, logdet = v[:, t], None if c is None else c[:, t], 0.0
            for k in range(len(self.blocks) - 1, -1, -1):
                u, ld, state[k] = self.blocks[k].decode(u, state[k], ct)
                logdet = logdet + ld
            frames.append(u)
            logdets.append(logdet)
        x, logdet = torch.stack(frames, dim=1), torch.stack(logdets, dim=1)
        return x.reshape(batch + x.shape[-2:]), logdet.reshape(batch + x.shape[-2:-1]), self._unflat_state(state, batch)

    def encode(
        self, x: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        r"""The paper's :math:`f` (data to latent) on ``x`` ``(..., T, D)``.

        Returns ``(v, log_det, state)``: the latent sequence, the per-step
        :math:`\log|\det \partial v_t / \partial x_t|` of shape ``batch + (T,)`` (they sum to
        ``-log_abs_det_jacobian(v, x)``), and the hidden states after the last step (a list with
        a pair ``(h_a, h_b)`` of shape ``batch + (hidden_size,)`` per block; None without
        recurrence). ``state`` starts from such states instead of zeros: encode a prefix, then
        :meth:`decode` the continuation from its final state.
        """
        self.check_input("x", x)
        return self._encode(x, state)

    def decode(
        self, v: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        r"""The paper's :math:`f^{-1}` (latent to data), step by step forward in time.

        Returns ``(x, log_det, state)`` with the per-step :math:`\log|\det \partial v_t / \partial
        x_t|` (the same quantity as :meth:`encode`'s) and the final hidden states.
        """
        self.check_input("v", v)
        return self._decode(v, state)

    def forward_and_ladj(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, logdet, _ = self._decode(v)
        return x, -logdet.sum(-1)

    def inverse_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, logdet, _ = self._encode(x)
        return v, -logdet.sum(-1)


class CRowTransform(FlowModule):
    r"""The CRow sequence flow (module docstring): recurrent coupling blocks with temporal context
    gating on sequences of frames of size ``dim``, event shape ``(T, dim)`` for any ``T``.

    Args:
        dim: features per frame :math:`D` (at least 2).
        architecture: a :class:`CRowArchitecture`, or its fields as keywords (``num_blocks``,
            ``hidden_size``, ``hidden_features``, ``res_blocks``, ``recurrent``, ``gate``, ``clamp``,
            ``permutation``, ``seed``).

    Example::

        >>> t = CRowTransform(4, num_blocks=2, hidden_size=8, hidden_features=16)
        >>> x = torch.randn(10, 6, 4)                  # batch 10, T = 6 frames of 4 features
        >>> v, log_det, _ = t.encode(x)                # the paper's forward map, per-step log-dets
        >>> log_det.shape, torch.allclose(t(v), x, atol=1e-5)
        (torch.Size([10, 6]), True)
        >>> torch.allclose(t.log_abs_det_jacobian(v, t(v)), -log_det.sum(-1), atol=1e-5)
        True
    """

    def __init__(self, dim: int, architecture: CRowArchitecture | None = None, **fields: Any) -> None:
        super().__init__()
        self.architecture = crow_architecture(architecture, fields)
        self.blocks = _make_blocks(dim, self.architecture, 0)
        self.dim = int(dim)
        self.set_event((None, self.dim))

    def transform(self) -> ConditionedCRow:
        return ConditionedCRow(self.blocks, self.dim)

    def encode(
        self, x: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        """As :meth:`ConditionedCRow.encode`."""
        return self.transform().encode(x, state)

    def decode(
        self, v: torch.Tensor, state: Sequence[tuple[torch.Tensor, ...] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
        """As :meth:`ConditionedCRow.decode`."""
        return self.transform().decode(v, state)


class ConditionalCRowTransform(ConditionalFlowModule):
    r"""CRow with a per-step context :math:`c_t` fed to every subnetwork,
    :math:`[s, r], h_t = q([u_t, c_t], h_{t-1})`.

    ``.condition(context)`` evaluates a :class:`ConditionedCRow` at each call. The context has shape
    ``batch' + (T, context_dim)`` with the input's ``T`` (or ``T = 1``: one context for every
    step), ``batch'`` broadcasting against the input's batch shape.

    Args:
        dim, architecture: as in :class:`CRowTransform`.
        context_dim: size :math:`K` of the per-step context.

    Example::

        >>> t = ConditionalCRowTransform(4, context_dim=2, num_blocks=2, hidden_size=8, hidden_features=16)
        >>> x, c = torch.randn(10, 6, 4), torch.randn(10, 6, 2)
        >>> torch.allclose(t.condition(c).inv(t.condition(c)(x)), x, atol=1e-5)
        True
    """

    def __init__(self, dim: int, context_dim: int, architecture: CRowArchitecture | None = None, **fields: Any) -> None:
        super().__init__()
        self.architecture = crow_architecture(architecture, fields)
        self.dim, self.context_dim = int(dim), check_size("context_dim", context_dim)
        self.context_shape = (None, self.context_dim)
        self.blocks = _make_blocks(dim, self.architecture, self.context_dim)
        self.set_event((None, self.dim))

    def transform(self, context: torch.Tensor) -> ConditionedCRow:
        return ConditionedCRow(self.blocks, self.dim, context)


def crow(dim: int, architecture: CRowArchitecture | None = None, **fields: Any) -> CRowTransform:
    """A :class:`CRowTransform` (the paper's architecture: GRU subnetworks with residual read-outs,
    temporal context gating); ``recurrent=False`` gives the cINN baseline."""
    return CRowTransform(dim, architecture, **fields)


def conditional_crow(dim: int, context_dim: int, architecture: CRowArchitecture | None = None, **fields: Any) -> ConditionalCRowTransform:
    """A :class:`ConditionalCRowTransform` whose subnetworks see a per-step context ``(T, context_dim)``."""
    return ConditionalCRowTransform(dim, context_dim, architecture, **fields)
