"""How stable Pareto-k̂ and its verdict are over seeds, for the guides of ``docs/diagnostics.md``.

A diagonal normal and a coupling-flow guide are fitted to the banana of the docs page and to Neal's
funnel; each is then scored ``--seeds`` times at every draw count of ``--draws``: the point estimate
k̂, its bin (``k_category``) and the verdict from the bootstrap interval (``k_verdict``, a bin only
when the whole interval lies in it). The table in ``docs/diagnostics.md`` comes from

    python -m analyses.pareto_k_stability --draws 4000 20000 50000

and the rows are written to ``pareto_k_stability.csv`` in ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormalizingFlow
from pyro.optim import ClippedAdam
from tqdm.auto import tqdm

from analyses.posterior_diagnostics import banana, funnel
from pyroflows.diagnostics import k_category, k_verdict, pareto_k_from_log_weights, pareto_k_interval
from pyroflows.infer import log_importance_weights
from pyroflows.transforms import coupling_flow


def small_funnel() -> None:
    """The funnel of the docs page: :math:`v` and four :math:`x_i`."""
    funnel(5)


def fitted(model: Callable, guide: Callable, steps: int, lr: float, args: tuple = ()) -> Callable:
    """``guide`` after ``steps`` of SVI (8 particles, learning rate decaying tenfold), from seed 0."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    optim = ClippedAdam({"lr": lr, "clip_norm": 10.0, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(steps):
        svi.step(*args)
    return guide


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, nargs="+", default=[4000, 20000, 50000], help="draw counts")
    parser.add_argument("--seeds", type=int, default=5, help="scoring seeds per draw count")
    parser.add_argument("--out", type=Path, default=Path("results/pareto_k_stability"), help="output folder")
    args = parser.parse_args(argv)
    pyro.set_rng_seed(0)
    y = 0.99 + torch.randn(10)
    funnel_flow = partial(coupling_flow, num_blocks=4, hidden=(32, 32))
    guides = {
        "banana, diagonal": (banana, lambda: fitted(banana, AutoDiagonalNormal(banana), 400, 2e-2, (y,)), (y,)),
        "banana, coupling flow": (
            banana,
            lambda: fitted(banana, AutoNormalizingFlow(banana, partial(coupling_flow, num_blocks=2, hidden=(16, 16))), 400, 2e-2, (y,)),
            (y,),
        ),
        "funnel, diagonal": (small_funnel, lambda: fitted(small_funnel, AutoDiagonalNormal(small_funnel), 500, 1e-2), ()),
        "funnel, coupling flow": (
            small_funnel,
            lambda: fitted(small_funnel, AutoNormalizingFlow(small_funnel, funnel_flow), 600, 1e-2),
            (),
        ),
    }
    rows = []
    for name, (model, make, model_args) in tqdm(guides.items(), desc="guides", disable=None):
        guide = make()  # fitted and scored before the next guide clears the param store
        for draws in args.draws:
            for seed in range(args.seeds):
                torch.manual_seed(100 + seed)
                lw = log_importance_weights(model, guide, *model_args, num_samples=draws, chunk_size=10000, vectorize=True)
                low, high = pareto_k_interval(lw)
                k = pareto_k_from_log_weights(lw)
                verdict = k_verdict(low, high)
                rows.append(dict(guide=name, draws=draws, seed=seed, k=k, k_low=low, k_high=high, category=k_category(k), verdict=verdict))
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "pareto_k_stability.csv", index=False)
    print(table.groupby(["guide", "draws"])["verdict"].agg(lambda v: ", ".join(f"{k} ({n})" for k, n in v.value_counts().items())))
    return table


if __name__ == "__main__":
    main()
