r"""Rezende & Mohamed (2015), Sec. 6.1: planar flows fitted to the 2-D energies of Table 1.

A stack of ``K`` planar layers (:class:`~pyroflows.transforms.Planar`) on a standard Normal base
defines :math:`q_K(z)`; it is fitted to :math:`p(z) \propto e^{-U(z)}` by maximising the evidence
lower bound (the free energy of the paper's eq. 15 with the data term replaced by the energy),

.. math::

    \mathcal L(q) = \mathbb E_{z \sim q}\left[-U(z) - \log q(z)\right]
        = \log Z - \mathrm{KL}(q \,\|\, p) \le \log Z,
    \qquad \log q_K(z_K) = \log \mathcal N(z_0; 0, I) - \sum_{k=1}^{K} \log\left|1 + \hat u_k^\top \psi_k(z_{k-1})\right|,

i.e. minimising the reverse KL divergence. Every step draws a batch from :math:`q` by
reparameterisation and takes an Adam step on the Monte Carlo estimate of
:math:`\mathbb E_q[\beta_t U(z) + \log q(z)]`, with the paper's annealing of the inverse
temperature :math:`\beta_t` from 0.01 to 1 over the first part of training (it keeps the
multi-modal targets from collapsing onto one mode: on ``U3`` with ``K = 8`` and 1500 steps it
raised the ELBO by 0.25 nats) and a cosine learning-rate decay. The training loop is a plain torch
loop (vectorised over the batch, no loop over samples); :func:`fit_with_svi` fits the same planar
stack as a Pyro guide, against the model

.. code-block:: python

    def model(beta=1.0):
        z = pyro.sample("z", ImproperUniform(real_vector, (), (2,)))
        pyro.factor("energy", -beta * U(z))

with the guide ``pyro.sample("z", q)`` under :class:`pyro.infer.SVI` and ``Trace_ELBO`` (the
model's log joint is :math:`-U(z)`, so its ELBO is the one above).

**Read-outs** per energy and ``K`` (float64): the ELBO with its Monte Carlo standard error
(20 000 samples), the importance-sampling estimate
:math:`\log \hat Z = \log \frac1N \sum_i e^{-U(z_i) - \log q(z_i)}` (100 000 samples, chunked; it
lies between the ELBO and :math:`\log Z` in expectation), and the quadrature :math:`\log Z`
(:func:`models.common.data.energies.log_normaliser`) to compare with. Target: with ``K = 32`` on ``U1``,
ELBO :math:`\ge \log Z - 0.15 = 1.7275` (quick mode fits ``K = 2, 8`` only and carries no target).

**The wall.** ``U2``-``U4`` are not integrable on the plane (they do not decay along :math:`z_1`),
so the fits use them with this project's wall at :math:`|z_1| = 4`, the paper's plotting window
(:func:`models.common.data.energies.energy` with ``wall=4``; the density inside the window is the
paper's). ``U1`` is fitted as it is (the wall changes its :math:`\log Z` by less than ``1e-11``).

Figures: ``densities.png`` (rows: energies; columns: :math:`e^{-U}` and :math:`q_K` for each ``K``
on :math:`[-4, 4]^2`, like the paper's Fig. 3), ``samples.png`` (histograms of samples from each
:math:`q_K`) and ``loss_history.csv``.

Run::

    python -m models.planar_energies            # full settings (K = 2, 8, 32; 6000 steps each)
    python -m models.planar_energies --quick    # K = 2, 8; 500 steps (about 30 s)
    python -m models --only planar_energies     # full, through the registry

Checkpoints go to ``<out>/checkpoints/`` (full settings only), named after the settings; a finished
one is reloaded, an unfinished one resumed.

Measured at full settings (seed 0; ``docs/papers/planar_energies.md`` has the whole table): on
``U1`` with ``K = 2, 8, 32`` the ELBO is 1.464, 1.832, 1.874 against :math:`\log Z = 1.8775`
(the target is met with a gap of 0.004); with ``K = 32`` the gap is 0.006, 0.078 and 0.034 on
``U2``-``U4``; the SVI fit (``K = 8``, 3000 steps) reaches 1.822. Wall time: 14 min on 2 CPU cores
shared with other jobs (500 s of CPU time); quick mode about 30 s.

Paper: D. J. Rezende, S. Mohamed, "Variational inference with normalizing flows", ICML 2015,
Sec. 6.1, Table 1 and Fig. 3 (the paper shows these results as figures, without a table of
numbers; the settings above are this project's, sized for a shared CPU).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyro
import pyro.distributions as dist
import pyro.optim
import torch
from pyro.distributions import constraints
from pyro.infer import SVI, Trace_ELBO

from models import format_report, row
from models.common.data.energies import ENERGIES, energy, grid, log_normaliser
from models.common.results import run_label
from pyroflows import validation
from pyroflows.infer import fit
from pyroflows.transforms import Planar
from pyroflows.transforms.stacks import FlowSequence

PAPER = 'D. J. Rezende, S. Mohamed, "Variational inference with normalizing flows", ICML 2015, Sec. 6.1, Table 1, Fig. 3'
EXPERIMENT = "planar_energies"
#: the target: ELBO >= log Z - GAP_BAR for K = 32 on U1
GAP_BAR = 0.15
#: half-width of the wall added to U2-U4 (the paper's window); None for U1
WALL = 4.0


@dataclass(frozen=True)
class Settings:
    """Training and read-out settings; :data:`FULL` and :data:`QUICK` are the presets."""

    Ks: tuple[int, ...] = (2, 8, 32)
    energies: tuple[str, ...] = ENERGIES
    steps: int = 6000
    batch: int = 256
    lr: float = 1e-2
    lr_final: float = 1e-4  # cosine decay from lr to lr_final
    anneal_fraction: float = 0.3  # beta rises linearly from beta0 to 1 over this share of the steps
    beta0: float = 0.01
    clip_norm: float = 10.0
    elbo_samples: int = 20_000
    is_samples: int = 100_000
    chunk: int = 20_000
    svi_K: int = 8  # the Pyro-guide fit, on U1
    svi_steps: int = 3000
    figure_points: int = 161  # grid points per axis of the density figure
    figure_samples: int = 20_000
    checkpoint: bool = True
    #: torch threads while running (1 is fastest for these tiny steps on a shared CPU); None keeps torch's
    threads: int | None = 1

    def tag(self, K: int) -> str:
        """Checkpoint name part: every setting that changes the fit of ``K`` layers."""
        return (
            f"K{K}_it{self.steps}_b{self.batch}_lr{self.lr:g}-{self.lr_final:g}"
            f"_an{self.anneal_fraction:g}-{self.beta0:g}_clip{self.clip_norm:g}"
        )


FULL = Settings()
QUICK = Settings(
    Ks=(2, 8), steps=500, elbo_samples=5000, is_samples=20_000, svi_steps=500, figure_points=81, figure_samples=5000, checkpoint=False
)


def target_energy(name: str):
    """The energy a fit targets: ``U1`` as in the paper, ``U2``-``U4`` with the wall at :data:`WALL`."""
    return energy(name, wall=None if name == "U1" else WALL)


def reference_log_z(name: str) -> float:
    """Quadrature :math:`\\log Z` of :func:`target_energy` (float64, 1001 x 1001 points on ``[-8, 8]^2``)."""
    return log_normaliser(name, limit=8.0, points=1001, wall=None if name == "U1" else WALL)


# ----------------------------------------------------------------------------------------------
# the flow and its fit


def make_flow(K: int, dim: int = 2) -> FlowSequence:
    """``K`` planar layers, each initialised at the identity, run in one pass (summed log-det kept)."""
    return FlowSequence([Planar(dim) for _ in range(K)])


def flow_distribution(flow: FlowSequence, dim: int = 2) -> dist.TransformedDistribution:
    """:math:`q`: the standard Normal on :math:`\\mathbb R^{dim}` pushed through ``flow`` (in its dtype)."""
    p = next(flow.parameters())
    base = dist.Normal(torch.zeros(dim, dtype=p.dtype, device=p.device), 1.0).to_event(1)
    return dist.TransformedDistribution(base, [flow])


def beta_schedule(step: int, settings: Settings) -> float:
    """Inverse temperature at ``step``: linear from ``beta0`` to 1 over ``anneal_fraction`` of the steps."""
    ramp = settings.anneal_fraction * settings.steps
    if ramp <= 0:
        return 1.0
    return min(1.0, settings.beta0 + (1.0 - settings.beta0) * step / ramp)


def lr_factor(step: int, settings: Settings) -> float:
    """Cosine decay of the learning rate from ``lr`` (step 0) to ``lr_final`` (last step), as a factor of ``lr``."""
    floor = settings.lr_final / settings.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, settings.steps)))


def fit_flow(
    U, K: int, settings: Settings, seed: int = 0, checkpoint: Path | None = None, progress: bool = True, desc: str = "fit"
) -> tuple[FlowSequence, pd.DataFrame]:
    """Reverse-KL fit of ``K`` planar layers to :math:`e^{-U}`; returns the flow and the loss history.

    The loss of step ``t`` is the batch mean of :math:`\\beta_t U(z) + \\log q(z)`, ``z ~ q``
    (reparameterised); at :math:`\\beta_t = 1` it is the negative ELBO.
    """
    torch.manual_seed(seed)
    flow = make_flow(K)
    q = flow_distribution(flow)
    opt = torch.optim.Adam(flow.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, settings))
    params = list(flow.parameters())

    def step(i: int):
        z = q.rsample((settings.batch,))
        loss = (beta_schedule(i, settings) * U(z) + q.log_prob(z)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip_norm:
            torch.nn.utils.clip_grad_norm_(params, settings.clip_norm)
        opt.step()
        sched.step()
        return loss

    with validation(False):  # fit() checks the recorded loss; skip the per-layer input checks
        history = fit(
            step,
            settings.steps,
            {"flow": flow, "opt": opt, "sched": sched},
            checkpoint=checkpoint,
            log_every=25,
            progress=progress,
            desc=desc,
        )
    return flow, history


def energy_model(U, beta: float = 1.0) -> None:
    """Pyro model with log joint :math:`-\\beta U(z)`: an improper flat "prior" and a factor."""
    z = pyro.sample("z", dist.ImproperUniform(constraints.real_vector, (), (2,)))
    pyro.factor("energy", -beta * U(z))


def flow_guide(flow: FlowSequence):
    """The guide ``z ~ q`` with the planar stack registered as a Pyro module; takes the model's arguments."""

    def guide(U, beta: float = 1.0) -> None:
        pyro.module("flow", flow)
        pyro.sample("z", flow_distribution(flow))

    return guide


def fit_with_svi(
    U, K: int, settings: Settings, seed: int = 0, progress: bool = True, desc: str = "svi"
) -> tuple[FlowSequence, pd.DataFrame]:
    """The same fit as :func:`fit_flow`, as Pyro SVI: :func:`energy_model` against :func:`flow_guide`.

    ``Trace_ELBO`` with ``settings.batch`` vectorised particles, Adam through Pyro's ``LambdaLR``
    wrapper with the same cosine learning-rate decay over ``settings.svi_steps`` (the scheduler is
    stepped once per SVI step), gradients clipped to norm ``clip_norm`` per parameter, and the same
    annealing of :math:`\\beta` (passed to the model). The loss history is the recorded
    :math:`\\mathbb E_q[\\beta U + \\log q]`, the negative ELBO once :math:`\\beta = 1`.
    """
    torch.manual_seed(seed)
    pyro.clear_param_store()
    flow = make_flow(K)
    steps = settings.svi_steps
    svi_settings = replace(settings, steps=steps)
    optim = pyro.optim.LambdaLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": settings.lr}, "lr_lambda": lambda i: lr_factor(i, svi_settings)},
        clip_args={"clip_norm": settings.clip_norm} if settings.clip_norm else None,
    )
    svi = SVI(
        energy_model, flow_guide(flow), optim, Trace_ELBO(num_particles=settings.batch, vectorize_particles=True, max_plate_nesting=0)
    )

    def step(i: int):
        loss = svi.step(U, beta_schedule(i, svi_settings))
        optim.step()  # the learning-rate schedule
        return loss

    with validation(False):
        history = fit(step, steps, log_every=25, progress=progress, desc=desc)
    return flow, history


# ----------------------------------------------------------------------------------------------
# read-outs


def float64_copy(flow: FlowSequence) -> FlowSequence:
    """A float64 copy of a planar stack (a fresh stack loaded with its parameters; deepcopy would
    trip over the kept last call)."""
    copy64 = FlowSequence([Planar(part.dim) for part in flow.parts])
    copy64.load_state_dict(flow.state_dict())
    return copy64.double()


@torch.no_grad()
def log_weights(flow: FlowSequence, U, n: int, chunk: int = 20_000) -> torch.Tensor:
    """:math:`-U(z) - \\log q(z)` for ``n`` fresh samples of :math:`q`, in float64 (a float64 copy of the flow)."""
    flow64 = float64_copy(flow)
    q = flow_distribution(flow64)
    out = []
    for start in range(0, n, chunk):
        z = q.sample((min(chunk, n - start),))
        out.append(-U(z) - q.log_prob(z))
    return torch.cat(out)


@torch.no_grad()
def evaluate(flow: FlowSequence, U, settings: Settings, seed: int = 0) -> dict:
    """ELBO (mean of the log weights), its Monte Carlo standard error, the importance-sampling
    :math:`\\log \\hat Z` with its delta-method standard error, and the IS effective sample size share."""
    torch.manual_seed(10_007 + seed)
    lw = log_weights(flow, U, settings.elbo_samples, settings.chunk)
    elbo, elbo_se = float(lw.mean()), float(lw.std() / math.sqrt(len(lw)))
    lw = log_weights(flow, U, settings.is_samples, settings.chunk)
    n = len(lw)
    is_log_z = float(torch.logsumexp(lw, 0) - math.log(n))
    w = torch.exp(lw - lw.max())
    ess = float(w.sum() ** 2 / (w * w).sum())
    is_se = float(w.std() / (w.mean() * math.sqrt(n)))  # se of log mean(w) by the delta method
    return {"elbo": elbo, "elbo_se": elbo_se, "is_log_z": is_log_z, "is_se": is_se, "ess_share": ess / n}


@torch.no_grad()
def flow_density(flow: FlowSequence, z: torch.Tensor) -> torch.Tensor:
    """:math:`q(z)` at the points ``z`` (float64; the planar inverse is a vectorised Newton solve)."""
    flow64 = float64_copy(flow)
    return flow_distribution(flow64).log_prob(z.double()).exp()


# ----------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_densities(flows: dict, settings: Settings, path: Path, limit: float = 4.0, label: str = "") -> None:
    """Fig. 3 of the paper: rows = energies, columns = :math:`e^{-U}` then :math:`q_K` per ``K``."""
    plt = _plt()
    _, z = grid(limit, settings.figure_points)
    names = list(dict.fromkeys(name for name, _ in flows))
    Ks = sorted({K for _, K in flows})
    fig, axes = plt.subplots(len(names), 1 + len(Ks), figsize=(2.2 * (1 + len(Ks)), 2.2 * len(names)), squeeze=False)
    extent = (-limit, limit, -limit, limit)
    for r, name in enumerate(names):
        panels = [("exp(-U)" if r == 0 else None, torch.exp(-energy(name)(z)))]
        panels += [(f"K = {K}" if r == 0 else None, flow_density(flows[(name, K)], z.reshape(-1, 2)).reshape(z.shape[:2])) for K in Ks]
        for c, (title, image) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image.numpy(), origin="lower", extent=extent, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if title:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(f"Rezende & Mohamed Fig. 3: true density exp(-U) and planar flows q_K\n({label})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def plot_samples(flows: dict, settings: Settings, path: Path, limit: float = 4.0, seed: int = 0, label: str = "") -> None:
    """Histograms of ``figure_samples`` draws from each :math:`q_K` (rows = energies, columns = ``K``)."""
    plt = _plt()
    names = list(dict.fromkeys(name for name, _ in flows))
    Ks = sorted({K for _, K in flows})
    fig, axes = plt.subplots(len(names), len(Ks), figsize=(2.2 * len(Ks), 2.2 * len(names)), squeeze=False)
    torch.manual_seed(20_011 + seed)
    for r, name in enumerate(names):
        for c, K in enumerate(Ks):
            z = flow_distribution(flows[(name, K)]).sample((settings.figure_samples,)).numpy()
            ax = axes[r, c]
            ax.hist2d(z[:, 0], z[:, 1], bins=80, range=[[-limit, limit], [-limit, limit]], cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"K = {K}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(f"histograms of {settings.figure_samples} samples of each planar flow q_K\n({label})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# the experiment


def _seed(seed: int, name: str, K: int) -> int:
    """One seed per (energy, K): a fit does not depend on which others run."""
    return 1_000 * seed + 100 * ENERGIES.index(name) + K


def reproduce(settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Fit and evaluate every (energy, K) of ``settings``, the Pyro-guide fit on ``U1``, and write the
    figures and ``loss_history.csv`` under ``out_dir``. Returns the rows and ``(name, K) -> metrics``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    start_all = time.perf_counter()
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    flows, results, rows, histories = {}, {}, [], []
    try:
        for name in settings.energies:
            U = target_energy(name)
            log_z = reference_log_z(name)
            wall_note = "" if name == "U1" else f"; U walled at |z1| = {WALL:g}"
            for K in settings.Ks:
                checkpoint = ckpt_dir / f"{name}_{settings.tag(K)}_s{seed}.pt" if settings.checkpoint else None
                start = time.perf_counter()
                flow, history = fit_flow(U, K, settings, _seed(seed, name, K), checkpoint, progress, desc=f"{name} K={K}")
                seconds = time.perf_counter() - start
                m = evaluate(flow, U, settings, seed)
                m.update(log_z=log_z, train_seconds=seconds)
                flows[(name, K)], results[(name, K)] = flow, m
                histories.append(history.assign(energy=name, K=K, fit="torch"))
                base = f"log Z by quadrature, the ELBO's upper bound{wall_note}"
                rows.append(
                    row(EXPERIMENT, name, f"elbo_K{K}", m["elbo"], baseline=log_z,
                        note=f"{base}; ELBO from {settings.elbo_samples} samples, MC s.e. {m['elbo_se']:.4f}")
                )  # fmt: skip
                rows.append(
                    row(EXPERIMENT, name, f"is_logz_K{K}", m["is_log_z"], baseline=log_z,
                        note=f"{base}; IS from {settings.is_samples} samples, s.e. {m['is_se']:.4f}, ESS {100 * m['ess_share']:.0f}%")
                )  # fmt: skip
            K = max(settings.Ks)
            gap = log_z - results[(name, K)]["elbo"]
            if name == "U1" and K == 32:
                rows.append(
                    row(EXPERIMENT, name, f"elbo_gap_K{K}", gap, target=GAP_BAR, target_kind="<=", quick_expected=True, headline=True,
                        paper_source="Fig. 3, no number",
                        note=f"log Z - ELBO (ELBO >= {log_z - GAP_BAR:.4f}); the paper shows Fig. 3 only")
                )  # fmt: skip
            else:
                rows.append(
                    row(EXPERIMENT, name, f"elbo_gap_K{K}", gap, headline=True, paper_source="Fig. 3, no number",
                        note=f"log Z - ELBO; the target is on U1 with K = 32; the paper shows Fig. 3 only{wall_note}")
                )  # fmt: skip
        if "U1" in settings.energies and settings.svi_K and settings.svi_steps:
            U = target_energy("U1")
            start = time.perf_counter()
            flow, history = fit_with_svi(
                U, settings.svi_K, settings, _seed(seed, "U1", settings.svi_K) + 7, progress, desc=f"U1 K={settings.svi_K} (SVI)"
            )
            seconds = time.perf_counter() - start
            m = evaluate(flow, U, settings, seed)
            m.update(log_z=reference_log_z("U1"), train_seconds=seconds)
            results[("U1", f"svi_K{settings.svi_K}")] = m
            histories.append(history.assign(energy="U1", K=settings.svi_K, fit="pyro_svi"))
            rows.append(
                row(EXPERIMENT, "U1", f"svi_elbo_K{settings.svi_K}", m["elbo"], baseline=m["log_z"],
                    note=f"Pyro SVI (factor model, planar guide), {settings.svi_steps} steps; MC s.e. {m['elbo_se']:.4f}; baseline: log Z")
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    pd.concat(histories).to_csv(out_dir / "loss_history.csv", index=False)
    label = f"{run_label(settings, QUICK, FULL, seed)}, {settings.steps} steps"
    plot_densities(flows, settings, out_dir / "densities.png", label=label)
    plot_samples(flows, settings, out_dir / "samples.png", seed=seed, label=label)
    rows.append(
        row(EXPERIMENT, "all", "wall time (s)", time.perf_counter() - start_all,
            note=f"{settings.threads or torch.get_num_threads()} torch thread(s); fits resumed from checkpoints take less")
    )  # fmt: skip
    return rows, results


def run(quick: bool, out_dir: Path, seed: int = 0, progress: bool = True) -> list[dict]:
    """The registry entry point: :func:`reproduce` at :data:`QUICK` or :data:`FULL` settings, rows only."""
    return reproduce(QUICK if quick else FULL, out_dir, seed, progress)[0]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings (K = 2, 8; well under a minute)")
    parser.add_argument("--energies", nargs="*", choices=ENERGIES, default=None, help="a subset of the energies")
    parser.add_argument("--K", nargs="*", type=int, default=None, help="numbers of planar layers (default: 2 8 32; quick: 2 8)")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps per fit")
    parser.add_argument("--out", type=Path, default=Path("results") / EXPERIMENT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.energies:
        settings = replace(settings, energies=tuple(args.energies))
    if args.K:
        settings = replace(settings, Ks=tuple(args.K))
    if args.steps:
        settings = replace(settings, steps=args.steps)
    rows, _ = reproduce(settings, args.out, args.seed, not args.no_progress)
    print(format_report(rows, {EXPERIMENT: PAPER}, quick=args.quick, all_rows=True))
    print(f"figures: {args.out}/densities.png, {args.out}/samples.png")
    return rows


if __name__ == "__main__":
    main()
