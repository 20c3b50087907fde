"""pyroflows plugin for the peer planar / Sylvester benchmark (``../shared/bench-peers/bench_planar_sylvester.py``).

Usage (from the repository root)::

    python ../shared/bench-peers/bench_planar_sylvester.py --plugin benchmarks/plugin_planar_sylvester.py

or ``benchmarks/run_peers.sh planar_sylvester``, which also writes the results under ``benchmarks/results/``.

The step is the harness's guide-like step: ``z = d.rsample((B,))``, ``log q = d.log_prob(z)`` (the
same ``z``: the flow's kept ``(x, y, ladj)`` makes it free), loss ``mean(log q - log p(z))`` with
``p = N(1, I)``, backward, Adam. Validation is off: ``pyroflows.set_validation(False)``, and the
distributions are built with ``validate_args=False`` (Pyro turns torch's support checks on by default;
the Pyro peers keep them, about 1 ms of a 10 ms step here; normflows has none).

"main" group (shared parameters, like Pyro's and normflows' peers):

``pyroflows_planar``
    ``FlowSequence([planar(64)] * 16)`` in a ``TransformedDistribution`` (peers: ``pyro_planar``,
    ``normflows_planar``).
``pyroflows_sylvester_h8``
    4 x ``sylvester(64, "householder", num_householder=8)`` (peer: ``pyro_sylvester_h8``, whose
    log-det is wrong; ours is exact).
``pyroflows_sylvester_orthogonal_m8`` / ``pyroflows_sylvester_triangular``
    4 x ``sylvester(64, "orthogonal", num_ortho_vecs=8)`` / ``"triangular"`` with ``flip`` alternating
    (no non-amortised peer has these kinds; shown for scale).
``pyroflows_planar_amortized``
    16 x :class:`pyroflows.transforms.ConditionedPlanar` driven by per-sample leaf tensors
    ``u, w (B, 64)``, ``b (B, 1)`` per layer, the shapes of ``sylvflows_planar``'s leaves.

"amortized_sylvester" group (per-sample parameters, like the sylvester-flows modules):

``pyroflows_amortized_{orthogonal_m8,householder_h8,triangular}``
    4 x ``ConditionedOrthogonalSylvester`` / ``ConditionedHouseholderSylvester`` /
    ``ConditionedTriangularSylvester`` on per-sample leaf tensors with the
    element counts of the harness's ``sylvflows_*`` leaves: per layer ``r (B, M, M)``,
    ``d1, d2, b (B, M)`` and ``q`` = ``(B, 64, 8)`` columns (orthogonal) or ``(B, 8, 64)`` reflection
    vectors (Householder). Same initial scales as the harness (``r`` 0.05, diagonals 0.5, ``b`` 0.1,
    ``q`` 1). Differences, in the notes: ``b`` has shape ``(B, M)`` (the harness ``(B, 1, M)``), the
    leaves are one set per layer (the harness slices one ``(..., K)`` tensor), and the orthogonal kind
    computes the orthonormal polar factor (QR, then 8 scaled Newton steps on the triangle, no host
    synchronisation) instead of the harness's Björck loop (checked at every step, tolerance 1e-6).
"""

from __future__ import annotations

import os
import sys

import common  # the bench-peers helpers (importable: the bench script puts its folder on sys.path)
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


#: name suffix of the harness's sylvester-flows case of each kind
_SUFFIX = {"orthogonal": "orthogonal_m8", "householder": "householder_h8", "triangular": "triangular"}


def _target_logprob(z):
    return -0.5 * ((z - 1.0) ** 2).sum(-1)


def _guide_case(cfg, transforms, params, notes, peers):
    """The harness's guide-like step and sampling call for a pyroflows flow over N(0, I); ``peers``:
    the peer cases of the same configuration (``benchmarks/summarize.py`` compares with those)."""
    import pyro.distributions as dist

    import pyroflows
    from benchmarks.training_step import sampling_call, training_step
    from pyroflows.transforms.stacks import FlowSequence

    pyroflows.set_validation(False)
    base = dist.Normal(torch.zeros(cfg.D), torch.ones(cfg.D), validate_args=False).to_event(1)
    flow = FlowSequence(transforms)
    d = dist.TransformedDistribution(base, [flow], validate_args=False)
    opt = torch.optim.Adam(params, lr=1e-3)

    def loss():
        z = d.rsample((cfg.batch,))
        return (d.log_prob(z) - _target_logprob(z)).mean()

    step, sample = training_step(opt, loss), sampling_call(d, cfg.batch)
    return common.Case(step=step, sample=sample, params=sum(p.numel() for p in params), notes=notes, extra={"peers": list(peers)})


def _module_params(transforms):
    return [p for t in transforms for p in t.parameters() if p.requires_grad]


def build_planar(cfg):
    from pyroflows.transforms import planar

    ts = [planar(cfg.D) for _ in range(cfg.k_planar)]
    return _guide_case(
        cfg, ts, _module_params(ts), [f"K={cfg.k_planar}; pyroflows planar in FlowSequence"], ["normflows_planar", "pyro_planar"]
    )


def build_sylvester(kind):
    def build(cfg):
        from pyroflows.transforms import sylvester

        if kind == "householder":
            ts = [sylvester(cfg.D, "householder", num_householder=cfg.householder) for _ in range(cfg.k_sylv)]
            what = f"{cfg.householder} Householder reflections per layer (one Q per call)"
        elif kind == "orthogonal":
            ts = [sylvester(cfg.D, "orthogonal", num_ortho_vecs=cfg.ortho_vecs) for _ in range(cfg.k_sylv)]
            what = f"M={cfg.ortho_vecs} orthonormal columns (polar factor)"
        else:
            ts = [sylvester(cfg.D, "triangular", flip=k % 2 == 1) for k in range(cfg.k_sylv)]
            what = "Q alternates identity / reversal"
        return _guide_case(cfg, ts, _module_params(ts), [f"K={cfg.k_sylv}, non-amortised, {what}; exact log-det"], ["pyro_sylvester_h8"])

    return build


def _leaf(*shape, scale=1.0):
    return (scale * torch.randn(*shape)).requires_grad_(True)


def build_planar_amortized(cfg):
    from pyroflows.transforms import ConditionedPlanar

    B, D = cfg.batch, cfg.D
    leaves = [(_leaf(B, D, scale=0.1), _leaf(B, D, scale=0.1), _leaf(B, 1, scale=0.1)) for _ in range(cfg.k_planar)]
    ts = [ConditionedPlanar(*p) for p in leaves]
    params = [t for p in leaves for t in p]
    note = (
        f"K={cfg.k_planar}; ConditionedPlanar on per-sample leaves u, w (B, D), b (B, 1) (sylvflows_planar's "
        "shapes; u is reparameterised to u_hat as in the library)"
    )
    return _guide_case(cfg, ts, params, [note], ["sylvflows_planar"])


def build_amortized(kind):
    def build(cfg):
        from pyroflows.transforms import (
            ConditionedHouseholderSylvester,
            ConditionedOrthogonalSylvester,
            ConditionedTriangularSylvester,
        )

        B, D, K = cfg.batch, cfg.D, cfg.k_sylv
        M = cfg.ortho_vecs if kind == "orthogonal" else D
        ts, params = [], []
        for k in range(K):
            if kind == "orthogonal":
                q = _leaf(B, D, M)
            elif kind == "householder":
                q = _leaf(B, cfg.householder, D)
            else:
                q = None
            raw = (q, _leaf(B, M, M, scale=0.05), _leaf(B, M, scale=0.5), _leaf(B, M, scale=0.5), _leaf(B, M, scale=0.1))
            params += [p for p in raw if p is not None]
            if kind == "orthogonal":
                ts.append(ConditionedOrthogonalSylvester(*raw))
            elif kind == "householder":
                ts.append(ConditionedHouseholderSylvester(*raw))
            else:
                ts.append(ConditionedTriangularSylvester(*raw[1:], flip=k % 2 == 1))
        notes = [
            f"K={K}; per-sample leaves per layer: r (B, M, M), d1, d2, b (B, M)"
            + {
                "orthogonal": f", q (B, D, {M}) orthonormalised as its polar factor (QR and 8 Newton steps)",
                "householder": f", {cfg.householder} reflection vectors (B, {cfg.householder}, D) applied as reflections (Q never formed)",
                "triangular": "; Q alternates identity / reversal",
            }[kind]
        ]
        return _guide_case(cfg, ts, params, notes, ["sylvflows_" + _SUFFIX[kind]])

    return build


def register(registry, bench_name):
    if bench_name != "planar_sylvester":
        return
    registry.add("pyroflows_planar", build_planar)
    registry.add("pyroflows_planar_amortized", build_planar_amortized)
    registry.add("pyroflows_sylvester_h8", build_sylvester("householder"))
    registry.add("pyroflows_sylvester_orthogonal_m8", build_sylvester("orthogonal"))
    registry.add("pyroflows_sylvester_triangular", build_sylvester("triangular"))
    for kind, suffix in _SUFFIX.items():
        registry.add(f"pyroflows_amortized_{suffix}", build_amortized(kind), group="amortized_sylvester")
