"""pyroflows plugin for the peer FFJORD benchmark (``../shared/bench-peers/bench_ffjord.py``).

Usage (from the repository root)::

    python ../shared/bench-peers/bench_ffjord.py --plugin benchmarks/plugin_ffjord.py

or ``benchmarks/run_peers.sh ffjord``, which also writes the results under ``benchmarks/results/``.

The harness's configuration: ``cnf(D, hidden=(64, 64, 64), activation="tanh", time=0.5,
learn_time=True, trace="hutchinson", noise="rademacher", method="dopri5", atol=1e-5, rtol=1e-5,
norm="rms")`` (:class:`pyroflows.transforms.CNF` with :class:`pyroflows.nn.ConcatSquashNet`
dynamics: every layer ``Linear(h) * sigmoid(G t + g) + B t``, tanh between layers, the last layer
zeroed), inside ``TransformedDistribution(N(0, I), [cnf])``; Adam (lr 1e-3, weight decay 1e-5).
One Rademacher probe per solve, held fixed through it.

``pyroflows_cnf_rademacher``
    ``adjoint=False``: backpropagation through the solver's steps, as the fastest peer
    ``tdiffeq_plain_rademacher``.
``pyroflows_cnf_adjoint_rademacher``
    ``adjoint=True`` (``torchdiffeq.odeint_adjoint``), as ``tdiffeq_adjoint_rademacher`` and
    rtqichen/ffjord.

Differences from the peers (in the cases' notes): the error norm is set to ``"rms"``, torchdiffeq's
default that the peers use (pyroflows' default ``"max"`` is stricter and takes more steps); the
solve runs on the normalised time ``s = t / T`` in [0, 1] with the right-hand side ``T f(z, sT)``
(the same ODE) and ``T = softplus(tau)`` (the peers ``T = sqrt_T ** 2``); adaptive steps land on the
end time instead of interpolating past it; ``log_prob`` integrates from the data at ``t = T`` back to
``t = 0`` (Pyro's direction: the flow maps base samples to data), the peers from 0 to T on the
mirrored ODE. The sampling call also integrates the log-det (pyroflows' transforms always return it);
the peers integrate the state only.
Validation off (``pyroflows.set_validation(False)``, distributions with ``validate_args=False``).
NFE counters: ``nfe_forward`` / ``nfe_backward`` of the CNF (the harness's fwd/bwd columns).
"""

from __future__ import annotations

import os
import sys

import common  # the bench-peers helpers (importable: bench_ffjord.py puts its folder on sys.path)
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

HIDDEN = (64, 64, 64)


def _build(adjoint):
    def build(cfg):
        import pyro.distributions as dist

        import pyroflows
        from pyroflows.transforms import cnf

        pyroflows.set_validation(False)
        flow = cnf(
            cfg.dim,
            hidden=HIDDEN,
            activation="tanh",
            time=0.5,
            learn_time=True,
            trace="hutchinson",
            noise="rademacher",
            method="dopri5",
            atol=1e-5,
            rtol=1e-5,
            norm="rms",
            adjoint=adjoint,
        )
        base = dist.Normal(torch.zeros(cfg.dim), torch.ones(cfg.dim), validate_args=False).to_event(1)
        d = dist.TransformedDistribution(base, [flow], validate_args=False)
        opt = torch.optim.Adam([p for p in flow.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-5)
        last = {}

        def step():
            opt.zero_grad(set_to_none=True)
            flow.reset_nfe()
            loss = -d.log_prob(cfg.x).mean()
            last["nfe_fwd"] = flow.nfe_forward
            loss.backward()
            last["nfe_bwd"] = flow.nfe_backward
            opt.step()
            return loss

        def sample():
            flow.reset_nfe()
            with torch.no_grad():
                out = d.sample((cfg.batch,))
            last["nfe_sample"] = flow.nfe_forward
            return out

        solver = "odeint_adjoint" if adjoint else "odeint (backprop through solver)"
        notes = [
            (
                f"pyroflows cnf, {solver}; Hutchinson Rademacher; norm='rms' (the peers' torchdiffeq default); solve on "
                "s = t/T in [0, 1]; steps land on the end time; sampling also integrates the log-det"
            )
        ]
        return common.Case(
            step=step,
            sample=sample,
            params=common.count_params(flow),
            notes=notes,
            read_counters=lambda: dict(last),
            reset_counters=last.clear,
        )

    return build


def register(registry, bench_name):
    if bench_name == "ffjord":
        registry.add("pyroflows_cnf_rademacher", _build(False))
        registry.add("pyroflows_cnf_adjoint_rademacher", _build(True))
