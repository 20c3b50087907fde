r"""Sylvester normalizing flows (van den Berg et al. 2018): orthogonal, Householder and triangular,
unconditional and conditional (amortised: every flow parameter computed from a context).

.. math::

    y = x + Q R_1 h(R_2 Q^\top x + b), \qquad h = \tanh, \qquad
    \log|\det J| = \sum_{i=1}^{M} \log\bigl|1 + r^{(1)}_{ii} r^{(2)}_{ii}\, h'\bigl((R_2 Q^\top x + b)_i\bigr)\bigr|,

with :math:`Q \in \mathbb{R}^{D\times M}` having orthonormal columns, :math:`R_1, R_2` upper
triangular :math:`M \times M` and :math:`b \in \mathbb{R}^M`. The log-det follows from Sylvester's
identity :math:`\det(I_D + AB) = \det(I_M + BA)` and :math:`Q^\top Q = I_M`, which makes
:math:`I_M + \operatorname{diag}(h') R_2 R_1` upper triangular. The diagonals are bounded as in the
reference code, :math:`r^{(k)}_{ii} = \tanh(d^{(k)}_i)`, so :math:`|r^{(1)}_{ii} r^{(2)}_{ii}| < 1 =
1/\sup h'` and the map is invertible (theorem 2 of the paper). One :math:`M\times M` matrix holds both
off-diagonal parts: its strict upper triangle is that of :math:`R_1`, its strict lower triangle
(transposed) that of :math:`R_2`.

The three kinds differ in :math:`Q`:

- **orthogonal** (:class:`OrthogonalSylvester`): a free :math:`D\times M` matrix (:math:`M \le D`)
  made orthonormal by the differentiable Björck iteration
  :math:`Q \leftarrow Q\,(I + \tfrac12 (I - Q^\top Q))` of the reference code, here reached exactly
  in a fixed number of steps by :func:`orthonormal_polar_factor`;
- **Householder** (:class:`HouseholderSylvester`): :math:`Q = H_1 \cdots H_K`,
  :math:`H_k = I - 2 v_k v_k^\top / \lVert v_k\rVert^2` (:math:`M = D`);
- **triangular** (:class:`TriangularSylvester`): :math:`Q` is the identity or the reversal
  permutation (``flip``), alternated between layers (:math:`M = D`).

**Inverse.** Write :math:`v = Q^\top x`, :math:`w = Q^\top y`. The part of ``x`` outside the span of
``Q`` is unchanged, and :math:`v + R_1 \tanh(R_2 v + b) = w` is triangular: its last row involves
only :math:`v_M`, row :math:`i` only :math:`v_i, \dots, v_M`. Back-substitution from :math:`i = M`
down to 1 reduces each row to the scalar equation :math:`t + \kappa_i \tanh t = s_i` in the
pre-activation :math:`t = a_i`, with :math:`\kappa_i = r^{(1)}_{ii} r^{(2)}_{ii} \in (-1, 1)`,
solved by the monotone Newton iteration of :func:`~pyroflows.transforms.planar.solve_tanh_equation`
(vectorised over the batch, 30 steps by default, no host synchronisation); then
:math:`x = y - Q R_1 \tanh(a)`. The loop runs over the ``M`` hidden units, never over the batch, so
the inverse costs about ``M`` times a planar inverse: it is meant for scoring observed data, the
forward pass (sampling, the ELBO) does not use it. In float64 the round trip is exact to about
``1e-13``; the tests hold it to ``1e-10``, also far from initialisation. The orthogonal kind relies
on :math:`Q^\top Q = I`, which :func:`orthonormal_polar_factor` reaches to machine precision.

Reference: van den Berg, Hasenclever, Tomczak, Welling, "Sylvester normalizing flows for
variational inference", UAI 2018.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
from torch.distributions import Transform

from ..validation import check_positive, check_size, is_validation_enabled
from .base import OnePassTransform, event_constraint
from .parameterized import ConditionalFlowModule, ContextParameters, FlowModule
from .planar import NEWTON_STEPS, solve_tanh_equation, tanh_log_slope

#: Scaled Newton iterations on the ``M x M`` triangle: enough for a condition number of ``1e8``.
POLAR_NEWTON_STEPS = 8


def _eye_like(q: torch.Tensor, n: int) -> torch.Tensor:
    return torch.eye(n, dtype=q.dtype, device=q.device)


def orthogonality_error(q: torch.Tensor) -> torch.Tensor:
    r""":math:`\max |Q^\top Q - I|` per matrix (shape ``q.shape[:-2]``)."""
    gram = q.transpose(-1, -2) @ q
    return (gram - _eye_like(q, q.shape[-1])).abs().amax(dim=(-2, -1))


def orthonormal_polar_factor(q: torch.Tensor, steps: int = POLAR_NEWTON_STEPS, tol: float | None = None) -> torch.Tensor:
    r"""The orthonormal polar factor :math:`U V^\top` of ``q = U \Sigma V^\top`` (shape ``(..., D, M)``,
    ``M <= D``): the matrix with orthonormal columns closest to ``q``, the limit of Björck's iteration
    :math:`Q \leftarrow Q\,(I + \tfrac12 (I - Q^\top Q))` used by the Sylvester reference code.

    A reduced QR factorisation :math:`Q = Q_1 R` leaves the polar factor of the small triangle:
    :math:`\operatorname{polar}(Q) = Q_1 \operatorname{polar}(R)`, found by Newton's iteration with
    Frobenius scaling (Higham, *Functions of Matrices*, ch. 8),

    .. math:: X_0 = R, \qquad X_{k+1} = \tfrac12\bigl(\zeta_k X_k + \zeta_k^{-1} X_k^{-\top}\bigr),
              \qquad \zeta_k = \bigl(\lVert X_k^{-1}\rVert_F / \lVert X_k\rVert_F\bigr)^{1/2},

    which converges quadratically from any full-rank start: ``steps`` iterations (always the same
    number, so the result never depends on validation) reach machine precision up to a condition
    number of about ``1e8``. Every operation is differentiable, to any order, with no host
    synchronisation. While validation is on (see :func:`pyroflows.set_validation`), the result is
    checked: a ``ValueError`` names the residual :math:`\max|Q^\top Q - I|` when it exceeds ``tol``
    (default ``1000 * eps`` of the dtype), which happens only for a (nearly) rank-deficient ``q``.

    Example::

        >>> q = orthonormal_polar_factor(torch.randn(5, 3, dtype=torch.float64))
        >>> torch.allclose(q.T @ q, torch.eye(3, dtype=torch.float64), atol=1e-12)
        True
    """
    if q.dim() < 2 or q.shape[-1] > q.shape[-2]:
        raise ValueError(f"q: expected shape (..., D, M) with M <= D, got {tuple(q.shape)}")
    if q.numel() == 0:
        return q
    q1, x = torch.linalg.qr(q)
    for _ in range(steps):
        x_inv = torch.linalg.inv_ex(x)[0]  # no singularity check: that would be a host sync
        zeta = (x_inv.pow(2).sum((-2, -1)) / x.pow(2).sum((-2, -1))).pow(0.25)[..., None, None]
        x = 0.5 * (zeta * x + x_inv.transpose(-1, -2) / zeta)
    out = q1 @ x
    if is_validation_enabled() and out.device.type != "meta":
        tol = 1000.0 * torch.finfo(q.dtype).eps if tol is None else tol
        err = float(orthogonality_error(out.detach()).max())
        if not err <= tol:
            raise ValueError(
                f"q: expected a full-rank matrix to orthonormalise, got one whose polar factor has "
                f"max|Q^T Q - I| = {err:.3g} (tolerance {tol:.3g}): it is (nearly) rank-deficient"
            )
    return out


def bjorck_orthonormalize(
    q: torch.Tensor, steps: int | None = None, max_steps: int | None = None, tol: float | None = None, check: bool | None = None
) -> torch.Tensor:
    """Deprecated: use :func:`orthonormal_polar_factor`, which returns the limit of Björck's iteration
    in a fixed number of steps (``steps`` and ``max_steps`` are ignored)."""
    warnings.warn(
        "bjorck_orthonormalize is deprecated; use pyroflows.transforms.sylvester.orthonormal_polar_factor",
        DeprecationWarning,
        stacklevel=2,
    )
    return orthonormal_polar_factor(q, tol=tol)


def _strictly_upper(n: int, device: torch.device) -> torch.Tensor:
    """The mask of an ``n x n`` matrix's strict upper triangle, from index comparisons rather than
    torch.triu / torch.tril, whose multi-threaded CPU kernel can stall for milliseconds on tiny
    matrices when the cores are busy."""
    idx = torch.arange(n, device=device)
    return idx.unsqueeze(-1) < idx


def householder_product(v: torch.Tensor) -> torch.Tensor:
    r""":math:`Q = H_1 H_2 \cdots H_K` with :math:`H_k = I - 2 v_k v_k^\top / \lVert v_k\rVert^2`.

    ``v`` has shape ``(..., K, D)``; the result has shape ``(..., D, D)``. Built in the compact WY
    form (Joffrain, Low, Quintana-Ortí, van de Geijn, Van Zee, "Accumulating Householder
    transformations, revisited", ACM TOMS 32(2), 2006) rather than as :math:`K` rank-one updates:

    .. math::

        Q = I - V^\top T^{-1} V, \qquad
        T = \operatorname{striu}(V V^\top) + \tfrac12 \operatorname{diag}(V V^\top),

    with the vectors as the rows of :math:`V`: one Gram matrix, one :math:`K \times K` triangular
    solve and one product, in place of :math:`K` sequential updates of a :math:`D \times D` matrix.

    Example::

        >>> v = torch.randn(3, 5, dtype=torch.float64)
        >>> q = householder_product(v)
        >>> h = [torch.eye(5, dtype=torch.float64) - 2 * torch.outer(u, u) / u.dot(u) for u in v]
        >>> torch.allclose(q, h[0] @ h[1] @ h[2])
        True
    """
    gram = v @ v.mT
    # a zero vector (a reflection left undefined) gets a tiny pivot, so its row of the solve is
    # zero and it acts as the identity
    half_diagonal = 0.5 * gram.diagonal(dim1=-2, dim2=-1).clamp_min(torch.finfo(v.dtype).tiny)
    t = torch.where(_strictly_upper(v.shape[-2], v.device), gram, gram.new_zeros(())) + torch.diag_embed(half_diagonal)
    return _eye_like(v, v.shape[-1]) - v.mT @ torch.linalg.solve_triangular(t, v, upper=True)


def sylvester_triangles(r: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(R1, R2)`` from one ``(..., M, M)`` matrix (strict upper triangle to :math:`R_1`, strict lower
    triangle transposed to :math:`R_2`) and the raw diagonals, bounded by ``tanh``."""
    upper = _strictly_upper(r.shape[-1], r.device)
    zero = r.new_zeros(())
    r1 = torch.where(upper, r, zero) + torch.diag_embed(torch.tanh(d1))
    r2 = torch.where(upper, r.transpose(-1, -2), zero) + torch.diag_embed(torch.tanh(d2))
    return r1, r2


def _matvec(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if m.dim() == 2:
        # one shared matrix: a single (N, M) @ (M, M) product; written as m @ v[..., None], torch
        # broadcasts m over the batch and runs a batched matmul of N copies (~30x slower on CPU)
        return v @ m.mT
    return (m @ v.unsqueeze(-1)).squeeze(-1)


class _ConditionedSylvester(OnePassTransform, Transform):
    """The Sylvester math shared by the three kinds, on given raw parameters ``(q_raw, r, d1, d2, b)``
    of shapes ``batch' + q_shape``, ``batch' + (M, M)`` and ``batch' + (M,)`` (three times), where
    ``batch'`` broadcasts against the input's batch shape; the kinds say how ``Q`` is built and applied."""

    bijective = True

    def __init__(
        self,
        q_raw: torch.Tensor | None,
        r: torch.Tensor,
        d1: torch.Tensor,
        d2: torch.Tensor,
        b: torch.Tensor,
        dim: int,
        newton_steps: int = NEWTON_STEPS,
    ) -> None:
        super().__init__(cache_size=1)
        self.raw = (q_raw, r, d1, d2, b)
        self.dim, self.num_hidden, self.newton_steps = dim, b.shape[-1], newton_steps
        self.event_shape_spec = (dim,)
        self.domain = self.codomain = event_constraint(1)
        self.context_batch_shape = b.shape[:-1]

    def held_tensors(self) -> tuple:
        return tuple(t for t in self.raw if t is not None)

    # ---- how Q is built and applied (overridden by the kinds)
    def _build_q(self, q_raw: torch.Tensor | None) -> torch.Tensor | _Reflections | None:
        return q_raw

    def _apply_qt(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-2) @ q).squeeze(-2)

    def _apply_q(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _matvec(q, v)

    def _parts(self) -> tuple[torch.Tensor | _Reflections | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q, R1, R2, b)`` with ``Q`` in the form ``_apply_qt`` / ``_apply_q`` take."""
        q_raw, r, d1, d2, b = self.raw
        r1, r2 = sylvester_triangles(r, d1, d2)
        return self._build_q(q_raw), r1, r2, b

    def factors(self) -> tuple[torch.Tensor | _Reflections | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q, R1, R2, b)`` of the current parameters (``Q`` is ``None`` for the triangular kind)."""
        return self._parts()

    def _ladj(self, r1: torch.Tensor, r2: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        kappa = torch.diagonal(r1, dim1=-2, dim2=-1) * torch.diagonal(r2, dim1=-2, dim2=-1)
        return tanh_log_slope(kappa, th).sum(-1)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, r1, r2, b = self._parts()
        if isinstance(q, torch.Tensor) and q.dim() == 2 and r1.dim() == 2:
            # shared parameters: fold Q into the triangles once, x @ (Q R2^T) and tanh(a) @ (Q R1)^T,
            # two (N, D) x (D, M) products instead of four (as Pyro's Sylvester does)
            th = torch.tanh(torch.addmm(b, x.reshape(-1, x.shape[-1]), q @ r2.mT)).reshape(x.shape[:-1] + b.shape)
            return x + th @ (q @ r1).mT, self._ladj(r1, r2, th)
        a = _matvec(r2, self._apply_qt(q, x)) + b
        th = torch.tanh(a)
        return x + self._apply_q(q, _matvec(r1, th)), self._ladj(r1, r2, th)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, r1, r2, b = self._parts()
        w = self._apply_qt(q, y)
        a = self._solve_triangular_system(w, r1, r2, b)
        th = torch.tanh(a)
        return y - self._apply_q(q, _matvec(r1, th)), self._ladj(r1, r2, th)

    def _solve_triangular_system(self, w: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        r"""Pre-activations :math:`a = R_2 v + b` where :math:`v + R_1 \tanh(a) = w`, by back-substitution."""
        m = w.shape[-1]
        diag1 = torch.diagonal(r1, dim1=-2, dim2=-1)
        diag2 = torch.diagonal(r2, dim1=-2, dim2=-1)
        kappa = diag1 * diag2
        vs: list[torch.Tensor] = []  # v_{i+1}, ..., v_M (in that order)
        ths: list[torch.Tensor] = []  # tanh(a_{i+1}), ..., tanh(a_M)
        pre: list[torch.Tensor] = []
        for i in range(m - 1, -1, -1):
            c, e = w[..., i], b[..., i]
            if vs:
                v_hi, th_hi = torch.stack(vs, -1), torch.stack(ths, -1)
                c = c - (r1[..., i, i + 1 :] * th_hi).sum(-1)
                e = e + (r2[..., i, i + 1 :] * v_hi).sum(-1)
            # row i: v_i + r1_ii tanh(r2_ii v_i + e) = c; in t = r2_ii v_i + e: t + kappa_i tanh t = r2_ii c + e
            t = solve_tanh_equation(kappa[..., i], diag2[..., i] * c + e, self.newton_steps)
            th = torch.tanh(t)
            vs.insert(0, c - diag1[..., i] * th)
            ths.insert(0, th)
            pre.insert(0, t)
        return torch.stack(pre, -1)


class ConditionedOrthogonalSylvester(_ConditionedSylvester):
    r"""The orthogonal Sylvester map on given raw parameters ``(q, r, d1, d2, b)`` (the math): ``q`` of
    shape ``batch' + (D, M)`` is orthonormalised by :func:`orthonormal_polar_factor`."""

    def __init__(
        self,
        q: torch.Tensor,
        r: torch.Tensor,
        d1: torch.Tensor,
        d2: torch.Tensor,
        b: torch.Tensor,
        newton_steps: int = NEWTON_STEPS,
        orthonormal_tol: float | None = None,
    ) -> None:
        super().__init__(q, r, d1, d2, b, q.shape[-2], newton_steps)
        self.orthonormal_tol = orthonormal_tol

    def _build_q(self, q_raw: torch.Tensor) -> torch.Tensor:
        return orthonormal_polar_factor(q_raw, tol=self.orthonormal_tol)


class _Reflections(NamedTuple):
    r"""Unit reflection vectors ``u`` of shape ``batch' + (K, D)``, standing for :math:`Q = H_1\cdots H_K`."""

    u: torch.Tensor


def _reflect(u: torch.Tensor, x: torch.Tensor, order: Iterable[int]) -> torch.Tensor:
    for k in order:
        uk = u[..., k, :]
        x = x - 2.0 * (x * uk).sum(-1, keepdim=True) * uk
    return x


class ConditionedHouseholderSylvester(_ConditionedSylvester):
    r"""The Householder Sylvester map on given raw parameters ``(v, r, d1, d2, b)`` (the math): ``v`` of
    shape ``batch' + (K, D)`` holds the reflection vectors of :math:`Q = H_1\cdots H_K`.

    A shared ``v`` (no batch dims) is multiplied out into one ``D x D`` matrix once per call. Per-sample
    vectors (amortised posteriors) are applied as reflections,
    :math:`Q^\top x = H_K\cdots H_1 x` with :math:`H_k x = x - 2 (u_k^\top x) u_k`, which costs
    :math:`O(KD)` per sample instead of the :math:`O(KD^2)` of building every :math:`Q`.
    """

    def __init__(
        self, v: torch.Tensor, r: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, b: torch.Tensor, newton_steps: int = NEWTON_STEPS
    ) -> None:
        super().__init__(v, r, d1, d2, b, v.shape[-1], newton_steps)

    def _build_q(self, q_raw: torch.Tensor) -> torch.Tensor | _Reflections:
        if q_raw.dim() == 2:
            return householder_product(q_raw)
        norm = (q_raw * q_raw).sum(-1, keepdim=True).clamp_min(torch.finfo(q_raw.dtype).tiny).sqrt()
        return _Reflections(q_raw / norm)

    def _apply_qt(self, q: torch.Tensor | _Reflections, x: torch.Tensor) -> torch.Tensor:
        if isinstance(q, _Reflections):
            return _reflect(q.u, x, range(q.u.shape[-2]))
        return super()._apply_qt(q, x)

    def _apply_q(self, q: torch.Tensor | _Reflections, v: torch.Tensor) -> torch.Tensor:
        if isinstance(q, _Reflections):
            return _reflect(q.u, v, reversed(range(q.u.shape[-2])))
        return super()._apply_q(q, v)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        q, r1, r2, b = super().factors()
        return (householder_product(q.u) if isinstance(q, _Reflections) else q), r1, r2, b


class ConditionedTriangularSylvester(_ConditionedSylvester):
    r"""The triangular Sylvester map on given raw parameters ``(r, d1, d2, b)`` (the math): :math:`Q` is
    the identity, or the reversal permutation when ``flip`` is true."""

    def __init__(
        self, r: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, b: torch.Tensor, flip: bool = False, newton_steps: int = NEWTON_STEPS
    ) -> None:
        super().__init__(None, r, d1, d2, b, b.shape[-1], newton_steps)
        self.flip = bool(flip)

    def _build_q(self, q_raw: None) -> None:
        return None

    def _apply_qt(self, q: None, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if self.flip else x

    _apply_q = _apply_qt  # the reversal is its own inverse and transpose


# ----------------------------------------------------------------------------- parameters


def _sylvester_parameters(
    num_hidden: int,
    kind: str,
    q_shape: tuple | None,
    context_shape: Sequence[int] | None = None,
    hidden: Sequence[int] = (64,),
    net: nn.Module | None = None,
) -> ContextParameters:
    """Raw parameters of one Sylvester layer, initialised at the identity, plus a zero-initialised
    network of the context when there is one.

    ``R1 = 0`` (zero upper triangle and ``d1 = 0``) makes the map the identity, while ``d2 = 1``
    keeps the pre-activations alive so that ``R1`` gets gradients from the first step.
    ``q_shape`` is ``(D, M)`` (orthogonal: a random orthonormal start), ``(K, D)`` (Householder:
    random reflection vectors) or ``None`` (triangular).
    """
    m = num_hidden
    initial = {}
    if kind == "orthogonal":
        initial["q"] = torch.linalg.qr(torch.randn(q_shape))[0]
    elif kind == "householder":
        initial["q"] = torch.randn(q_shape)
    initial.update(r=torch.zeros(m, m), d1=torch.zeros(m), d2=torch.ones(m), b=torch.zeros(m))
    return ContextParameters(initial, context_shape, hidden, net)


def _check_sylvester_args(dim: int, num_hidden: int | None = None, num_householder: int | None = None) -> None:
    check_size("dim", dim)
    if num_hidden is not None and (isinstance(num_hidden, bool) or not 1 <= num_hidden <= dim):
        raise ValueError(f"num_ortho_vecs: expected an integer in [1, {dim}], got {num_hidden}")
    if num_householder is not None:
        check_size("num_householder", num_householder)


def _orthonormal_tol(tol: float | None, bjorck_steps: int | None, bjorck_max_steps: int | None, bjorck_tol: float | None) -> float | None:
    given = [
        n for n, v in (("bjorck_steps", bjorck_steps), ("bjorck_max_steps", bjorck_max_steps), ("bjorck_tol", bjorck_tol)) if v is not None
    ]
    if given:
        warnings.warn(
            f"{', '.join(given)}: deprecated; Q is orthonormalised in a fixed number of steps, and its tolerance is orthonormal_tol",
            DeprecationWarning,
            stacklevel=3,
        )
    tol = bjorck_tol if tol is None else tol
    return check_positive("orthonormal_tol", tol, allow_none=True)


class OrthogonalSylvester(FlowModule):
    r"""Learnable orthogonal Sylvester flow :math:`y = x + QR_1\tanh(R_2Q^\top x + b)` with
    :math:`Q \in \mathbb{R}^{D\times M}` the orthonormal polar factor of a free matrix.

    Initialised at the identity (:math:`R_1 = 0`). The inverse is numerical (back-substitution with
    scalar Newton solves, see the module docstring).

    Args:
        dim: size :math:`D` of the vectors.
        num_ortho_vecs: number :math:`M \le D` of orthonormal columns (default ``dim``).
        newton_steps: Newton iterations per hidden unit of the inverse.
        orthonormal_tol: the largest :math:`\max|Q^\top Q - I|` accepted while validation is on
            (see :func:`orthonormal_polar_factor`).
        bjorck_steps, bjorck_max_steps, bjorck_tol: deprecated (``bjorck_tol`` is ``orthonormal_tol``).

    Example::

        >>> t = OrthogonalSylvester(4, num_ortho_vecs=2)
        >>> with torch.no_grad():
        ...     _ = t.params.d1.fill_(0.5)
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        dim: int,
        num_ortho_vecs: int | None = None,
        bjorck_steps: int | None = None,
        bjorck_max_steps: int | None = None,
        bjorck_tol: float | None = None,
        newton_steps: int = NEWTON_STEPS,
        orthonormal_tol: float | None = None,
    ) -> None:
        super().__init__()
        m = dim if num_ortho_vecs is None else num_ortho_vecs
        _check_sylvester_args(dim, m)
        self.dim, self.num_hidden, self.newton_steps = dim, m, check_size("newton_steps", newton_steps)
        self.orthonormal_tol = _orthonormal_tol(orthonormal_tol, bjorck_steps, bjorck_max_steps, bjorck_tol)
        self.params = _sylvester_parameters(m, "orthogonal", (dim, m))
        self.set_event((dim,))

    def transform(self) -> ConditionedOrthogonalSylvester:
        return ConditionedOrthogonalSylvester(*self.params(), newton_steps=self.newton_steps, orthonormal_tol=self.orthonormal_tol)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q, R1, R2, b)`` of the current parameters."""
        return self.transform().factors()


class HouseholderSylvester(FlowModule):
    r"""Learnable Householder Sylvester flow: :math:`Q = H_1\cdots H_K` is a product of
    ``num_householder`` reflections (:math:`M = D`), initialised at the identity map (:math:`R_1 = 0`).

    Example::

        >>> t = HouseholderSylvester(3, num_householder=2)
        >>> with torch.no_grad():
        ...     _ = t.params.d1.fill_(0.5)
        >>> x = torch.randn(10, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, dim: int, num_householder: int = 8, newton_steps: int = NEWTON_STEPS) -> None:
        super().__init__()
        _check_sylvester_args(dim, num_householder=num_householder)
        self.dim, self.num_hidden, self.newton_steps = dim, dim, check_size("newton_steps", newton_steps)
        self.params = _sylvester_parameters(dim, "householder", (num_householder, dim))
        self.set_event((dim,))

    def transform(self) -> ConditionedHouseholderSylvester:
        return ConditionedHouseholderSylvester(*self.params(), newton_steps=self.newton_steps)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q, R1, R2, b)`` of the current parameters."""
        return self.transform().factors()


class TriangularSylvester(FlowModule):
    r"""Learnable triangular Sylvester flow: :math:`Q = I`, or the reversal permutation when ``flip``
    (alternate ``flip`` between stacked layers so that every coordinate leads in turn).
    Initialised at the identity map (:math:`R_1 = 0`).

    Example::

        >>> t = TriangularSylvester(3, flip=True)
        >>> with torch.no_grad():
        ...     _ = t.params.d1.fill_(0.5)
        >>> x = torch.randn(10, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, dim: int, flip: bool = False, newton_steps: int = NEWTON_STEPS) -> None:
        super().__init__()
        _check_sylvester_args(dim)
        self.dim, self.num_hidden, self.flip, self.newton_steps = dim, dim, bool(flip), check_size("newton_steps", newton_steps)
        self.params = _sylvester_parameters(dim, "triangular", None)
        self.set_event((dim,))

    def transform(self) -> ConditionedTriangularSylvester:
        return ConditionedTriangularSylvester(*self.params(), flip=self.flip, newton_steps=self.newton_steps)

    def factors(self) -> tuple[None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(None, R1, R2, b)`` of the current parameters."""
        return self.transform().factors()


# ----------------------------------------------------------------------------- conditional (amortised)


class ConditionalOrthogonalSylvester(ConditionalFlowModule):
    r"""Orthogonal Sylvester flow whose every parameter (:math:`Q`, both triangles, both diagonals,
    :math:`b`) is computed from a context, as in the amortised reference code:
    :math:`\theta(c) = \theta_0 + g(c)` with :math:`g` a zero-initialised network (an MLP by default),
    so the layer starts at the identity. :math:`Q(c)` is orthonormalised per sample by
    :func:`orthonormal_polar_factor`. The context has shape ``batch' + (context_dim,)``;
    ``.condition(c)`` evaluates a :class:`ConditionedOrthogonalSylvester` at each call.

    Args:
        dim, num_ortho_vecs, newton_steps, orthonormal_tol: as in :class:`OrthogonalSylvester`.
        context_dim: size of the context vector (e.g. the encoder's hidden features).
        hidden: hidden widths of the default MLP (``()``: one linear layer, as in the reference code).
        net: a network ``c -> D*M + M*M + 3*M`` values, replacing the default MLP.

    Example::

        >>> t = ConditionalOrthogonalSylvester(4, context_dim=3, num_ortho_vecs=2)
        >>> t.condition(torch.randn(5, 3))(torch.randn(5, 4)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        num_ortho_vecs: int | None = None,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
        bjorck_steps: int | None = None,
        bjorck_max_steps: int | None = None,
        bjorck_tol: float | None = None,
        newton_steps: int = NEWTON_STEPS,
        orthonormal_tol: float | None = None,
    ) -> None:
        super().__init__()
        m = dim if num_ortho_vecs is None else num_ortho_vecs
        _check_sylvester_args(dim, m)
        self.context_shape = (check_size("context_dim", context_dim),)
        self.dim, self.num_hidden, self.newton_steps = dim, m, check_size("newton_steps", newton_steps)
        self.orthonormal_tol = _orthonormal_tol(orthonormal_tol, bjorck_steps, bjorck_max_steps, bjorck_tol)
        self.params = _sylvester_parameters(m, "orthogonal", (dim, m), self.context_shape, hidden, net)
        self.set_event((dim,))

    def transform(self, context: torch.Tensor) -> ConditionedOrthogonalSylvester:
        return ConditionedOrthogonalSylvester(*self.params(context), newton_steps=self.newton_steps, orthonormal_tol=self.orthonormal_tol)


class ConditionalHouseholderSylvester(ConditionalFlowModule):
    r"""Householder Sylvester flow whose parameters (reflection vectors, triangles, diagonals, :math:`b`)
    are computed from a context (amortised), :math:`\theta(c) = \theta_0 + g(c)` with :math:`g`
    zero-initialised. ``.condition(c)`` evaluates a :class:`ConditionedHouseholderSylvester`; the
    context has shape ``batch' + (context_dim,)``. ``net`` must output ``K*D + D*D + 3*D`` values.

    Example::

        >>> t = ConditionalHouseholderSylvester(3, context_dim=2, num_householder=2)
        >>> t.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        num_householder: int = 8,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
        newton_steps: int = NEWTON_STEPS,
    ) -> None:
        super().__init__()
        _check_sylvester_args(dim, num_householder=num_householder)
        self.context_shape = (check_size("context_dim", context_dim),)
        self.dim, self.num_hidden, self.newton_steps = dim, dim, check_size("newton_steps", newton_steps)
        self.params = _sylvester_parameters(dim, "householder", (num_householder, dim), self.context_shape, hidden, net)
        self.set_event((dim,))

    def transform(self, context: torch.Tensor) -> ConditionedHouseholderSylvester:
        return ConditionedHouseholderSylvester(*self.params(context), newton_steps=self.newton_steps)


class ConditionalTriangularSylvester(ConditionalFlowModule):
    r"""Triangular Sylvester flow (:math:`Q = I` or the reversal when ``flip``) whose triangles,
    diagonals and :math:`b` are computed from a context (amortised), :math:`\theta(c) = \theta_0 + g(c)`
    with :math:`g` zero-initialised. ``.condition(c)`` evaluates a :class:`ConditionedTriangularSylvester`;
    the context has shape ``batch' + (context_dim,)``. ``net`` must output ``D*D + 3*D`` values.

    Example::

        >>> t = ConditionalTriangularSylvester(3, context_dim=2, flip=True)
        >>> t.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        flip: bool = False,
        hidden: Sequence[int] = (64,),
        net: nn.Module | None = None,
        newton_steps: int = NEWTON_STEPS,
    ) -> None:
        super().__init__()
        _check_sylvester_args(dim)
        self.context_shape = (check_size("context_dim", context_dim),)
        self.dim, self.num_hidden, self.flip, self.newton_steps = dim, dim, bool(flip), check_size("newton_steps", newton_steps)
        self.params = _sylvester_parameters(dim, "triangular", None, self.context_shape, hidden, net)
        self.set_event((dim,))

    def transform(self, context: torch.Tensor) -> ConditionedTriangularSylvester:
        return ConditionedTriangularSylvester(*self.params(context), flip=self.flip, newton_steps=self.newton_steps)


# ----------------------------------------------------------------------------- factories

_KINDS = ("orthogonal", "householder", "triangular")


def _kind_options(kind: str, num_ortho_vecs: int | None, num_householder: int | None, flip: bool | None) -> dict:
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")
    given = {"num_ortho_vecs": num_ortho_vecs is not None, "num_householder": num_householder is not None, "flip": flip is not None}
    allowed = {"orthogonal": "num_ortho_vecs", "householder": "num_householder", "triangular": "flip"}[kind]
    wrong = [name for name, was_given in given.items() if was_given and name != allowed]
    if wrong:
        raise ValueError(f"{wrong[0]}: not an option of kind={kind!r} (its option is {allowed})")
    if kind == "orthogonal":
        return {"num_ortho_vecs": num_ortho_vecs}
    if kind == "householder":
        return {"num_householder": 8 if num_householder is None else num_householder}
    return {"flip": bool(flip)}


def sylvester(
    dim: int,
    kind: str = "orthogonal",
    num_ortho_vecs: int | None = None,
    num_householder: int | None = None,
    flip: bool | None = None,
) -> OrthogonalSylvester | HouseholderSylvester | TriangularSylvester:
    """One Sylvester layer on vectors of size ``dim``, initialised at the identity.

    ``kind="orthogonal"`` (option ``num_ortho_vecs``, default ``dim``), ``"householder"`` (option
    ``num_householder``, default 8) or ``"triangular"`` (option ``flip``, default ``False``).

    Example::

        >>> import pyro.distributions as dist
        >>> layers = [sylvester(2, "triangular", flip=i % 2 == 1) for i in range(4)]
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), layers)
        >>> d.log_prob(torch.randn(6, 2)).shape
        torch.Size([6])
    """
    options = _kind_options(kind, num_ortho_vecs, num_householder, flip)
    cls = {"orthogonal": OrthogonalSylvester, "householder": HouseholderSylvester, "triangular": TriangularSylvester}[kind]
    return cls(dim, **options)


def conditional_sylvester(
    dim: int,
    context_dim: int,
    kind: str = "orthogonal",
    hidden: Sequence[int] = (64,),
    num_ortho_vecs: int | None = None,
    num_householder: int | None = None,
    flip: bool | None = None,
) -> ConditionalOrthogonalSylvester | ConditionalHouseholderSylvester | ConditionalTriangularSylvester:
    """One amortised Sylvester layer: all its parameters are offsets from an MLP of the context
    (zero-initialised, so it starts at the identity). Options as in :func:`sylvester`."""
    options = _kind_options(kind, num_ortho_vecs, num_householder, flip)
    cls = {
        "orthogonal": ConditionalOrthogonalSylvester,
        "householder": ConditionalHouseholderSylvester,
        "triangular": ConditionalTriangularSylvester,
    }[kind]
    return cls(dim, context_dim, hidden=hidden, **options)
