"""Neural spline and autoregressive flows against zuko and Pyro, in interleaved rounds.

Three configurations, each timed with the peers in the same rounds (every implementation once per
round, in a rotating order), with thread CPU time at one torch thread as ``cpu_time.py`` does (a
machine shared with other jobs):

``spline_coupling``
    pyroflows ``spline_coupling_flow(D, blocks, hidden, count_bins=8, bound=5, two_sided=False)``;
    ``zuko.flows.NSF(D, bins=8, transforms=blocks, hidden_features=hidden, passes=2)`` (zuko's
    coupling form); Pyro's ``spline_coupling(D, hidden_dims=hidden, count_bins=8, bound=5)`` with a
    ``Permute`` after each layer.
``spline_autoregressive``
    pyroflows ``spline_autoregressive(D, hidden, cheap="inverse")`` layers with a reverse
    permutation after each; ``zuko.flows.NSF(..., passes=None)`` (fully autoregressive); Pyro's
    ``spline_autoregressive(D, hidden, count_bins=8, bound=5)`` used through ``.inv`` so that
    ``log_prob`` runs its one-pass direction, as zuko's and ours do.
``maf``
    pyroflows ``maf(D, blocks, hidden)``; ``zuko.flows.MAF(D, transforms=blocks,
    hidden_features=hidden)``; Pyro's ``affine_autoregressive(D, hidden)`` through ``.inv``.

``--compiled`` adds, for each pyroflows case ``k``, ``k_compiled``: the same flow with its training
step compiled by :func:`pyroflows.compile_step` (inductor; the first call compiles, in the
warm-up, which can take a minute or more); its sampling call stays eager.

``--direction density`` times pyroflows' spline flows the way zuko's run: the flow enters the
distribution as ``flow.inv``, so ``log_prob`` evaluates the splines' closed form (the coupling
flow with ``transform_passive=True``, zuko's layout at the same size; the autoregressive layers
with ``cheap="forward"``). ``--direction both`` times both, as ``pyroflows`` (Pyro's direction)
and ``pyroflows_density``, in the same rounds.

**step**: zero_grad + mean negative log-likelihood of the batch + backward + Adam step.
**sample**: one sampling call of ``batch`` points under ``no_grad`` (D network passes per layer for
the autoregressive flows, in every library). Ratios are pyroflows over the fastest peer, inside
one run.

    python benchmarks/everyday_flows.py [--dim 8] [--batch 512] [--blocks 4] [--hidden 64,64]
        [--rounds 5] [--only spline_coupling,maf] [--json benchmarks/results/everyday_flows.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BOUND = 5.0  # zuko's fixed spline interval, used by all three libraries here
BINS = 8


def _data(dim: int, batch: int, seed: int) -> torch.Tensor:
    """8 Gaussians on a circle of radius 2 in the first two dims, standard Normal padding after."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 8, (batch,), generator=g)
    angle = k.float() * (torch.pi / 4)
    x = torch.randn(batch, dim, generator=g)
    x[:, 0] = 2 * angle.cos() + 0.1 * x[:, 0]
    x[:, 1] = 2 * angle.sin() + 0.1 * x[:, 1]
    return x


class Case:
    """A training step and a sampling call of one implementation."""

    def __init__(self, params, log_prob, sample, fresh_input: bool = False) -> None:
        self.opt = torch.optim.Adam(list(params), lr=1e-3)
        self.log_prob, self.sample_fn, self.fresh_input = log_prob, sample, fresh_input

    def step(self, x: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        # Pyro's transforms reuse a cached (x, y) pair for the same tensor object: a fresh one per step
        loss = -self.log_prob(x.detach() if self.fresh_input else x).mean()
        loss.backward()
        self.opt.step()

    def sample(self, n: int) -> None:
        with torch.no_grad():
            self.sample_fn(n)


class CompiledCase(Case):
    """``case`` (its flow, optimiser and sampling) with the training step compiled whole by
    :func:`pyroflows.compile_step`."""

    def __init__(self, case: Case) -> None:
        import pyroflows

        vars(self).update(vars(case))
        self.compiled_step = pyroflows.compile_step(lambda x: -self.log_prob(x).mean(), self.opt)

    def step(self, x: torch.Tensor) -> None:
        self.compiled_step(x)


def _pyro_case(parts, dim):
    import pyro.distributions as dist

    d = dist.TransformedDistribution(dist.Normal(torch.zeros(dim), 1.0).to_event(1), parts)
    params = [p for t in parts for p in getattr(t, "parameters", lambda: [])()]
    params += [p for t in parts if hasattr(t, "_inv") and isinstance(t._inv, torch.nn.Module) for p in t._inv.parameters()]
    return Case(params, d.log_prob, lambda n: d.sample((n,)), fresh_input=True)


def _zuko_case(flow):
    return Case(flow.parameters(), lambda x: flow().log_prob(x), lambda n: flow().sample((n,)))


def _ours_case(flow, dim, density: bool = False):
    import pyro.distributions as dist

    import pyroflows

    pyroflows.set_validation(False)
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(dim), 1.0).to_event(1), [flow.inv if density else flow])
    return Case(list(flow.parameters()), d.log_prob, lambda n: d.sample((n,)))


def _pyro_stack(make, dim, blocks, inverse):
    from pyro.distributions.transforms import Permute

    parts = []
    for _ in range(blocks):
        layer = make()
        parts += [layer.inv if inverse else layer, Permute(torch.arange(dim - 1, -1, -1))]
    return parts


def build(config: str, dim: int, blocks: int, hidden: tuple, direction: str = "sampling", compiled: bool = False) -> dict:
    import pyro.distributions.transforms as PT
    import zuko

    import pyroflows.transforms as T
    from pyroflows.transforms.stacks import FlowSequence

    out = {}
    ours = {"sampling": ["pyroflows"], "density": ["pyroflows_density"], "both": ["pyroflows", "pyroflows_density"]}[direction]
    if config == "spline_coupling":
        if "pyroflows" in ours:
            out["pyroflows"] = lambda: _ours_case(
                T.spline_coupling_flow(dim, blocks, hidden, count_bins=BINS, bound=BOUND, permutation="reverse"), dim
            )
        if "pyroflows_density" in ours:
            out["pyroflows_density"] = lambda: _ours_case(
                T.spline_coupling_flow(dim, blocks, hidden, count_bins=BINS, bound=BOUND, permutation="reverse", transform_passive=True),
                dim,
                density=True,
            )
        out["zuko_nsf_coupling"] = lambda: _zuko_case(zuko.flows.NSF(dim, bins=BINS, transforms=blocks, hidden_features=hidden, passes=2))
        out["pyro_spline_coupling"] = lambda: _pyro_case(
            _pyro_stack(lambda: PT.spline_coupling(dim, hidden_dims=list(hidden), count_bins=BINS, bound=BOUND), dim, blocks, False), dim
        )
    elif config == "spline_autoregressive":

        def autoregressive(cheap):
            layers = (T.spline_autoregressive(dim, hidden, cheap, count_bins=BINS, bound=BOUND) for _ in range(blocks))
            return FlowSequence([p for layer in layers for p in (layer, T.permute(dim, "reverse"))])

        if "pyroflows" in ours:
            out["pyroflows"] = lambda: _ours_case(autoregressive("inverse"), dim)
        if "pyroflows_density" in ours:
            out["pyroflows_density"] = lambda: _ours_case(autoregressive("forward"), dim, density=True)
        out["zuko_nsf"] = lambda: _zuko_case(zuko.flows.NSF(dim, bins=BINS, transforms=blocks, hidden_features=hidden))
        out["pyro_spline_autoregressive"] = lambda: _pyro_case(
            _pyro_stack(lambda: PT.spline_autoregressive(dim, hidden_dims=list(hidden), count_bins=BINS, bound=BOUND), dim, blocks, True),
            dim,
        )
    elif config == "maf":
        out["pyroflows"] = lambda: _ours_case(T.maf(dim, blocks, hidden), dim)
        out["zuko_maf"] = lambda: _zuko_case(zuko.flows.MAF(dim, transforms=blocks, hidden_features=hidden))
        out["pyro_affine_autoregressive"] = lambda: _pyro_case(
            _pyro_stack(lambda: PT.affine_autoregressive(dim, hidden_dims=list(hidden)), dim, blocks, True), dim
        )
    if compiled:  # the same builders again, with the step compiled
        for k in [k for k in out if k.startswith("pyroflows")]:
            out[f"{k}_compiled"] = _compiled(out[k])
    return out


def _compiled(make):
    """``make``'s case, its training step compiled."""
    return lambda: CompiledCase(make())


def _cpu(fn, number: int) -> float:
    t = time.thread_time()
    for _ in range(number):
        fn()
    return (time.thread_time() - t) / number


def run(cases: dict, x: torch.Tensor, rounds: int, target: float) -> dict:
    n = x.shape[0]
    for c in cases.values():  # warm up
        c.step(x)
        c.sample(n)
    number = {
        k: (
            max(1, int(target / max(_cpu(lambda c=c: c.step(x), 1), 1e-6))),
            max(1, int(target / max(_cpu(lambda c=c: c.sample(n), 1), 1e-6))),
        )
        for k, c in cases.items()
    }
    order = list(cases)
    res = {k: {"step": [], "sample": []} for k in order}
    for r in range(rounds):
        k0 = r % len(order)
        for k in order[k0:] + order[:k0]:
            gc.collect()
            res[k]["step"].append(_cpu(lambda k=k: cases[k].step(x), number[k][0]))
            gc.collect()
            res[k]["sample"].append(_cpu(lambda k=k: cases[k].sample(n), number[k][1]))
    return res


def table(res: dict) -> str:
    med = {k: {w: statistics.median(v[w]) for w in ("step", "sample")} for k, v in res.items()}
    ours = [k for k in med if k.startswith("pyroflows")]
    peers = [k for k in med if k not in ours]
    lines = ["| impl | step CPU ms | sample CPU ms |", "|---|---|---|"]
    for k in sorted(med, key=lambda k: med[k]["step"]):
        lines.append(f"| {'**' + k + '**' if k in ours else '`' + k + '`'} | {med[k]['step'] * 1e3:.2f} | {med[k]['sample'] * 1e3:.2f} |")
    for k in ours if peers else []:
        for w in ("step", "sample"):
            best = min(peers, key=lambda p: med[p][w])
            lines.append(f"\n{k} / fastest peer ({best}), {w}: {med[k][w] / med[best][w]:.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--target", type=float, default=0.05, help="CPU seconds per timing sample")
    p.add_argument("--only", default="spline_coupling,spline_autoregressive,maf")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--direction", choices=("sampling", "density", "both"), default="sampling", help="pyroflows' spline flows")
    p.add_argument("--compiled", action="store_true", help="also time each pyroflows case with its step compiled")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    x = _data(args.dim, args.batch, args.seed)
    out = {"args": vars(args), "torch": torch.__version__, "clock": "time.thread_time, 1 torch thread", "results": {}}
    for config in args.only.split(","):
        torch.manual_seed(args.seed)
        makers = build(config, args.dim, args.blocks, hidden, args.direction, args.compiled)
        cases = {k: make() for k, make in makers.items()}
        res = run(cases, x, args.rounds, args.target)
        out["results"][config] = res
        print(f"\n### {config}: D={args.dim}, batch {args.batch}, {args.blocks} layers, hidden {hidden}, {args.rounds} rounds")
        print(table(res))
        sys.stdout.flush()
    out["loadavg_end"] = os.getloadavg()
    print(f"\nload average at end {out['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
