"""pyroflows plugin for the peer coupling benchmark (``../shared/bench-peers/bench_coupling.py``).

Usage (from the repository root)::

    python ../shared/bench-peers/bench_coupling.py --plugin benchmarks/plugin_coupling.py

or ``benchmarks/run_coupling.sh``, which also writes the results under ``benchmarks/results/``.

Registered implementations (all timed in the same interleaved rounds as the peers):

``pyroflows_coupling``
    The peers' configuration, same math and the same FLOPs:
    ``coupling_flow(D, blocks, hidden=(H,), clamp=2.0, two_sided=False, permutation=cfg.perms)``
    (``conditional_coupling_flow(D, C, ...)`` with a context): per block one affine coupling
    (:class:`pyroflows.transforms.AffineCoupling` with the default conditioner, an MLP
    ``Linear(D/2 [+ C], H) - ReLU - Linear(H, D)``, i.e. one hidden layer of width ``H``; soft
    log-scale bound 2.0 as FrEIA's ``clamp=2.0`` and the floor's ``2 tanh(s / 2)``) followed by
    :class:`pyroflows.transforms.Permute` with the benchmark's permutation of that block, inside
    ``pyro.distributions.TransformedDistribution`` (unconditional) or
    :class:`pyroflows.distributions.ConditionalFlowDistribution` (conditional): the layout of
    Pyro's ``AffineCoupling`` + ``Permute`` peer.

``pyroflows_coupling_flow_2sided``
    The library's factory as a user calls it: ``coupling_flow(D, num_blocks, hidden=(H,))``
    (``conditional_coupling_flow`` with a context). Its blocks are *two-sided* (two couplings and
    a swap, then a random permutation), i.e. twice the subnet FLOPs of the one-sided peers; compare
    it with ``freia_glow_coupling``, the peer with the same layout.

``pyroflows_coupling_compiled``
    ``pyroflows_coupling``'s flow with its training step compiled whole by
    :func:`pyroflows.compile_step` (inductor; forward and backward as one graph, the optimiser step
    as another, ``compile_optimizer=True``) and its sampling call by :func:`pyroflows.compile_sampler`. The first calls compile;
    the harness's warm-up absorbs them.

All use the direction Pyro uses: the flow maps base samples to data, so ``log_prob`` runs the
inverse couplings and sampling runs the forward ones (FLOPs are the same either way).
Validation (the per-call NaN check) is switched off with ``pyroflows.set_validation(False)``.
"""

from __future__ import annotations

import os
import sys

import common  # the bench-peers helpers (importable: bench_coupling.py puts its folder on sys.path)
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

CLAMP = 2.0  # soft log-scale bound, as FrEIA's clamp=2.0 and the torch floor's 2 tanh(s / 2)


def _base(cfg):
    import pyro.distributions as dist

    return dist.Normal(torch.zeros(cfg.D), torch.ones(cfg.D)).to_event(1)


def _case(cfg, flow, notes, linears, compiled: bool = False):
    """Wire a pyroflows flow (a ComposeTransformModule or its conditional twin) into a Case."""
    import pyro.distributions as dist

    import pyroflows
    from pyroflows.distributions import ConditionalFlowDistribution

    pyroflows.set_validation(False)
    base = _base(cfg)
    opt = torch.optim.Adam([p for p in flow.parameters() if p.requires_grad], lr=cfg.lr)

    if cfg.C:
        cond = ConditionalFlowDistribution(base, [flow])

        def make(c):
            return cond.condition(c)
    else:

        def make(c):
            return dist.TransformedDistribution(base, [flow])

    def step():
        opt.zero_grad(set_to_none=True)
        # the same x object every step: pyroflows drops a cached (x, y) pair once the parameters changed,
        # so no fresh tensor object per call is needed (the Pyro peer passes x.detach() for that reason)
        loss = -make(cfg.c).log_prob(cfg.x).mean()
        loss.backward()
        opt.step()
        return loss

    def sample():
        with torch.no_grad():
            d = make(cfg.c)
            return d.sample() if cfg.C else d.sample((cfg.batch,))

    if compiled:
        compiled_step = pyroflows.compile_step(lambda x, c: -make(c).log_prob(x).mean(), opt, compile_optimizer=True)
        compiled_sampler = pyroflows.compile_sampler(cond if cfg.C else make(None))

        def step():
            return compiled_step(cfg.x, cfg.c)

        def sample():
            return compiled_sampler((), cfg.c) if cfg.C else compiled_sampler((cfg.batch,))

    extra = {"nominal_flops_step": 6.0 * cfg.batch * sum(i * o for i, o in linears)}
    # identity-init probe: pyroflows zero-initialises the last conditioner layer, so the fresh flow
    # (a deep copy of the timed one is not needed) must score exactly N(0, I)
    import copy
    import math

    fresh = copy.deepcopy(flow)
    for m in fresh.modules():
        if isinstance(m, torch.nn.Linear) and m.out_features == 2 * (cfg.D - cfg.D // 2):
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
    with torch.no_grad():
        d = ConditionalFlowDistribution(base, [fresh]).condition(cfg.c) if cfg.C else dist.TransformedDistribution(base, [fresh])
        lp = d.log_prob(cfg.x)
    ref = -0.5 * (cfg.x**2).sum(-1) - 0.5 * cfg.D * math.log(2 * math.pi)
    extra["identity_init_logprob_minus_normal"] = float((lp - ref).mean())
    return common.Case(step=step, sample=sample, params=common.count_params(flow), notes=notes, extra=extra)


def build_one_sided(cfg, compiled: bool = False):
    from pyroflows import transforms as T

    perms = [p.clone() for p in cfg.perms[: cfg.blocks]]
    kw = {"num_blocks": cfg.blocks, "hidden": (cfg.H,), "clamp": CLAMP, "two_sided": False, "permutation": perms}
    flow = T.conditional_coupling_flow(cfg.D, cfg.C, **kw) if cfg.C else T.coupling_flow(cfg.D, **kw)
    d1 = cfg.D // 2
    linears = [(d1 + cfg.C, cfg.H), (cfg.H, 2 * (cfg.D - d1))] * cfg.blocks
    notes = [
        (
            "pyroflows coupling_flow(two_sided=False, permutation=<given>): AffineCoupling (MLP conditioner, one "
            "hidden layer, soft clamp 2.0) + Permute per block, in TransformedDistribution / ConditionalFlowDistribution"
        )
    ]
    if compiled:
        notes.append("training step and sampling compiled by pyroflows.compile_step / compile_sampler (inductor)")
    return _case(cfg, flow, notes, linears, compiled=compiled)


def build_one_sided_compiled(cfg):
    return build_one_sided(cfg, compiled=True)


def build_factory_two_sided(cfg):
    from pyroflows import transforms as T

    if cfg.C:
        flow = T.conditional_coupling_flow(cfg.D, cfg.C, num_blocks=cfg.blocks, hidden=(cfg.H,), clamp=CLAMP, seed=cfg.seed)
    else:
        flow = T.coupling_flow(cfg.D, num_blocks=cfg.blocks, hidden=(cfg.H,), clamp=CLAMP, seed=cfg.seed)
    d1 = cfg.D // 2
    d2 = cfg.D - d1
    linears = [(d1 + cfg.C, cfg.H), (cfg.H, 2 * d2), (d2 + cfg.C, cfg.H), (cfg.H, 2 * d1)] * cfg.blocks
    notes = [
        (
            "pyroflows coupling_flow factory: two-sided blocks (2 couplings + swap + random permutation), "
            "2x the subnet FLOPs of the one-sided peers; compare with freia_glow_coupling"
        )
    ]
    return _case(cfg, flow, notes, linears)


def register(registry, bench_name):
    if bench_name == "coupling":
        registry.add("pyroflows_coupling", build_one_sided)
        registry.add("pyroflows_coupling_compiled", build_one_sided_compiled)
        registry.add("pyroflows_coupling_flow_2sided", build_factory_two_sided)
