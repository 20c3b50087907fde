"""pyroflows plugin for the peer Glow benchmark (``../shared/bench-peers/bench_glow.py``).

Usage (from the repository root)::

    python ../shared/bench-peers/bench_glow.py --plugin benchmarks/plugin_glow.py

or ``benchmarks/run_peers.sh glow``, which also writes the results under ``benchmarks/results/``.

``pyroflows_glow``
    ``glow((C, H, W), num_levels=L, num_steps=4, hidden_channels=64, scale="sigmoid")`` (L = 2 for
    1x16x16, 3 for 3x32x32: the harness's ``cfg.levels``) and its ``distribution()``, a
    ``TransformedDistribution`` over a standard Normal. Per level: squeeze, 4 Glow steps (ActNorm,
    LU 1x1 convolution, affine coupling with Glow's ``sigmoid(h + 2)`` scale and the coupling network
    conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3 of width 64, the peers' network), then
    half the channels factored out. Step: ``-log_prob(x).mean()``, backward, Adam; sampling: 64 images.

Difference from the peers, in the case's notes: pyroflows' multi-scale Glow always has Glow's
learned priors, one zero-initialised 3x3 convolution per split (``h -> [log sigma, mu]`` of the
factored-out half) and a learned per-channel top prior, where the peers score every level with a
fixed N(0, I). At initialisation they are the standard Normal; they add one small convolution per
split level (about 1 % of the step's FLOPs here). Validation is off (``pyroflows.set_validation(False)``,
and the distribution is ``flow.distribution()`` built with ``validate_args=False``).
"""

from __future__ import annotations

import os
import sys

import common  # the bench-peers helpers (importable: bench_glow.py puts its folder on sys.path)
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def build_glow(cfg):
    import math

    import pyroflows
    from benchmarks.training_step import sampling_call, training_step
    from pyroflows.flows import glow

    pyroflows.set_validation(False)
    import pyro.distributions as dist

    flow = glow(tuple(cfg.shape), num_levels=cfg.levels, num_steps=cfg.k, hidden_channels=cfg.hidden, scale="sigmoid")
    # flow.distribution() without torch's support checks (Pyro turns them on by default; the peers have none)
    base = dist.Normal(torch.zeros(cfg.shape), torch.ones(cfg.shape), validate_args=False).to_event(len(cfg.shape))
    d = dist.TransformedDistribution(base, [flow], validate_args=False)
    opt = torch.optim.Adam([p for p in flow.parameters() if p.requires_grad], lr=1e-3)
    with torch.no_grad():  # first call: data-dependent ActNorm initialisation, as the peers' cases do
        nll = -d.log_prob(cfg.x).mean().item()

    step = training_step(opt, lambda: -d.log_prob(cfg.x).mean())
    sample = sampling_call(d, cfg.batch)
    call = f"glow({tuple(cfg.shape)}, num_levels={cfg.levels}, num_steps={cfg.k}, hidden_channels={cfg.hidden}, scale='sigmoid')"
    notes = [
        call + ": ActNorm (data-initialised) + LU 1x1 conv + affine coupling sigmoid(h + 2); learned split priors "
        "(one zero-initialised 3x3 conv per split) and top prior instead of the peers' fixed N(0, I)"
    ]
    extra = {"init_nll_bits_per_dim": nll / (math.prod(cfg.shape) * math.log(2.0))}
    return common.Case(step=step, sample=sample, params=common.count_params(flow), notes=notes, extra=extra)


def register(registry, bench_name):
    if bench_name == "glow":
        registry.add("pyroflows_glow", build_glow)
