"""A compiled training step against the eager one, on two of the peer benchmarks' flows.

``--flow coupling`` (default): the coupling benchmark's configuration 1a (16-D, 8 one-sided affine
couplings with hidden width 256 and fixed random permutations, soft clamp 2) on Normal data.
``--flow glow``: the Glow benchmark's 1x16x16 flow (2 levels of 4 steps, hidden width 64, Glow's
sigmoid scale) on uniform images, its ActNorm initialised by one eager pass.

The flow is built twice from the same seed; one trains eagerly, the other through
:func:`pyroflows.compile_step` (inductor by default). After the compile and a warm-up, both are
timed in interleaved rounds with thread CPU time at one torch thread, and the matmul calls of one
step of each are counted with ``torch.profiler`` (convolutions are not counted).

    python benchmarks/compile_step.py [--flow coupling|glow] [--batch 1600] [--rounds 9] [--backend inductor]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro.distributions as dist
import torch
from torch.profiler import ProfilerActivity, profile

import pyroflows
from pyroflows.flows import glow
from pyroflows.transforms import coupling_flow

D, H, BLOCKS = 16, 256, 8


def matmul_calls(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", choices=("coupling", "glow"), default="coupling")
    parser.add_argument("--batch", type=int, default=None, help="default: 1600 (coupling), 64 (glow)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pyroflows.set_validation(False)
    g = torch.Generator().manual_seed(0)
    if args.flow == "coupling":
        x = torch.randn(args.batch or 1600, D, generator=g)
        perms = [torch.randperm(D, generator=g) for _ in range(BLOCKS)]
        event = (D,)
    else:
        x = torch.rand(args.batch or 64, 1, 16, 16, generator=g)
        event = (1, 16, 16)
    base = dist.Normal(torch.zeros(event), torch.ones(event), validate_args=False).to_event(len(event))

    def make():
        torch.manual_seed(0)
        if args.flow == "coupling":
            flow = coupling_flow(D, BLOCKS, hidden=(H,), clamp=2.0, two_sided=False, permutation=[p.clone() for p in perms])
        else:
            flow = glow(event, num_levels=2, num_steps=4, hidden_channels=64, scale="sigmoid")
        d = dist.TransformedDistribution(base, [flow], validate_args=False)
        with torch.no_grad():
            d.log_prob(x)  # data-dependent initialisation (ActNorm), eagerly
        return d, torch.optim.Adam(flow.parameters(), lr=1e-3)

    eager_d, eager_opt = make()
    d, opt = make()

    def eager():
        eager_opt.zero_grad(set_to_none=True)
        loss = -eager_d.log_prob(x).mean()
        loss.backward()
        eager_opt.step()

    compiled = pyroflows.compile_step(lambda v: -d.log_prob(v).mean(), opt, backend=args.backend)
    start = time.perf_counter()
    compiled(x)
    print(f"first call (compiles): {time.perf_counter() - start:.1f} s wall; compiled: {compiled.compiled}")
    cases = {"eager": eager, "compiled": lambda: compiled(x)}
    for fn in cases.values():  # warm-up
        for _ in range(3):
            fn()
    number = max(1, 2000 // len(x)) if args.flow == "coupling" else 1
    times = {k: [] for k in cases}
    for r in range(args.rounds):
        for k in list(cases) if r % 2 else list(cases)[::-1]:
            t = time.thread_time()
            for _ in range(number):
                cases[k]()
            times[k].append((time.thread_time() - t) / number)
    for k, v in times.items():
        print(
            f"{k}: step {statistics.median(v) * 1e3:.2f} ms CPU (median of {args.rounds}); matmul calls per step {matmul_calls(cases[k])}"
        )
    ratios = [c / e for c, e in zip(times["compiled"], times["eager"], strict=True)]
    print(f"compiled / eager, per round: median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
