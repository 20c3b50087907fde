r"""The spline coupling flow against zuko's coupling NSF: held-out NLL at the same size and budget.

For each dataset and seed, two flows are fitted by maximum likelihood with everything shared but
the library: pyroflows' :func:`~pyroflows.transforms.spline_coupling_flow` (``permutation="reverse"``,
one coupling per block, ``transform_passive=True``) and ``zuko.flows.NSF(passes=2)`` (zuko's coupling form, whose MADE orders
alternate forward and reversed), both in the density direction (pyroflows' flow enters the
distribution as ``flow.inv``: it maps data to noise, so ``log_prob`` evaluates the splines' closed
form, as zuko's flow does; ``--direction sampling`` keeps Pyro's direction, where ``log_prob``
runs the splines' inverse), with the same number of blocks, hidden widths, bins and interval
:math:`[-5, 5]` (zuko's fixed one), the same Adam optimiser, cosine learning-rate schedule, batch
size and number of steps, and the same batches (one data generator seeded by the seed, redrawn
identically for each library). ``torch.manual_seed(seed)`` precedes each flow's construction.
Both layouts map every feature in every block: the coupling's conditioning half with a learned,
input-independent spline (``transform_passive=True``; in zuko's masked network those outputs
depend on nothing but the last layer's bias), the other half with a spline conditioned on the
first. Both bound their bins softly, :math:`u / (1 + |u| / c)` on the raw widths and heights
(pyroflows' default ``max_bin_ratio=1e3`` is zuko's ``slope=1e-3``). What still differs: the
initialisation (zuko's last layer is random, ours zero, so a fresh flow is the identity; zuko's
first layer is drawn for all features with half of them masked), the parameterisation of the
inner derivatives (a floored softplus in ours, a bounded exponential in zuko's) and the floors
of bins and slopes.

Datasets:

* the eight 2-D toys of FFJORD (:mod:`models.common.data.toy2d`): batches drawn fresh each step;
  the held-out set is ``--test-samples`` fresh points from a generator seed no batch uses, the same
  for every seed and library. NLL in nats per point.
* ``digits``: scikit-learn's 8x8 digits (64-D, levels 0..16) with the fixed stratified 80/20 split
  of :func:`models.common.data.digits.sklearn_digits`. Each batch is a random draw of training
  images, dequantised with fresh uniform noise, :math:`y = (x + u) / 17`
  (:func:`pyroflows.distributions.uniform_dequantize`); the flows see
  :math:`z = \operatorname{logit}(\alpha + (1 - 2\alpha) y)` with :math:`\alpha = 0.05` (so every
  feature lies in :math:`[-2.95, 2.95]`, inside both splines' interval). The held-out set is the
  test split dequantised once with a fixed seed. NLL in nats per image of the density of
  :math:`y` on :math:`[0, 1)^{64}` (the logit's log-Jacobian added back), and in bits per dimension
  of the discrete data (:func:`pyroflows.distributions.bits_per_dim` with 17 levels).

Every fit's CPU time (``time.process_time``) is measured; run it at one torch thread.

Output in ``--out`` (default ``results/spline_vs_zuko``), also printed:

``comparison.csv``
    one row per dataset, seed and library: held-out NLL, its standard error over the held-out
    points, the NLL of a Gaussian fitted to the held-out set itself, the final training loss, the
    number of parameters and the CPU seconds of the fit.
``summary.csv``
    one row per dataset: each library's mean NLL over seeds and its standard error over seeds, the
    difference (pyroflows minus zuko, the mean of the paired per-seed differences), the standard
    error of the paired differences over seeds (with one seed: the held-out standard errors
    combined) and ``within_2se``: the difference is at most twice its standard error (pyroflows
    no worse than zuko beyond 2 s.e.).

Run::

    python -m analyses.spline_vs_zuko                  # every dataset, seeds 0 1 2 (about 40 CPU minutes)
    python -m analyses.spline_vs_zuko --quick          # tiny budgets, seconds
    python -m analyses.spline_vs_zuko --datasets 8gaussians digits --seeds 0
    python -m analyses.spline_vs_zuko --datasets digits --libraries pyroflows --two-sided
    python -m analyses.spline_vs_zuko --no-transform-passive     # the conditioning half unchanged
    python -m analyses.spline_vs_zuko --init random              # last layers drawn as zuko's
    python -m analyses.spline_vs_zuko --direction sampling       # log_prob through the splines' inverse

``--no-transform-passive`` leaves each coupling's conditioning half unchanged (:math:`y_a = x_a`):
half the spline maps per block, 3 * bins - 1 parameters fewer per conditioning feature.
``--two-sided`` gives pyroflows' flow two couplings per block (a swap between), so that every
feature is transformed in every block as in zuko's layout; it is a diagnostic of the layout, not
the same size. ``--libraries`` fits only the libraries named (no summary unless both).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch
from tqdm.auto import tqdm

from models.common.data import toy2d
from models.common.data.digits import sklearn_digits
from models.ffjord_toy import gaussian_nll
from pyroflows import validation
from pyroflows.distributions.dequantize import bits_per_dim, uniform_dequantize
from pyroflows.nn import MLP
from pyroflows.transforms import ContextParameters, spline_coupling_flow

LIBRARIES = ("pyroflows", "zuko")
DIRECTIONS = ("density", "sampling")
DATASETS = (*toy2d.NAMES, "digits")
BOUND = 5.0  # zuko's spline interval is fixed at [-5, 5]
LEVELS = 17  # the digits' pixel levels 0..16
ALPHA = 0.05  # the logit's margin for the digits
TEST_SEED = 99_991  # the held-out sets' generator seed; training generators use the run's seed


@dataclass(frozen=True)
class Budget:
    """Flow size and training budget, shared by both libraries."""

    blocks: int
    hidden: tuple[int, ...]
    bins: int
    steps: int
    batch: int
    lr: float
    test_samples: int = 20_000
    two_sided: bool = False  # pyroflows only: two couplings per block, a diagnostic of the layout
    transform_passive: bool = True  # pyroflows only: a learned spline on each conditioning half, as zuko's
    init: str = "zero"  # pyroflows only: "random" draws the conditioners' last layers as zuko does
    direction: str = "density"  # pyroflows only: which way the splines' closed form runs (see build)


TOYS = Budget(blocks=4, hidden=(64, 64), bins=8, steps=1500, batch=256, lr=3e-3)
DIGITS = Budget(blocks=4, hidden=(128, 128), bins=8, steps=1500, batch=128, lr=1e-3)
QUICK_TOYS = replace(TOYS, hidden=(32, 32), steps=300, batch=256, test_samples=4000)
QUICK_DIGITS = replace(DIGITS, hidden=(64, 64), steps=300)


class Data:
    """Training batches and the held-out set of one dataset, in the space the flows model.

    ``to_model(y)`` maps data to the flows' space and returns the log-Jacobian per point, so that
    ``log p(y) = log q(z) + ladj``."""

    def __init__(self, name: str, test_samples: int) -> None:
        self.name = name
        if name == "digits":
            split = sklearn_digits(test_fraction=0.2, seed=0)
            self.train = torch.from_numpy(np.rint(split.x_train * (LEVELS - 1)))
            test = torch.from_numpy(np.rint(split.x_test * (LEVELS - 1)))
            self.test = uniform_dequantize(test, LEVELS, torch.Generator().manual_seed(TEST_SEED), torch.float32)
            self.dim = self.train.shape[-1]
        else:
            self.test = toy2d.sample(name, test_samples, TEST_SEED + toy2d.NAMES.index(name))
            self.dim = 2

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.name != "digits":
            return toy2d.sample(self.name, n, generator)
        idx = torch.randint(0, len(self.train), (n,), generator=generator)
        return uniform_dequantize(self.train[idx], LEVELS, generator, torch.float32)

    def to_model(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.name != "digits":
            return y, torch.zeros(y.shape[:-1], dtype=y.dtype)
        s = ALPHA + (1 - 2 * ALPHA) * y
        ladj = (math.log(1 - 2 * ALPHA) - s.log() - (-s).log1p()).sum(-1)
        return s.logit(), ladj


@torch.no_grad()
def random_last_layers(flow: torch.nn.Module, fan_in: int) -> None:
    r"""zuko's initialisation instead of ours: each conditioner's last layer drawn as torch's
    ``nn.Linear`` draws it (zuko's masked layers keep that default), and the conditioning half's
    spline parameters, which in zuko's masked network are the last layer's bias alone, uniform in
    :math:`\pm 1/\sqrt{\text{fan in}}` like that bias."""
    for module in flow.modules():
        if isinstance(module, MLP):
            module.net[-1].reset_parameters()
        elif isinstance(module, ContextParameters):
            for value in module.base():
                value.uniform_(-(fan_in**-0.5), fan_in**-0.5)


def build(library: str, dim: int, budget: Budget, seed: int):
    """A fresh flow of ``library`` and its ``log_prob``."""
    torch.manual_seed(seed)
    if library == "pyroflows":
        flow = spline_coupling_flow(
            dim, budget.blocks, budget.hidden, budget.bins, BOUND, "reverse",
            two_sided=budget.two_sided, transform_passive=budget.transform_passive,
        )  # fmt: skip
        if budget.init == "random":
            random_last_layers(flow, budget.hidden[-1])
        # "density": the flow maps data to noise, so log_prob runs the splines' closed form, as
        # zuko's does; "sampling": Pyro's direction, noise to data, so log_prob runs their inverse.
        d = dist.TransformedDistribution(
            dist.Normal(torch.zeros(dim), 1.0).to_event(1), [flow.inv if budget.direction == "density" else flow]
        )
        return flow, d.log_prob
    if library == "zuko":
        import zuko

        flow = zuko.flows.NSF(dim, bins=budget.bins, transforms=budget.blocks, hidden_features=budget.hidden, passes=2)
        return flow, lambda x: flow().log_prob(x)
    raise ValueError(f"library: expected one of {LIBRARIES}, got {library!r}")


def fit(library: str, data: Data, budget: Budget, seed: int, progress: bool = False) -> tuple[torch.nn.Module, object, float]:
    """Fit one flow; returns it, its ``log_prob`` and the mean loss of the last 5% of steps."""
    flow, log_prob = build(library, data.dim, budget, seed)
    opt = torch.optim.Adam(flow.parameters(), lr=budget.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, budget.steps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    bar = tqdm(range(budget.steps), desc=f"{data.name} {library} s{seed}", disable=None if progress else True, leave=False)
    with validation(False):
        for _ in bar:
            z, _ = data.to_model(data.batch(budget.batch, generator))
            opt.zero_grad(set_to_none=True)
            loss = -log_prob(z).mean()
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(loss.item())
    return flow, log_prob, float(np.mean(losses[-max(1, budget.steps // 20) :]))


@torch.no_grad()
def score(log_prob, data: Data) -> dict:
    """Held-out NLL per point (of the data's density, not the flows' space) and its standard error."""
    z, ladj = data.to_model(data.test)
    with validation(False):
        nll = -(torch.cat([log_prob(part) for part in z.split(4096)]) + ladj).double()
    out = {"test_nll": float(nll.mean()), "nll_se": float(nll.std() / math.sqrt(len(nll)))}
    out["bits_per_dim"] = float(bits_per_dim(-nll.mean(), data.dim, LEVELS)) if data.name == "digits" else float("nan")
    return out


def gaussian_baseline(data: Data) -> float:
    """NLL of the Gaussian fitted to the held-out set (in the flows' space), in the data's units."""
    z, ladj = data.to_model(data.test)
    return gaussian_nll(z) - float(ladj.double().mean())


@contextlib.contextmanager
def no_argument_checks():
    """torch's distribution argument checks off for both libraries, restored afterwards: importing
    zuko switches them off for the whole process, and this keeps that from leaking."""
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(before)


def compare(name: str, budget: Budget, seeds, progress: bool = False, libraries=LIBRARIES) -> list[dict]:
    """One row per seed and library."""
    data = Data(name, budget.test_samples)
    baseline = gaussian_baseline(data)
    rows = []
    for seed in seeds:
        for library in libraries:
            with no_argument_checks():
                cpu = time.process_time()
                flow, log_prob, final = fit(library, data, budget, seed, progress)
                cpu = time.process_time() - cpu
                scores = score(log_prob, data)
            rows.append(
                {
                    "dataset": name, "seed": seed, "library": library, **scores,
                    "gaussian_nll": baseline, "final_loss": final,
                    "params": sum(p.numel() for p in flow.parameters()), "fit_cpu_s": cpu,
                }
            )  # fmt: skip
    return rows


def summarize(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: each library's mean NLL over seeds with its s.e. over seeds, the paired
    difference (pyroflows minus zuko), its s.e. and whether it is within 2 s.e."""
    out = []
    for name, group in comparison.groupby("dataset", sort=False):
        wide = group.pivot(index="seed", columns="library")
        nll, se = wide["test_nll"], wide["nll_se"]
        diff = nll["pyroflows"] - nll["zuko"]
        n = len(diff)
        if n > 1:
            diff_se = float(diff.std() / math.sqrt(n))
        else:  # one seed: the held-out standard errors of the two NLLs combined
            diff_se = float(np.sqrt(se["pyroflows"] ** 2 + se["zuko"] ** 2).iloc[0])
        row = {"dataset": name, "seeds": n}
        for lib in LIBRARIES:
            row[lib] = float(nll[lib].mean())
            row[f"{lib}_se"] = float(nll[lib].std() / math.sqrt(n)) if n > 1 else float(se[lib].iloc[0])
        row.update(diff=float(diff.mean()), diff_se=diff_se, within_2se=bool(diff.mean() <= 2 * diff_se))
        for lib in LIBRARIES:
            row[f"{lib}_cpu_s"] = float(wide["fit_cpu_s"][lib].mean())
        row["gaussian_nll"] = float(group["gaussian_nll"].iloc[0])
        out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (seconds)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--steps", type=int, default=None, help="override the training steps of every dataset")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES, help="no summary unless both")
    parser.add_argument("--two-sided", action="store_true", help="pyroflows: two couplings per block (a diagnostic)")
    parser.add_argument(
        "--transform-passive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pyroflows: a learned input-independent spline on each coupling's conditioning half, as zuko's layout (default)",
    )
    parser.add_argument("--init", choices=("zero", "random"), default="zero", help="pyroflows: conditioners' last layers (random: zuko's)")
    parser.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default="density",
        help="pyroflows: density (the flow maps data to noise, as zuko's) or sampling (Pyro's direction, noise to data)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/spline_vs_zuko"))
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets:
        budget = (QUICK_DIGITS if args.quick else DIGITS) if name == "digits" else (QUICK_TOYS if args.quick else TOYS)
        if args.steps:
            budget = replace(budget, steps=args.steps)
        budget = replace(
            budget, two_sided=args.two_sided, transform_passive=args.transform_passive, init=args.init, direction=args.direction
        )
        rows += compare(name, budget, args.seeds, sys.stderr.isatty(), args.libraries)
    comparison = pd.DataFrame(rows)
    summary = summarize(comparison) if set(args.libraries) == set(LIBRARIES) else pd.DataFrame(columns=["dataset"])
    args.out.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(args.out / "comparison.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    shown = ["dataset", "seed", "library", "test_nll", "nll_se", "bits_per_dim", "final_loss", "params", "fit_cpu_s"]
    print(comparison[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    if len(summary):
        shown = ["dataset", "pyroflows", "pyroflows_se", "zuko", "zuko_se", "diff", "diff_se", "within_2se"]
        print(summary[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return comparison, summary


if __name__ == "__main__":
    main()
