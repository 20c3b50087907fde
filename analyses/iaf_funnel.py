"""pyroflows' IAF as a guide next to Pyro's ``AutoIAFNormal``, on Neal's funnel in 10 dimensions.

Both guides have the same size (``--blocks`` autoregressive layers, MADE conditioners with hidden
widths ``--hidden``) and are fitted from the same seed with the same SVI settings (8 vectorised
particles, Pyro's ``ClippedAdam`` with a learning rate decaying tenfold over ``--steps``). The ELBO
is then estimated with 20 000 draws (five batches of 4000; its standard error from the batches).
The funnel's density is normalised, so the ELBO is minus the KL divergence from the guide to the
posterior: 0 at best.

    python -m analyses.iaf_funnel                      # seeds 0, 1, 2; 1000 steps each
    python -m analyses.iaf_funnel --steps 200 --seeds 0

Writes ``comparison.csv`` (one row per seed and guide) to ``--out`` and prints it with the mean
over seeds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoIAFNormal, AutoNormalizingFlow

from analyses.posterior_diagnostics import funnel  # 10-D: v and nine x_i
from pyroflows.transforms import iaf


def guides(blocks: int, hidden: tuple[int, ...]) -> dict[str, Callable]:
    """The two guides of the same size, by name."""
    return {
        "Pyro AutoIAFNormal": lambda: AutoIAFNormal(funnel, hidden_dim=list(hidden), num_transforms=blocks),
        "pyroflows iaf": lambda: AutoNormalizingFlow(funnel, partial(iaf, num_blocks=blocks, hidden=hidden)),
    }


def fit_and_score(make: Callable, seed: int, steps: int, lr: float, draws: int = 20_000) -> dict:
    """Fit the guide ``make()`` to the funnel and estimate its ELBO with ``draws`` draws."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = make()
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(funnel, guide, optim, Trace_ELBO(num_particles=8, vectorize_particles=True))
    cpu = time.process_time()
    for _ in range(steps):
        svi.step()
    cpu = time.process_time() - cpu
    batches = 5
    estimate = Trace_ELBO(num_particles=draws // batches, vectorize_particles=True)
    with torch.no_grad():
        elbos = torch.tensor([-estimate.loss(funnel, guide) for _ in range(batches)], dtype=torch.float64)
    return {"elbo": elbos.mean().item(), "elbo_se": (elbos.std() / batches**0.5).item(), "train_cpu_seconds": round(cpu, 1)}


def compare(seeds: list[int], steps: int, blocks: int = 2, hidden: tuple[int, ...] = (32, 32), lr: float = 5e-3) -> pd.DataFrame:
    """One row per seed and guide: the estimated ELBO, its standard error and the training CPU time."""
    rows = []
    for seed in seeds:
        for name, make in guides(blocks, hidden).items():
            rows.append({"seed": seed, "guide": name} | fit_and_score(make, seed, steps, lr))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--out", type=Path, default=Path("results/iaf_funnel"))
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small steps: one thread is fastest and leaves the machine to others
    try:
        table = compare(args.seeds, args.steps, args.blocks, tuple(args.hidden), args.lr)
    finally:
        torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "comparison.csv", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\nmean ELBO over seeds:")
    print(table.groupby("guide")["elbo"].agg(["mean", "std"]).to_string(float_format=lambda v: f"{v:.4f}"))
    return table


if __name__ == "__main__":
    main()
