r"""Grathwohl et al. (2019), Fig. 2: FFJORD continuous normalizing flows fitted to 2-D toy data.

A continuous normalizing flow (:class:`~pyroflows.transforms.CNF`, dynamics a concatsquash
network with hidden widths 64-64-64 and ``tanh``) pushes a standard Normal forward into the data
space; its density follows from the instantaneous change of variables,

.. math::

    \log q(x) = \log \mathcal N(z(0); 0, I) - \int_0^T \operatorname{tr}\frac{\partial f}{\partial z}(z(t), t)\,dt,
    \qquad z(T) = x,\ \frac{dz}{dt} = f(z, t),

solved backwards from the data point (the flow is the Pyro transform of a
``TransformedDistribution``, whose ``log_prob`` runs the inverse solve). The flow is fitted by
maximum likelihood on fresh batches of each toy distribution of :mod:`models.common.data.toy2d`
(``8gaussians``, ``checkerboard``, ``2spirals``, ``pinwheel``, ``rings``, ``moons``, ``circles``,
``swissroll``): a plain torch loop on the batch mean of :math:`-\log q(x)` plus the RNODE penalties
(kinetic energy and Jacobian Frobenius norm, weight 0.01 each). :func:`fit_with_svi` fits the same
flow as a Pyro likelihood, ``pyro.sample("x", q, obs=x)`` in a plate, under SVI with an empty
guide (the ELBO is then the log-likelihood itself; the RNODE penalty is added to the loss).

**Solvers.** In 2-D the exact trace costs two vector-Jacobian products per evaluation and has no
variance, so it is used throughout (``trace="exact"``). Training integrates with a fixed-step RK4
solver (4 steps of the normalised time, 16 evaluations per solve: a constant, low cost; the RNODE
penalties keep the learned dynamics smooth enough for it); every reported number integrates with
adaptive ``dopri5`` at ``atol = rtol = 1e-5``, so the reported density is that of the flow as the
ODE defines it, not of its training discretisation.

**Read-outs** per toy: the test negative log-likelihood (nats) on 20 000 fresh samples (a seed no
training batch uses), with its standard error, next to the entropy of the generator
(:data:`models.common.data.toy2d.ENTROPY`, the lowest value any model can reach in expectation); the
NLL of a Gaussian fitted to the test set (for scale); the number of function evaluations (NFE) per
training step and of the ``dopri5`` test solve; the learned integration time; and the training
time. Targets: test NLL :math:`\le H + 0.15` on ``8gaussians`` (2.981) and :math:`\le H + 0.30` on
``checkerboard`` (3.766), met at full settings; quick mode's 150 steps of a smaller network are not
expected to meet them. The other toys report only.

Figure ``densities.png``: for each toy the data (a histogram of 100 000 samples) above the learned
density :math:`q(x)` on a grid over :math:`[-4.5, 4.5]^2`, like the paper's Fig. 2;
``loss_history.csv`` holds the training losses.

Run::

    python -m models.ffjord_toy            # full settings (all eight toys)
    python -m models.ffjord_toy --quick    # two toys, tiny settings (under a minute)
    python -m models --only ffjord_toy     # full, through the registry

Checkpoints go to ``<out>/checkpoints/`` (full settings only), named after the settings; a finished
fit is reloaded, an unfinished one resumed.

Measured at full settings (seed 0; ``docs/papers/ffjord.md`` has the whole table): test NLL
2.841 on ``8gaussians`` (entropy 2.832, target met with a gap of 0.009) and 3.580 on ``checkerboard``
(entropy 3.466, gap 0.114); the other six end 0.008-0.23 nats above their entropies (``rings`` the
furthest). Wall time: 16.5 min on 2 CPU cores shared with other jobs (833 s of CPU time); quick
mode about 15 s.

Paper: W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud, "FFJORD: free-form
continuous dynamics for scalable reversible generative models", ICLR 2019, Sec. 5.1 and Fig. 2
(the paper shows the toy results as figures; the settings here are this project's, sized for one
CPU core). RNODE: C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. Oberman, "How to train your neural
ODE: the world of Jacobian and kinetic regularization", ICML 2020.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyro
import pyro.distributions as dist
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO

from models import format_report, row
from models.common.data import toy2d
from models.common.results import run_label
from pyroflows import validation
from pyroflows.infer import FlowMatching, fit
from pyroflows.transforms import CNF, cnf, cnf_regularization
from pyroflows.transforms.stacks import FlowSequence
from pyroflows.validation import check_positive

PAPER = (
    'W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud, "FFJORD: free-form continuous dynamics '
    'for scalable reversible generative models", ICLR 2019, Sec. 5.1, Fig. 2'
)
EXPERIMENT = "ffjord_toy"
#: targets on the test NLL: entropy + this many nats
BARS = {"8gaussians": 0.15, "checkerboard": 0.30}


@dataclass(frozen=True)
class Settings:
    """Training and read-out settings; :data:`FULL` and :data:`QUICK` are the presets."""

    toys: tuple[str, ...] = toy2d.NAMES
    iterations: int = 1200
    #: ``(toy, iterations)`` pairs that override ``iterations``
    iterations_for: tuple[tuple[str, int], ...] = (("checkerboard", 2400),)
    batch: int = 512
    hidden: tuple[int, ...] = (64, 64, 64)
    blocks: int = 1  # CNFs in sequence
    lr: float = 5e-3
    lr_final: float = 1e-4  # cosine decay from lr to lr_final
    kinetic_energy: float = 0.01
    jacobian_norm: float = 0.01
    train_method: str = "rk4"
    train_step: float = 0.25  # of the normalised time: 4 RK4 steps
    eval_method: str = "dopri5"
    eval_tol: float = 1e-5
    test_samples: int = 20_000
    svi_toy: str | None = "8gaussians"  # the Pyro-likelihood fit (None: skip)
    svi_iterations: int = 400
    figure_points: int = 121
    figure_samples: int = 100_000
    checkpoint: bool = True
    #: torch threads while running (1 is fastest for these small steps on a shared CPU); None keeps torch's
    threads: int | None = 1

    def steps_for(self, toy: str) -> int:
        return dict(self.iterations_for).get(toy, self.iterations)

    def tag(self, toy: str) -> str:
        """Checkpoint name part: every setting that changes the fit of ``toy``."""
        hidden = "-".join(map(str, self.hidden))
        return (
            f"{toy}_it{self.steps_for(toy)}_b{self.batch}_h{hidden}x{self.blocks}_lr{self.lr:g}-{self.lr_final:g}"
            f"_ke{self.kinetic_energy:g}_jn{self.jacobian_norm:g}_{self.train_method}{self.train_step:g}"
        )


FULL = Settings()
QUICK = Settings(
    toys=("8gaussians", "checkerboard"), iterations=150, iterations_for=(), batch=256, hidden=(32, 32), lr=1e-2, lr_final=5e-4,
    test_samples=2000, svi_iterations=60, figure_points=61, figure_samples=20_000, checkpoint=False,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the flow


def make_flow(settings: Settings, dim: int = 2) -> FlowSequence:
    """``settings.blocks`` CNFs (each the identity at the start) with the exact trace and the training solver."""
    parts = [
        cnf(
            dim, hidden=settings.hidden, trace="exact", method=settings.train_method, step_size=settings.train_step,
            kinetic_energy=settings.kinetic_energy, jacobian_norm=settings.jacobian_norm,
        )
        for _ in range(settings.blocks)
    ]  # fmt: skip
    return FlowSequence(parts)


def flow_distribution(flow: torch.nn.Module, dim: int = 2) -> dist.TransformedDistribution:
    """:math:`q`: the standard Normal on :math:`\\mathbb R^{dim}` pushed through ``flow``."""
    p = next(flow.parameters())
    base = dist.Normal(torch.zeros(dim, dtype=p.dtype, device=p.device), 1.0).to_event(1)
    return dist.TransformedDistribution(base, [flow])


def cnfs(flow: torch.nn.Module) -> list[CNF]:
    return [m for m in flow.modules() if isinstance(m, CNF)]


def nfe(flow: torch.nn.Module) -> int:
    """Forward NFE counted by every CNF of ``flow`` since their last :meth:`~pyroflows.transforms.CNF.reset_nfe`."""
    return sum(m.nfe_forward for m in cnfs(flow))


@contextlib.contextmanager
def solver(flow: torch.nn.Module, method: str, tol: float):
    """Integrate every CNF of ``flow`` with ``method`` at ``atol = rtol = tol`` inside the block."""
    saved = [(m.method, m.atol, m.rtol) for m in cnfs(flow)]
    for m in cnfs(flow):
        m.method, m.atol, m.rtol = method, float(tol), float(tol)
    try:
        yield flow
    finally:
        for m, (method_, atol, rtol) in zip(cnfs(flow), saved, strict=True):
            m.method, m.atol, m.rtol = method_, atol, rtol


def lr_factor(step: int, settings: Settings, steps: int) -> float:
    """Cosine decay of the learning rate from ``lr`` (step 0) to ``lr_final`` (last step), as a factor of ``lr``."""
    floor = settings.lr_final / settings.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))


def fit_flow(
    toy: str, settings: Settings, seed: int = 0, checkpoint: Path | None = None, progress: bool = True, steps: int | None = None
) -> tuple[FlowSequence, pd.DataFrame]:
    """Maximum-likelihood fit of a CNF to ``toy`` in a plain torch loop; returns the flow and the history.

    Each step draws a fresh batch and takes an Adam step on the batch mean of :math:`-\\log q(x)`
    plus :func:`~pyroflows.transforms.cnf_regularization` (the recorded loss is the NLL alone).
    The data generator's state is checkpointed with the flow, so a resumed fit sees the same batches.
    """
    steps = settings.steps_for(toy) if steps is None else steps
    torch.manual_seed(seed)
    data_rng = torch.Generator().manual_seed(seed)
    flow = make_flow(settings)
    q = flow_distribution(flow)
    opt = torch.optim.Adam(flow.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, settings, steps))

    def step(i: int):
        x = toy2d.sample(toy, settings.batch, data_rng)
        nll = -q.log_prob(x).mean()
        loss = nll + cnf_regularization(flow) if settings.kinetic_energy or settings.jacobian_norm else nll
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return nll

    with validation(False):  # fit() checks the recorded loss; skip the per-call input checks
        history = fit(
            step, steps, {"flow": flow, "opt": opt, "sched": sched, "data": data_rng},
            checkpoint=checkpoint, log_every=25, progress=progress, desc=toy,
        )  # fmt: skip
    return flow, history


def fit_flow_matching(
    toy: str,
    settings: Settings,
    seed: int = 0,
    steps: int | None = None,
    ot: bool = True,
    progress: bool = True,
    lr: float | None = None,
    time_loc: float | None = None,
) -> tuple[FlowSequence, pd.DataFrame]:
    """The CNF of :func:`fit_flow` (one block) fitted by flow matching instead of maximum likelihood
    (:class:`~pyroflows.infer.FlowMatching`, minibatch OT pairing when ``ot``): the same network,
    batch size and cosine learning-rate schedule (from the peak ``lr``, ``settings.lr`` when None,
    down to ``settings.lr_final``), no ODE solve and so no RNODE penalty while training. The
    training times are uniform on [0, 1], or logit-normal when ``time_loc`` is set: the sigmoid of
    a Normal with mean ``time_loc`` and scale 1 (times near the data end when ``time_loc > 0``).
    The recorded history is the flow-matching loss."""
    if settings.blocks != 1:
        raise ValueError(f"settings.blocks: flow matching trains one CNF, got {settings.blocks}")
    if check_positive("lr", lr, allow_none=True) is not None:
        settings = replace(settings, lr=float(lr))
    steps = settings.steps_for(toy) if steps is None else steps
    torch.manual_seed(seed)
    data_rng = torch.Generator().manual_seed(seed)
    flow = make_flow(replace(settings, kinetic_energy=0.0, jacobian_norm=0.0))
    times = None
    if time_loc is not None:
        if isinstance(time_loc, bool) or not isinstance(time_loc, (int, float)) or not math.isfinite(time_loc):
            raise ValueError(f"time_loc: expected a finite number or None, got {time_loc!r}")
        times = torch.distributions.TransformedDistribution(
            torch.distributions.Normal(float(time_loc), 1.0), [torch.distributions.SigmoidTransform()]
        )
    loss_fn = FlowMatching(cnfs(flow)[0], ot=ot, time_distribution=times)
    opt = torch.optim.Adam(flow.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, settings, steps))

    def step(i: int):
        loss = loss_fn(toy2d.sample(toy, settings.batch, data_rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    with validation(False):
        history = fit(step, steps, log_every=25, progress=progress, desc=f"{toy} (flow matching)")
    return flow, history


def likelihood_model(flow: torch.nn.Module, x: torch.Tensor) -> None:
    """Pyro model whose log joint is the log-likelihood :math:`\\sum_i \\log q(x_i)`: the flow's
    distribution observed at the data, in a plate."""
    pyro.module("flow", flow)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", flow_distribution(flow), obs=x)


def empty_guide(flow: torch.nn.Module, x: torch.Tensor) -> None:
    """No latent variables: the ELBO of :func:`likelihood_model` is then its log-likelihood."""


def fit_with_svi(
    toy: str, settings: Settings, seed: int = 0, progress: bool = True, steps: int | None = None
) -> tuple[FlowSequence, pd.DataFrame]:
    """The fit of :func:`fit_flow` through Pyro: SVI on :func:`likelihood_model` with
    :func:`empty_guide`, Adam through Pyro's ``LambdaLR`` with the same cosine schedule.

    The loss is ``Trace_ELBO``'s differentiable loss (the negative log-likelihood of the batch,
    since the guide has no latent variables) divided by the batch size, plus the RNODE penalty of
    the solve it just ran: the plain loop's loss, so both take the same steps from the same start.
    The recorded history is the batch-mean NLL.
    """
    steps = settings.svi_iterations if steps is None else steps
    torch.manual_seed(seed)
    pyro.clear_param_store()
    data_rng = torch.Generator().manual_seed(seed)
    flow = make_flow(settings)
    optim = pyro.optim.LambdaLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": settings.lr}, "lr_lambda": lambda i: lr_factor(i, settings, steps)}
    )
    elbo = Trace_ELBO()
    penalty = bool(settings.kinetic_energy or settings.jacobian_norm)

    def loss(model, guide, *args):
        nll = elbo.differentiable_loss(model, guide, *args) / args[1].shape[0]
        return nll + cnf_regularization(flow) if penalty else nll  # the penalty of the solve just run

    svi = SVI(likelihood_model, empty_guide, optim, loss=loss)

    def step(i: int):
        value = svi.step(flow, toy2d.sample(toy, settings.batch, data_rng))
        optim.step()  # the learning-rate schedule
        return value - (float(cnf_regularization(flow).detach()) if penalty else 0.0)

    with validation(False):
        history = fit(step, steps, log_every=25, progress=progress, desc=f"{toy} (SVI)")
    return flow, history


# ----------------------------------------------------------------------------------------------
# read-outs


@torch.no_grad()
def log_density(flow: torch.nn.Module, x: torch.Tensor, settings: Settings, chunk: int = 20_000) -> tuple[torch.Tensor, int]:
    """:math:`\\log q(x)` with the evaluation solver (eval mode, exact trace) and the NFE it took
    (summed over chunks of ``chunk`` points)."""
    was_training = flow.training
    flow.eval()
    for m in cnfs(flow):
        m.reset_nfe()
    q = flow_distribution(flow)
    try:
        with solver(flow, settings.eval_method, settings.eval_tol), validation(False):
            out = torch.cat([q.log_prob(part) for part in x.split(chunk)])
    finally:
        flow.train(was_training)
    return out, nfe(flow)


def gaussian_nll(x: torch.Tensor) -> float:
    """NLL per point of the maximum-likelihood Gaussian of ``x`` on ``x`` itself (float64)."""
    x = x.double()
    cov = torch.cov(x.T)
    return float(-dist.MultivariateNormal(x.mean(0), cov).log_prob(x).mean())


def test_points(toy: str, settings: Settings, seed: int = 0) -> torch.Tensor:
    """The test set of ``toy``: fresh samples from a seed no training batch uses."""
    return toy2d.sample(toy, settings.test_samples, 10_007 + 1_000 * seed + toy2d.NAMES.index(toy))


def evaluate(flow: torch.nn.Module, toy: str, settings: Settings, seed: int = 0) -> dict:
    """Test NLL with its standard error, the Gaussian-fit NLL, the NFE of the test solve, the learned time."""
    x = test_points(toy, settings, seed)
    start = time.perf_counter()
    lq, evals = log_density(flow, x, settings)
    nll = -lq.double()
    return {
        "nll": float(nll.mean()), "nll_se": float(nll.std() / math.sqrt(len(nll))), "gaussian_nll": gaussian_nll(x),
        "nfe_test": evals, "eval_seconds": time.perf_counter() - start,
        "time": [round(float(m.integration_time.detach()), 3) for m in cnfs(flow)],
    }  # fmt: skip


@torch.no_grad()
def train_nfe(flow: torch.nn.Module, settings: Settings) -> int:
    """NFE of one training-mode solve (fixed for a fixed-step solver)."""
    for m in cnfs(flow):
        m.reset_nfe()
    x = toy2d.sample("8gaussians", 8)
    with validation(False):
        flow_distribution(flow).log_prob(x)
    return nfe(flow)


# ----------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_densities(
    flows: dict,
    settings: Settings,
    path: Path,
    seed: int = 0,
    limit: float = toy2d.LIMIT,
    label: str = "",
    rows: dict | None = None,
    title: str = "FFJORD Fig. 2: data (top), learned CNF densities (bottom)",
) -> None:
    """Fig. 2 of the paper: for each toy, a histogram of the data (top) and the learned density (bottom).

    ``rows`` (``{row label: {toy: flow}}``) draws one density row per entry instead of the single
    "FFJORD density" row of ``flows``, for example one fit per training objective."""
    plt = _plt()
    rows = rows or {"FFJORD density": flows}
    toys = list(next(iter(rows.values())))
    axis = torch.linspace(-limit, limit, settings.figure_points)
    x2, x1 = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([x1, x2], -1).reshape(-1, 2)
    fig, axes = plt.subplots(1 + len(rows), len(toys), figsize=(2.2 * max(len(toys), 2), 2.3 * (1 + len(rows))), squeeze=False)
    extent = (-limit, limit, -limit, limit)
    for c, toy in enumerate(toys):
        data = toy2d.sample(toy, settings.figure_samples, 20_011 + seed).numpy()
        axes[0, c].hist2d(data[:, 0], data[:, 1], bins=settings.figure_points - 1, range=[[-limit, limit], [-limit, limit]], cmap="viridis")
        axes[0, c].set_title(toy, fontsize=9)
        for r, fits in enumerate(rows.values(), start=1):
            density = log_density(fits[toy], grid, settings)[0].exp().reshape(x1.shape)
            axes[r, c].imshow(density.numpy(), origin="lower", extent=extent, cmap="viridis", interpolation="nearest")
        for r in range(1 + len(rows)):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].set_xlim(-limit, limit)
            axes[r, c].set_ylim(-limit, limit)
    axes[0, 0].set_ylabel("data", fontsize=9)
    for r, name in enumerate(rows, start=1):
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"{title}\n({label})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# the experiment


def toy_seed(seed: int, toy: str) -> int:
    """One seed per toy: a fit does not depend on which others run."""
    return 1_000 * seed + toy2d.NAMES.index(toy)


def _row(toy: str, metric: str, value, **kw) -> dict:
    return row(EXPERIMENT, toy, metric, value, **kw)


def reproduce(settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Fit and evaluate a CNF on every toy of ``settings`` (and the Pyro-likelihood fit on
    ``settings.svi_toy``), write ``densities.png`` and ``loss_history.csv`` under ``out_dir``.
    Returns the rows and ``toy -> metrics``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    start_all = time.perf_counter()
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    flows, results, rows, histories = {}, {}, [], []
    evaluation = f"{settings.test_samples} fresh samples, {settings.eval_method} at tol {settings.eval_tol:g}, exact trace"
    try:
        for toy in settings.toys:
            entropy = toy2d.ENTROPY[toy]
            steps = settings.steps_for(toy)
            checkpoint = ckpt_dir / f"{settings.tag(toy)}_s{seed}.pt" if settings.checkpoint else None
            start = time.perf_counter()
            flow, history = fit_flow(toy, settings, toy_seed(seed, toy), checkpoint, progress)
            seconds = time.perf_counter() - start
            m = evaluate(flow, toy, settings, seed)
            m.update(entropy=entropy, train_seconds=seconds, steps=steps, nfe_train=train_nfe(flow, settings))
            flows[toy], results[toy] = flow, m
            histories.append(history.assign(toy=toy, fit="torch"))
            rows.append(
                _row(toy, "test_nll", m["nll"], baseline=entropy, headline=toy not in BARS,
                     note=f"baseline: the entropy of the generator, the lowest reachable; NLL s.e. {m['nll_se']:.4f}; {evaluation}")
            )  # fmt: skip
            rows.append(_row(toy, "gaussian_nll", m["gaussian_nll"], baseline=entropy, note="NLL of the Gaussian fitted to the test set"))
            if toy in BARS:
                rows.append(
                    _row(toy, "nll_gap", m["nll"] - entropy, target=BARS[toy], target_kind="<=", quick_expected=False,
                         quick_reason=f"{steps} steps of a {'-'.join(map(str, settings.hidden))} network; full: {FULL.steps_for(toy)}",
                         headline=True, paper_source="Fig. 2, no number",
                         note=f"test NLL minus the entropy (NLL <= {entropy + BARS[toy]:.3f}); the paper shows Fig. 2 only")
                )  # fmt: skip
            rows.append(
                _row(toy, "nfe_test", m["nfe_test"], note=f"NFE of the test solve ({settings.eval_method}, tol {settings.eval_tol:g})")
            )
            rows.append(
                _row(
                    toy,
                    "nfe_train_step",
                    m["nfe_train"],
                    note=f"NFE per training solve ({settings.train_method}, step {settings.train_step:g})",
                )
            )
            rows.append(
                _row(toy, "train_seconds", seconds, note=f"{steps} steps of batch {settings.batch}; a reloaded checkpoint takes less")
            )
            rows.append(
                _row(
                    toy, "integration_time", m["time"][0] if len(m["time"]) == 1 else sum(m["time"]), note="learned T (summed over blocks)"
                )
            )
        if settings.svi_toy and settings.svi_iterations:
            toy = settings.svi_toy
            start = time.perf_counter()
            flow, history = fit_with_svi(toy, settings, toy_seed(seed, toy) + 7, progress)
            seconds = time.perf_counter() - start
            m = evaluate(flow, toy, settings, seed)
            m.update(entropy=toy2d.ENTROPY[toy], train_seconds=seconds, steps=settings.svi_iterations)
            results[f"{toy} (SVI)"] = m
            histories.append(history.assign(toy=toy, fit="pyro_svi"))
            rows.append(
                _row(toy, "svi_test_nll", m["nll"], baseline=toy2d.ENTROPY[toy],
                     note=f"Pyro likelihood pyro.sample('x', q, obs=x) under SVI, {settings.svi_iterations} steps; "
                          f"s.e. {m['nll_se']:.4f}; {evaluation}")
            )  # fmt: skip
            # the Pyro likelihood and the plain log_prob agree on the test points
            x = test_points(toy, settings, seed)[:2000]
            with torch.no_grad(), validation(False), solver(flow, settings.eval_method, settings.eval_tol):
                flow.eval()
                trace = pyro.poutine.trace(likelihood_model).get_trace(flow, x)
                diff = abs(float(trace.log_prob_sum()) - float(flow_distribution(flow).log_prob(x).sum())) / len(x)
                flow.train()
            rows.append(
                _row(
                    toy,
                    "svi_loglik_mismatch",
                    diff,
                    note="|Pyro trace log-likelihood - plain log_prob| per point, 2000 test points; 0 ideally",
                )
            )
            rows.append(_row(toy, "svi_train_seconds", seconds, note=f"{settings.svi_iterations} SVI steps of batch {settings.batch}"))
    finally:
        torch.set_num_threads(threads)
    pd.concat(histories).to_csv(out_dir / "loss_history.csv", index=False)
    with _threads(settings):
        plot_densities(flows, settings, out_dir / "densities.png", seed, label=run_label(settings, QUICK, FULL, seed))
    rows.append(
        _row("all", "wall time (s)", time.perf_counter() - start_all,
             note=f"{settings.threads or torch.get_num_threads()} torch thread(s); fits reloaded from checkpoints take less")
    )  # fmt: skip
    return rows, results


@contextlib.contextmanager
def _threads(settings: Settings):
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run(quick: bool, out_dir: Path, seed: int = 0, progress: bool = True) -> list[dict]:
    """The registry entry point: :func:`reproduce` at :data:`QUICK` or :data:`FULL` settings, rows only."""
    return reproduce(QUICK if quick else FULL, out_dir, seed, progress)[0]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two toys, tiny settings (under a minute)")
    parser.add_argument("--toys", nargs="*", choices=toy2d.NAMES, default=None, help="a subset of the toys")
    parser.add_argument("--iterations", type=int, default=None, help="training steps of every toy (drops the per-toy overrides)")
    parser.add_argument("--out", type=Path, default=Path("results") / EXPERIMENT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.toys:
        settings = replace(settings, toys=tuple(args.toys))
    if args.iterations:
        settings = replace(settings, iterations=args.iterations, iterations_for=())
    rows, _ = reproduce(settings, args.out, args.seed, not args.no_progress)
    print(format_report(rows, {EXPERIMENT: PAPER}, quick=args.quick, all_rows=True))
    print(f"figure: {args.out}/densities.png")
    return rows


if __name__ == "__main__":
    main()
