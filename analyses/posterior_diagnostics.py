r"""Flow guides on three awkward posteriors, checked against NUTS through ArviZ.

Models (all in :func:`problems`):

* ``funnel``: Neal's funnel, :math:`v \sim \mathcal N(0, 3^2)`,
  :math:`x_i \mid v \sim \mathcal N(0, e^{v})`, :math:`i = 1..9`, no data. Its exact draws are
  cheap, so the table has an ``exact`` row too; :math:`\log p(x) = 0`, so :math:`-\mathrm{ELBO}`
  is :math:`\mathrm{KL}(q \,\Vert\, p)`. The centred funnel is hard for NUTS as well: its neck
  (:math:`v \ll 0`) is rarely reached, so NUTS's :math:`v` spread is too small.
* ``banana``: :math:`\theta_1, \theta_2 \sim \mathcal N(0, 1)`,
  :math:`y_j \sim \mathcal N(\theta_1 + \theta_2^2, 1)`, 20 simulated points: the data pin only
  :math:`\theta_1 + \theta_2^2`, a curved ridge.
* ``schools``: the non-centred eight schools (Rubin 1981), :math:`\mu \sim \mathcal N(0, 5^2)`,
  :math:`\tau \sim \mathrm{HalfCauchy}(5)`, :math:`\tilde\theta_j \sim \mathcal N(0, 1)`,
  :math:`y_j \sim \mathcal N(\mu + \tau\tilde\theta_j, \sigma_j^2)`.

Guides, all fitted by SVI (``Trace_ELBO``, 16 vectorised particles, clipped Adam with learning
rate decaying from 1e-2 to 1e-3): ``diagonal`` (``AutoDiagonalNormal``) and three
``AutoNormalizingFlow`` guides: ``coupling`` (:func:`~pyroflows.transforms.coupling_flow`, 4
blocks, hidden (32, 32)), ``sylvester`` (a learnable elementwise affine map, as the papers' diagonal
Gaussian base, then 8 triangular Sylvester layers with alternating flips) and ``planar`` (the same
affine map, then 16 planar layers). Each guide goes through
:func:`~pyroflows.diagnostics.to_inference_data`; the tables give posterior means and sds,
Pareto-:math:`\hat k` of the importance weights, :math:`-\mathrm{ELBO}` and the IS estimate of
:math:`\log p(x)` (both from the same draws), NUTS's bulk ESS and its divergences.

Outputs in ``--out`` (default ``results/posterior_diagnostics``): ``summary.csv`` (per model and
method: the key parameters' mean and sd, :math:`\hat k`, -ELBO, log evidence, ESS, seconds),
``parameters.csv`` (every scalar parameter), ``posteriors.png`` (each guide's draws over NUTS's).

Run::

    python -m analyses.posterior_diagnostics            # full settings
    python -m analyses.posterior_diagnostics --quick    # small settings
    python -m analyses.posterior_diagnostics --quick --models funnel

Full run: 349 s wall time (254 s CPU, 72 % of one core on a shared 2-core machine); ``--quick
--models funnel``: about 25 s. The measured table and what it shows are in ``docs/diagnostics.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ComposeTransformModule
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormalizingFlow
from pyro.optim import ClippedAdam
from tqdm.auto import tqdm

from pyroflows.diagnostics import guide_report, to_inference_data
from pyroflows.infer import fit
from pyroflows.transforms import actnorm, coupling_flow, planar, sylvester

GUIDES = ("diagonal", "coupling", "sylvester", "planar")
FUNNEL_DIM = 9
SCHOOLS_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SCHOOLS_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


# ----------------------------------------------------------------------------- models


def funnel(dim: int = FUNNEL_DIM + 1) -> None:
    """Neal's funnel in ``dim`` dimensions: :math:`v` and ``dim - 1`` coordinates :math:`x_i \\mid v`."""
    v = pyro.sample("v", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(dim - 1), torch.exp(v / 2).unsqueeze(-1)).to_event(1))


def banana(y):
    theta1 = pyro.sample("theta1", dist.Normal(0.0, 1.0))
    theta2 = pyro.sample("theta2", dist.Normal(0.0, 1.0))
    with pyro.plate("obs", len(y)):
        pyro.sample("y", dist.Normal(theta1 + theta2**2, 1.0), obs=y)


def banana_data(n: int = 20, seed: int = 1) -> torch.Tensor:
    """``n`` draws of :math:`\\theta_1 + \\theta_2^2 + \\varepsilon` at :math:`\\theta = (0.5, 0.7)`."""
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 0.7**2 + torch.randn(n, generator=g)


def schools(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", len(y)):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)


@dataclass(frozen=True)
class Problem:
    name: str
    model: Callable
    args: tuple
    key_params: tuple[str, ...]  # the rows of summary.csv
    plot: tuple[tuple[str, int | None], tuple[str, int | None]]  # (site, index) on x and y axes
    max_tree_depth: int = 10
    log_y: bool = False  # plot the y axis on a log scale
    exact: Callable[[int, torch.Generator], dict[str, np.ndarray]] | None = None


def _funnel_exact(n: int, g: torch.Generator) -> dict[str, np.ndarray]:
    v = 3.0 * torch.randn(n, generator=g)
    x = torch.exp(v / 2).unsqueeze(-1) * torch.randn(n, FUNNEL_DIM, generator=g)
    return {"v": v.numpy(), "x": x.numpy()}


def problems() -> dict[str, Problem]:
    return {
        "funnel": Problem("funnel", funnel, (), ("v",), (("x", 0), ("v", None)), exact=_funnel_exact),
        "banana": Problem("banana", banana, (banana_data(),), ("theta1", "theta2"), (("theta1", None), ("theta2", None))),
        "schools": Problem(
            "schools",
            schools,
            (torch.tensor(SCHOOLS_Y), torch.tensor(SCHOOLS_SIGMA)),
            ("mu", "tau"),
            (("theta_tilde", 0), ("tau", None)),
            log_y=True,
        ),
    }


# ----------------------------------------------------------------------------- guides


def _affine(dim: int):
    """A learnable elementwise affine map starting at the identity (an ActNorm without data init)."""
    layer = actnorm(dim)
    layer.params.mark_initialized()
    return layer


def sylvester_stack(dim: int, num_layers: int = 8):
    return ComposeTransformModule([_affine(dim)] + [sylvester(dim, "triangular", flip=i % 2 == 1) for i in range(num_layers)])


def planar_stack(dim: int, num_layers: int = 16):
    return ComposeTransformModule([_affine(dim)] + [planar(dim) for _ in range(num_layers)])


def make_guide(kind: str, model: Callable):
    if kind == "diagonal":
        return AutoDiagonalNormal(model)
    if kind == "coupling":
        return AutoNormalizingFlow(model, partial(coupling_flow, num_blocks=4, hidden=(32, 32)))
    if kind == "sylvester":
        return AutoNormalizingFlow(model, sylvester_stack)
    if kind == "planar":
        return AutoNormalizingFlow(model, planar_stack)
    raise ValueError(f"kind: expected one of {GUIDES}, got {kind!r}")


# ----------------------------------------------------------------------------- settings and runs


@dataclass(frozen=True)
class Settings:
    steps: int  # SVI steps per guide
    particles: int  # ELBO particles per step
    lr: float  # initial learning rate; decays tenfold over the run
    draws: int  # guide draws for the tables and Pareto-k
    nuts_warmup: int
    nuts_samples: int


FULL = Settings(steps=2000, particles=16, lr=1e-2, draws=20000, nuts_warmup=500, nuts_samples=1500)
QUICK = Settings(steps=500, particles=16, lr=1e-2, draws=10000, nuts_warmup=200, nuts_samples=400)


def fit_guide(problem: Problem, kind: str, settings: Settings, seed: int, progress: bool):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = make_guide(kind, problem.model)
    optim = ClippedAdam({"lr": settings.lr, "clip_norm": 10.0, "lrd": 0.1 ** (1 / settings.steps)})
    svi = SVI(problem.model, guide, optim, Trace_ELBO(num_particles=settings.particles, vectorize_particles=True))
    start = time.perf_counter()
    fit(lambda i: svi.step(*problem.args), settings.steps, progress=progress, desc=f"{problem.name}/{kind}", log_every=50)
    return guide, time.perf_counter() - start


def run_nuts(problem: Problem, settings: Settings, seed: int, progress: bool):
    pyro.set_rng_seed(seed)
    kernel = NUTS(problem.model, max_tree_depth=problem.max_tree_depth, jit_compile=True, ignore_jit_warnings=True)
    mcmc = MCMC(kernel, num_samples=settings.nuts_samples, warmup_steps=settings.nuts_warmup, disable_progbar=not progress)
    start = time.perf_counter()
    with warnings.catch_warnings():  # NUTS's jit_compile uses torch.jit.trace, deprecated in torch 2.x
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated", category=DeprecationWarning)
        mcmc.run(*problem.args)
    seconds = time.perf_counter() - start
    draws = {k: v.detach().numpy()[None] for k, v in mcmc.get_samples().items()}
    divergences = int(sum(len(v) for v in mcmc.diagnostics()["divergences"].values()))
    return az.from_dict(posterior=draws), seconds, divergences


def _scalars(idata: az.InferenceData) -> pd.DataFrame:
    """Mean and sd (and bulk ESS) of every scalar component of the posterior, one row each."""
    stats = az.summary(idata, kind="stats", hdi_prob=0.9)[["mean", "sd"]]
    ess = az.ess(idata, method="bulk")
    values = []
    for name in stats.index:
        var, _, idx = name.partition("[")
        arr = ess[var].values
        values.append(float(arr[tuple(int(i) for i in idx.rstrip("]").split(","))]) if idx else float(arr))
    stats["ess_bulk"] = values
    stats.index.name = "param"
    return stats


def run(settings: Settings, seed: int = 0, models=None, progress: bool = True):
    """Fit every guide and NUTS on each model. Returns ``(summary, parameters, draws)``, the last
    a dict ``(model, method) -> InferenceData`` for the figure."""
    chosen = problems()
    if models is not None:
        chosen = {k: chosen[k] for k in models}
    fits, params, draws = [], [], {}
    jobs = [(p, kind) for p in chosen.values() for kind in ("nuts",) + GUIDES]
    for problem, kind in tqdm(jobs, desc="posterior diagnostics", disable=None if progress else True):
        row = {"model": problem.name, "method": kind}
        if kind == "nuts":
            idata, seconds, divergences = run_nuts(problem, settings, seed, progress=False)
            row.update(seconds=seconds, divergences=divergences)
        else:
            guide, seconds = fit_guide(problem, kind, settings, seed, progress=False)
            with torch.no_grad():
                idata = to_inference_data(
                    problem.model, guide, *problem.args, num_samples=settings.draws, chunk_size=5000, posterior_predictive=False
                )
            report = guide_report(idata).iloc[0]
            row.update(
                seconds=seconds,
                pareto_k=report["pareto_k"],
                k_category=report["k_category"],
                neg_elbo=-report["elbo"],
                log_evidence=report["log_evidence"],
                is_ess_fraction=report["ess_fraction"],
            )
        draws[problem.name, kind] = idata
        scalars = _scalars(idata)
        if kind != "nuts":
            scalars["ess_bulk"] = np.nan  # independent draws: ESS says nothing about the guide
        for param, r in scalars.iterrows():
            params.append({"model": problem.name, "method": kind, "param": param, **r.to_dict()})
        fits.append(row)
    for problem in chosen.values():
        if problem.exact is not None:
            g = torch.Generator().manual_seed(seed)
            exact = az.from_dict(posterior={k: v[None] for k, v in problem.exact(settings.draws, g).items()})
            draws[problem.name, "exact"] = exact
            fits.append({"model": problem.name, "method": "exact"})
            for param, r in _scalars(exact).iterrows():
                params.append(
                    {"model": problem.name, "method": "exact", "param": param, "mean": r["mean"], "sd": r["sd"], "ess_bulk": np.nan}
                )
    fits, params = pd.DataFrame(fits), pd.DataFrame(params)
    keys = pd.DataFrame([(p.name, k) for p in chosen.values() for k in p.key_params], columns=["model", "param"])
    summary = keys.merge(params, on=["model", "param"]).merge(fits, on=["model", "method"])
    order = {m: i for i, m in enumerate(("exact", "nuts") + GUIDES)}
    summary = summary.sort_values(["model", "param", "method"], key=lambda c: c.map(order) if c.name == "method" else c, kind="stable")
    columns = [
        "model",
        "param",
        "method",
        "mean",
        "sd",
        "ess_bulk",
        "pareto_k",
        "k_category",
        "neg_elbo",
        "log_evidence",
        "divergences",
        "seconds",
    ]
    return summary[columns].reset_index(drop=True), params, draws


def _values(idata: az.InferenceData, site: str, index: int | None) -> np.ndarray:
    v = idata.posterior[site].values.reshape((-1,) + idata.posterior[site].shape[2:])
    return v if index is None else v[:, index]


def plot(draws: dict, path: Path, max_points: int = 2000) -> None:
    """One row per model, one column per guide: the guide's draws over NUTS's (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(m for m, _ in draws))
    chosen = problems()
    fig, axes = plt.subplots(len(names), len(GUIDES), figsize=(3.2 * len(GUIDES), 3.0 * len(names)), squeeze=False, sharey="row")
    for r, name in enumerate(names):
        (xs, xi), (ys, yi) = chosen[name].plot
        ref = draws[name, "nuts"]
        rx, ry = _values(ref, xs, xi)[:max_points], _values(ref, ys, yi)[:max_points]
        lo, hi = np.percentile(rx, [0.5, 99.5])
        for c, kind in enumerate(GUIDES):
            ax = axes[r, c]
            ax.scatter(rx, ry, s=2, c="0.6", alpha=0.5, label="NUTS")
            if (name, kind) in draws:
                gx, gy = _values(draws[name, kind], xs, xi)[:max_points], _values(draws[name, kind], ys, yi)[:max_points]
                ax.scatter(gx, gy, s=2, c="C0", alpha=0.4, label="guide")
            ax.set_xlim(lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo))
            ax.set_title(f"{name}: {kind}", fontsize=10)
            ax.set_xlabel(f"{xs}" + ("" if xi is None else f"[{xi}]"))
            if chosen[name].log_y:
                ax.set_yscale("log")
            if c == 0:
                ax.set_ylabel(ys)
            if r == 0 and c == 0:
                ax.legend(loc="upper right", markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description="Flow guides vs a diagonal guide vs NUTS on the funnel, a banana and eight schools")
    parser.add_argument("--quick", action="store_true", help="small settings (about a minute per model on one core)")
    parser.add_argument("--steps", type=int, default=None, help=f"SVI steps per guide (full: {FULL.steps})")
    parser.add_argument("--models", nargs="+", choices=tuple(problems()), default=None, help="models to run (default all)")
    parser.add_argument("--out", type=Path, default=Path("results") / "posterior_diagnostics", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    torch.set_num_threads(1)
    start = time.perf_counter()
    summary, params, draws = run(settings, seed=args.seed, models=args.models, progress=not args.no_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out / "summary.csv", index=False)
    params.to_csv(args.out / "parameters.csv", index=False)
    plot(draws, args.out / "posteriors.png")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(3).to_string(index=False))
    print(f"wall time {time.perf_counter() - start:.0f} s; tables and figure in {args.out}")
    return summary


if __name__ == "__main__":
    main()
