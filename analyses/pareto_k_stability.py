"""How stable Pareto-k̂ and its verdicts are over seeds, for the guides of ``docs/diagnostics.md``.

A diagonal normal and a coupling-flow guide are fitted to the banana of the docs page and to Neal's
funnel; each is then scored ``--seeds`` times (draw seeds 100, 101, ...):

- at the defaults of ``pareto_k_reliability`` (4000 draws, doubling until two looks in a row
  agree, at most 4096000): the reliability verdict ("reliable", "unreliable" or "undecided", from the asymmetric
  bootstrap bounds of ``RELIABILITY_TAILS``), the draws it took and k̂ at those draws; printed per
  guide with whether the verdicts agree over the seeds (``--max-draws``, ``--start-draws`` change
  the schedule);
- at every fixed draw count of ``--draws`` (none by default): the point estimate k̂, its bin
  (``k_category``), the 4-bin verdict of the 90 % bootstrap interval (``k_verdict``) and the
  reliability verdict at those draws.

The tables in ``docs/diagnostics.md`` come from

    python -m analyses.pareto_k_stability
    python -m analyses.pareto_k_stability --draws 4000 20000 50000

and the rows are written to ``pareto_k_reliability.csv`` and ``pareto_k_stability.csv`` in ``--out``.
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
from pyroflows.diagnostics import (
    RELIABILITY_TAILS,
    k_category,
    k_reliability,
    k_verdict,
    pareto_k_from_log_weights,
    pareto_k_interval,
    pareto_k_reliability,
)
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


def agreement(rows: pd.DataFrame, by: list[str], column: str) -> pd.DataFrame:
    """Per group of ``by``: the verdicts of ``column`` over the seeds, in seed order, and whether they agree."""
    return rows.groupby(by, sort=False)[column].agg(verdicts=lambda v: ", ".join(v), agree=lambda v: v.nunique() == 1)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, nargs="*", default=[], help="fixed draw counts to score as well")
    parser.add_argument("--start-draws", type=int, default=4000, help="draws of the first look of the reliability verdict")
    parser.add_argument("--max-draws", type=int, default=4096000, help="cap on the draws of the reliability verdict")
    parser.add_argument("--seeds", type=int, default=5, help="scoring seeds")
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
    decided, rows = [], []
    for name, (model, make, model_args) in tqdm(guides.items(), desc="guides", disable=None):
        guide = make()  # fitted and scored before the next guide clears the param store
        for seed in range(args.seeds):
            torch.manual_seed(100 + seed)
            result = pareto_k_reliability(
                model, guide, *model_args, num_samples=args.start_draws, max_samples=args.max_draws, chunk_size=10000, vectorize=True
            )
            found = dict(reliability=result.reliability, draws=result.draws, k=result.k, k_low=result.low, k_high=result.high)
            decided.append(dict(guide=name, seed=seed, **found))
        for draws in args.draws:
            for seed in range(args.seeds):
                torch.manual_seed(100 + seed)
                lw = log_importance_weights(model, guide, *model_args, num_samples=draws, chunk_size=10000, vectorize=True)
                low, high = pareto_k_interval(lw)
                lower, upper = pareto_k_interval(lw, tails=RELIABILITY_TAILS)
                k = pareto_k_from_log_weights(lw)
                rows.append(
                    dict(
                        guide=name,
                        draws=draws,
                        seed=seed,
                        k=k,
                        k_low=low,
                        k_high=high,
                        category=k_category(k),
                        verdict=k_verdict(low, high),
                        reliability=k_reliability(lower, upper, draws),
                    )
                )
    args.out.mkdir(parents=True, exist_ok=True)
    decided = pd.DataFrame(decided)
    decided.to_csv(args.out / "pareto_k_reliability.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        summary = agreement(decided, ["guide"], "reliability")
        summary.insert(1, "draws", decided.groupby("guide", sort=False)["draws"].agg(lambda v: ", ".join(map(str, v))))
        summary.insert(2, "k", decided.groupby("guide", sort=False)["k"].agg(lambda v: ", ".join(f"{x:.2f}" for x in v)))
        print(f"reliability verdict, {args.start_draws} draws doubling to at most {args.max_draws}, seeds 100..{99 + args.seeds}:")
        print(summary)
        if rows:
            table = pd.DataFrame(rows)
            table.to_csv(args.out / "pareto_k_stability.csv", index=False)
            print("\nat fixed draw counts:")
            by = ["guide", "draws"]
            print(agreement(table, by, "verdict").join(agreement(table, by, "reliability"), rsuffix="_reliability"))
    return decided


if __name__ == "__main__":
    main()
