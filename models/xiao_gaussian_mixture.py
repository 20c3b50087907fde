r"""Xiao, Yan & Amit (2019), Sec. 5.1: conditional flows on the eight-mode Gaussian mixture.

The posterior :math:`p(x \mid y)` of the octagon mixture (:mod:`models.common.data.gaussian_mixture`)
is learned under two label mappings: ``"eight"`` (one label per mode) and ``"four"`` (labels
``[0, 0, 0, 0, 1, 1, 2, 3]``, so label 0 covers the four upper modes). Four models share the same
invertible network (8 affine coupling blocks with fixed random permutations, conditioners of
3 fully connected layers, :math:`z \in \mathbb R^2`, padding noise 0.05). At full settings both
mappings use the paper's 8-column one-hot label, so :math:`x` is padded with 8 entries and the
network is 10-dimensional (four columns stay 0 under the four-label mapping); quick mode uses the
compact encoding (``Settings.label_dim``):

* ``ours``: :class:`~pyroflows.distributions.RelaxedConditionalFlow` (:math:`\epsilon = 0.1`), a
  Pyro likelihood ``pyro.sample("x", flow.condition(y), obs=x)`` trained by SVI with an empty
  guide, i.e. maximum likelihood of the paper's eq. (6);
* ``inn_full``: the INN of Ardizzone et al. with all four losses and their backward-loss ramp
  (:class:`~pyroflows.infer.INNLoss` defaults; Fig. 5.2 left);
* ``inn_forward``: the INN with the forward losses only, ``w_x = w_rec = 0`` (Fig. 5.2 middle);
* ``inn_fast_ramp``: all four losses, but the backward-MMD weight ramps up ten times faster
  (``ramp_iters = iterations / 10``, full weight after about 9 % of training instead of 89 %;
  Fig. 5.2 right, "we change the speed of the weight increase").

The paper's settings (:data:`PAPER_SETTINGS`): width 512, 400 iterations of batch 1600 drawn
afresh, Adam with learning rate 1e-3. Full settings (:data:`FULL`) are those with 2400 iterations and
the learning rate decaying exponentially to half of it: at 400 iterations the flow still leaves about
20 % of the four-mode label's samples between its modes (``docs/papers/xiao.md`` has the runs).
Reported per model and mapping: forward-pass accuracy on fresh test data
(argmax of :math:`f_c(x)`), the largest (over labels) distance of the posterior sample mean from
the true mean and relative Frobenius error of the posterior sample covariance, and for the
four-label mapping the share of label-0 samples in each of its four modes and elsewhere. Figures:
``fig5_1.png`` (forward predictions and posterior samples of ``ours``) and ``fig5_2.png`` (posterior
samples of every model side by side).

Run::

    python -m models.xiao_gaussian_mixture                    # full settings, all four models
    python -m models.xiao_gaussian_mixture --variants ours    # full settings, the one-loss flow only
    python -m models.xiao_gaussian_mixture --iterations 400 --lr-decay 1    # the paper's settings
    python -m models.xiao_gaussian_mixture --quick            # small settings, about a minute
    python -m models.xiao_gaussian_mixture --iterations 200 --width 256 --out results/xgm

Checkpoints go to ``<out>/checkpoints/`` and are named after the settings; a finished checkpoint is
reloaded instead of retrained, an unfinished one resumed.

Wall time on one idle CPU core: ``ours`` takes about 25 min per mapping at full settings (4 min at
the paper's 400 iterations); each INN with backward losses runs the network three times per step,
so all four models on both mappings take several hours (``--variants`` picks a subset).

Reference: Z. Xiao, Q. Yan, Y. Amit, "A method to model conditional distributions with normalizing
flows", arXiv:1911.02052, 2019; L. Ardizzone et al., "Analyzing inverse problems with invertible
neural networks", ICLR 2019.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

from models import format_report, row
from models.common.data.gaussian_mixture import (
    STD,
    assign_modes,
    modes_of_label,
    num_labels,
    octagon_centres,
    octagon_mixture,
    posterior_moments,
)
from models.common.metrics import accuracy, category_shares, relative_frobenius_error, sample_covariance, sample_mean_error
from models.common.results import OKABE_ITO, run_label
from pyroflows import validation
from pyroflows.distributions import RelaxedConditionalFlow
from pyroflows.infer import INNLoss, fit

PAPER = 'Z. Xiao, Q. Yan, Y. Amit, "A method to model conditional distributions with normalizing flows", arXiv:1911.02052 (2019), Sec. 5.1'
EXPERIMENT = "xiao_gaussian_mixture"
MAPPINGS = ("eight", "four")
VARIANTS = ("ours", "inn_full", "inn_forward", "inn_fast_ramp")

#: this project's targets for ``ours`` (met at full settings; ``docs/papers/xiao.md``)
BARS = {"accuracy": 0.97, "mean_error": 0.1, "cov_error": 0.5, "mode_share": 0.25, "mode_share_tol": 0.08, "elsewhere": 0.05}


@dataclass(frozen=True)
class Settings:
    """Network and training settings; :data:`PAPER_SETTINGS` are the paper's, :data:`FULL` train longer."""

    width: int = 512
    iterations: int = 400
    batch: int = 1600
    num_blocks: int = 8
    lr: float = 1e-3
    #: Adam's (beta1, beta2)
    betas: tuple[float, float] = (0.9, 0.999)
    #: learning rate at the last iteration as a fraction of ``lr`` (exponential decay; 1: constant)
    lr_decay: float = 1.0
    eps: float = 0.1
    pad_noise: float = 0.05
    z_dim: int = 2
    #: width of the one-hot label vector; None: the mapping's number of labels. The paper keeps the
    #: eight-column encoding of the eight-label task for the four-label one (x padded with 8 dims,
    #: z in R^2), so four of its columns are always 0.
    label_dim: int | None = None
    num_test: int = 8000
    num_samples: int = 8000
    #: torch threads while training; 1 is fastest for these small networks on a shared CPU (2 threads
    #: on 2 busy cores ran 2-10x slower per step); None keeps torch's setting
    threads: int | None = 1

    def tag(self) -> str:
        """Checkpoint name part: every setting that changes training (the optional ones only when not default)."""
        tag = f"w{self.width}_it{self.iterations}_b{self.batch}_k{self.num_blocks}"
        for name, short in (("lr", "lr"), ("eps", "eps"), ("pad_noise", "pad"), ("z_dim", "z"), ("label_dim", "y"), ("lr_decay", "lrd")):
            value = getattr(self, name)
            if value != getattr(Settings, name):
                tag += f"_{short}{value:g}"
        if self.betas != Settings.betas:
            tag += "_b" + "-".join(f"{b:g}" for b in self.betas)
        return tag


#: the paper's: both mappings use the 8-column one-hot, so the network is 10-d (x padded with 8, z in R^2)
PAPER_SETTINGS = Settings(label_dim=8)
#: the paper's network and data, trained 6x longer with the learning rate decaying to half
FULL = replace(PAPER_SETTINGS, iterations=2400, lr_decay=0.5)
QUICK = Settings(width=64, iterations=300, batch=400, num_test=4000, num_samples=4000)


def label_width(mapping: str, settings: Settings) -> int:
    """Width of the one-hot label vector the flow is conditioned on (see :attr:`Settings.label_dim`)."""
    num = num_labels(mapping)
    if settings.label_dim is None:
        return num
    if settings.label_dim < num:
        raise ValueError(f"label_dim: expected at least the {num} labels of mapping {mapping!r}, got {settings.label_dim}")
    return settings.label_dim


def encode_labels(y: torch.Tensor, mapping: str, settings: Settings) -> torch.Tensor:
    """One-hot labels ``y`` of shape ``(..., num_labels)`` widened with zero columns to :func:`label_width`."""
    return torch.nn.functional.pad(y, (0, label_width(mapping, settings) - y.shape[-1]))


def make_flow(mapping: str, settings: Settings, seed: int) -> RelaxedConditionalFlow:
    """The network shared by every model: the same initial weights and permutations for a given seed."""
    torch.manual_seed(seed)
    return RelaxedConditionalFlow(
        x_dim=2,
        y_dim=label_width(mapping, settings),
        z_dim=settings.z_dim,
        eps=settings.eps,
        pad_noise=settings.pad_noise,
        num_blocks=settings.num_blocks,
        hidden=(settings.width, settings.width),
        seed=seed,
    )


def _batch(mapping: str, settings: Settings, seed: int, step: int):
    """Training batch ``step``: fresh data, reproducible after a resume."""
    x, y, _ = octagon_mixture(settings.batch, mapping, generator=torch.Generator().manual_seed(1_000_003 * seed + step))
    return x, encode_labels(y, mapping, settings)


def likelihood_model(flow: RelaxedConditionalFlow):
    r"""The Pyro model that uses the flow as its likelihood, and an empty guide (no latent sites).

    ``model(x, y)`` observes ``x ~ flow.condition(y)`` in a plate over the batch, so with the empty
    guide the ELBO is exactly :math:`\sum_i \log p([x_i, x_{0,i}] \mid y_i)` (eq. 6).
    """

    def model(x, y):
        pyro.module("flow", flow)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", flow.condition(y), obs=x)

    def guide(x, y):
        pass

    return model, guide


def _gamma(settings: Settings) -> float:
    """Per-iteration learning-rate factor that reaches ``lr_decay`` after ``iterations`` steps."""
    return settings.lr_decay ** (1.0 / max(1, settings.iterations))


def train_ours(
    flow: RelaxedConditionalFlow, mapping: str, settings: Settings, seed: int, checkpoint: Path | None, progress: bool
) -> pd.DataFrame:
    """Maximum likelihood of eq. (6) through Pyro: SVI on :func:`likelihood_model` with Adam.

    The recorded loss is the negative ELBO divided by the batch size, i.e. the mean negative
    log-likelihood of ``[x, x_0]`` in nats.
    """
    pyro.clear_param_store()
    flow.train()
    adam = {"lr": settings.lr, "betas": settings.betas}
    optim = pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": adam, "gamma": _gamma(settings)})
    svi = SVI(*likelihood_model(flow), optim, Trace_ELBO())

    def step(i):
        x, y = _batch(mapping, settings, seed, i)
        loss = svi.step(x, y) / settings.batch
        optim.step()
        return loss

    history = fit(
        step, settings.iterations, {"flow": flow, "optim": optim}, checkpoint=checkpoint, progress=progress, desc=f"{mapping}/ours"
    )
    flow.eval()
    return history


def inn_loss(flow: RelaxedConditionalFlow, variant: str, settings: Settings) -> INNLoss:
    """The INN objective of each baseline variant (see the module docstring)."""
    common = dict(y_noise=settings.eps, pad_noise=settings.pad_noise, ramp_iters=settings.iterations)
    if variant == "inn_full":
        return INNLoss(flow, **common)
    if variant == "inn_forward":
        return INNLoss(flow, w_x=0.0, w_rec=0.0, **common)
    if variant == "inn_fast_ramp":
        return INNLoss(flow, **{**common, "ramp_iters": max(1, settings.iterations // 10)})
    raise ValueError(f"variant: expected one of {VARIANTS[1:]}, got {variant!r}")


def train_inn(
    flow: RelaxedConditionalFlow, mapping: str, variant: str, settings: Settings, seed: int, checkpoint: Path | None, progress: bool
) -> pd.DataFrame:
    """The INN baseline on the same network, trained with Adam on :class:`~pyroflows.infer.INNLoss`."""
    loss_fn = inn_loss(flow, variant, settings)
    optim = torch.optim.Adam(flow.parameters(), lr=settings.lr, betas=settings.betas)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, _gamma(settings))
    flow.train()

    def step(i):
        x, y = _batch(mapping, settings, seed, i)
        optim.zero_grad()
        loss, _ = loss_fn(x, y, i)
        loss.backward()
        optim.step()
        schedule.step()
        return loss.detach()

    history = fit(
        step,
        settings.iterations,
        {"flow": flow, "optim": optim, "schedule": schedule},
        checkpoint=checkpoint,
        progress=progress,
        desc=f"{mapping}/{variant}",
    )
    flow.eval()
    return history


@torch.no_grad()
def evaluate(flow: RelaxedConditionalFlow, mapping: str, settings: Settings, seed: int) -> dict:
    """Forward accuracy, posterior moment errors and mode shares of a trained flow (in eval mode).

    Returns a dict with the metrics and, for the figures, the test points with their predicted
    labels and the posterior samples of every label.
    """
    flow.eval()
    x, y, _ = octagon_mixture(settings.num_test, mapping, generator=torch.Generator().manual_seed(1_000_003 * seed + 999_999))
    predicted = flow.predict(x)  # scores over all label_width columns: an unused column counts as an error
    torch.manual_seed(seed + 12345)
    num = num_labels(mapping)
    eye = encode_labels(torch.eye(num), mapping, settings)
    samples = flow.condition(eye).sample(torch.Size([settings.num_samples]))  # (n, L, 2)
    mean, cov = posterior_moments(mapping)
    mean_err = sample_mean_error(samples, mean)
    cov_err = relative_frobenius_error(sample_covariance(samples), cov)
    out = {
        "accuracy": float(accuracy(predicted, encode_labels(y, mapping, settings))),
        "mean_error": float(mean_err.max()),
        "cov_error": float(cov_err.max()),
        "mean_error_per_label": mean_err.tolist(),
        "cov_error_per_label": cov_err.tolist(),
        "test_x": x,
        "test_pred": predicted.argmax(-1),
        "samples": samples,
    }
    if mapping == "four":
        label0 = samples[:, 0]
        shares = category_shares(assign_modes(label0), modes_of_label(mapping, 0))
        out["mode_shares"] = shares.tolist()
        out["elsewhere"] = float(1 - shares.sum())
    return out


#: the Fig. 5.2 panel of each INN variant, and what the paper shows there (no numbers)
_INN_PANELS = {
    "inn_full": "Fig. 5.2 left, where the INN matches ours",
    "inn_forward": "Fig. 5.2 middle, visibly worse than ours",
    "inn_fast_ramp": "Fig. 5.2 right, visibly worse than ours",
}
#: why quick mode (width 64, 300 steps of 400 points) is not expected to meet a target, per
#: (mapping, metric); absent: expected to meet it
_QUICK_SHORT = "width 64, 300 steps; full: width 512, 2400 steps"
QUICK_REASONS = {
    ("eight", "posterior_cov_rel_error_max"): _QUICK_SHORT,
    ("four", "posterior_mean_error_max"): _QUICK_SHORT,
    ("four", "posterior_cov_rel_error_max"): _QUICK_SHORT,
    ("four", "label0_share_max_deviation"): _QUICK_SHORT,
    ("four", "label0_share_elsewhere"): _QUICK_SHORT,
}


def result_rows(variant: str, mapping: str, metrics: dict) -> list[dict]:
    """The result rows of one trained model: ``ours`` carries the targets (headline rows); the INN
    variants are reported beside it, as the paper's Fig. 5.2 shows them, without targets."""
    setting = f"{variant}/{mapping}"
    ours = variant == "ours"

    def result(metric, value, kind=None, target=None, note=None, headline=True):
        if not ours:
            kind = target = None
            note = f"comparison with ours; the paper's {_INN_PANELS[variant]} (figure only)"
        reason = QUICK_REASONS.get((mapping, metric))
        return row(
            EXPERIMENT,
            setting,
            metric,
            value,
            target=target,
            target_kind=kind,
            quick_expected=None if target is None else reason is None,
            quick_reason=reason if target is not None else None,
            headline=ours and headline,
            paper_source="Fig. 5.1, no number" if ours else None,
            note=note,
        )

    rows = [
        result("forward_accuracy", metrics["accuracy"], ">=", BARS["accuracy"], "share of test points whose label the forward pass gives"),
        result("posterior_mean_error_max", metrics["mean_error"], "<=", BARS["mean_error"], "largest over labels"),
        result("posterior_cov_rel_error_max", metrics["cov_error"], "<=", BARS["cov_error"], "largest over labels, relative Frobenius"),
    ]
    if "mode_shares" in metrics:
        centre, tol = BARS["mode_share"], BARS["mode_share_tol"]
        for mode, share in zip(modes_of_label(mapping, 0), metrics["mode_shares"], strict=True):
            rows.append(
                result(f"label0_share_mode{mode}", share, note=f"target: {centre} +- {tol} (see the largest deviation)", headline=False)
            )
        deviation = max(abs(s - centre) for s in metrics["mode_shares"])
        rows.append(
            result("label0_share_max_deviation", deviation, "<=", tol, f"largest |share - {centre}| over the four modes of label 0")
        )
        rows.append(result("label0_share_elsewhere", metrics["elsewhere"], "<", BARS["elsewhere"], "true posterior: 0.011"))
    return rows


def meets_bars(metrics: dict) -> dict[str, bool]:
    """Which of the targets a model's metrics meet."""
    ok = {
        "accuracy": metrics["accuracy"] >= BARS["accuracy"],
        "mean_error": metrics["mean_error"] <= BARS["mean_error"],
        "cov_error": metrics["cov_error"] <= BARS["cov_error"],
    }
    if "mode_shares" in metrics:
        ok["mode_shares"] = all(abs(s - BARS["mode_share"]) <= BARS["mode_share_tol"] for s in metrics["mode_shares"])
        ok["elsewhere"] = metrics["elsewhere"] < BARS["elsewhere"]
    return ok


_COLOURS = OKABE_ITO  # one colour per label, told apart with the common colour-vision deficiencies


def _new_figure(rows: int, cols: int, size: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    fig = Figure(figsize=(size * cols, size * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    centres = octagon_centres()
    for ax in axes.flat:
        for cx, cy in centres.tolist():  # the 3-sd discs that count as "in the mode"
            ax.add_patch(Circle((cx, cy), 3 * STD, fill=False, color="0.75", linewidth=0.6, zorder=0))
        ax.set_xlim(-3.6, 3.6)
        ax.set_ylim(-3.6, 3.6)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _scatter(ax, points: torch.Tensor, labels: torch.Tensor, max_points: int = 2000):
    points, labels = points[:max_points], labels[:max_points]
    colours = [_COLOURS[int(k)] for k in labels]
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=colours, s=2, alpha=0.6, linewidths=0)


def _posterior_points(samples: torch.Tensor, per_label: int = 600):
    n, num, _ = samples.shape
    k = min(per_label, n)
    points = samples[:k].reshape(-1, 2)
    labels = torch.arange(num).repeat(k)
    return points, labels


def plot_fig5_1(results: dict, path: Path, label: str = "") -> None:
    """Like the paper's Fig. 5.1: test points coloured by forward prediction (left), posterior samples
    per label (right); ``label`` names the settings and seed in the title."""
    mappings = [m for m in MAPPINGS if ("ours", m) in results]
    fig, axes = _new_figure(len(mappings), 2)
    for r, mapping in enumerate(mappings):
        m = results[("ours", mapping)]
        _scatter(axes[r, 0], m["test_x"], m["test_pred"])
        _scatter(axes[r, 1], *_posterior_points(m["samples"]), max_points=10**6)
        axes[r, 0].set_title(f"{mapping}: forward-predicted labels", fontsize=9)
        axes[r, 1].set_title(f"{mapping}: samples of p(x | y), ours", fontsize=9)
    fig.suptitle(f"Xiao et al. Fig. 5.1, octagon mixture: forward predictions and posterior samples\n({label})", fontsize=9)
    fig.savefig(path, dpi=110)


def plot_fig5_2(results: dict, path: Path, label: str = "") -> None:
    """Like the paper's Fig. 5.2: posterior samples of the INN variants beside ours, one row per mapping."""
    mappings = [m for m in MAPPINGS if ("ours", m) in results]
    variants = [v for v in VARIANTS if any((v, m) in results for m in mappings)]
    fig, axes = _new_figure(len(mappings), len(variants))
    for r, mapping in enumerate(mappings):
        for c, variant in enumerate(variants):
            _scatter(axes[r, c], *_posterior_points(results[(variant, mapping)]["samples"]), max_points=10**6)
            axes[r, c].set_title(f"{variant} ({mapping})", fontsize=9)
    fig.suptitle(f"Xiao et al. Fig. 5.2: posterior samples p(x | y) of ours and the INN variants ({label})", fontsize=9)
    fig.savefig(path, dpi=110)


def reproduce(
    settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True, mappings=MAPPINGS, variants=VARIANTS
) -> tuple[list[dict], dict]:
    """Train and evaluate the models ``variants`` (default all four; ``"ours"`` is always included)
    on the label ``mappings`` (default both) and write the figures.

    Writes ``fig5_1.png``, ``fig5_2.png`` and ``loss_history.csv`` (the recorded training losses)
    under ``out_dir``. Returns the result rows and a dict ``(variant, mapping) -> metrics`` (see
    :func:`evaluate`, plus ``train_seconds``, near 0 when a finished checkpoint was reloaded).
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"variants: expected a subset of {VARIANTS}, got {sorted(unknown)}")
    variants = [v for v in VARIANTS if v == "ours" or v in variants]
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    results, rows, histories = {}, [], []
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        for mapping in mappings:
            for variant in variants:
                flow = make_flow(mapping, settings, seed)
                checkpoint = ckpt_dir / f"{mapping}_{variant}_{settings.tag()}_s{seed}.pt"
                start = time.perf_counter()
                with validation(False):  # fit() checks the loss for NaN; skip the per-layer input checks
                    if variant == "ours":
                        history = train_ours(flow, mapping, settings, seed, checkpoint, progress)
                    else:
                        history = train_inn(flow, mapping, variant, settings, seed, checkpoint, progress)
                histories.append(history.assign(model=variant, mapping=mapping))
                seconds = time.perf_counter() - start
                metrics = evaluate(flow, mapping, settings, seed)
                metrics["train_seconds"] = seconds
                results[(variant, mapping)] = metrics
                rows += result_rows(variant, mapping, metrics)
    finally:
        torch.set_num_threads(threads)
    pd.concat(histories).to_csv(out_dir / "loss_history.csv", index=False)
    label = run_label(settings, QUICK, FULL, seed)
    plot_fig5_1(results, out_dir / "fig5_1.png", label)
    plot_fig5_2(results, out_dir / "fig5_2.png", label)
    return rows, results


def run(quick: bool, out_dir: Path, seed: int = 0, progress: bool = True) -> list[dict]:
    """The registry entry point: :func:`reproduce` at :data:`QUICK` or :data:`FULL` settings, rows only."""
    return reproduce(QUICK if quick else FULL, out_dir, seed, progress)[0]


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description="Xiao et al. (2019) Sec. 5.1: the eight-mode Gaussian mixture")
    parser.add_argument("--quick", action="store_true", help="small settings (about a minute on 2 CPU cores)")
    parser.add_argument("--iterations", type=int, default=None, help="training iterations (full: 2400; the paper: 400)")
    parser.add_argument("--width", type=int, default=None, help="hidden width of the conditioners (full: 512)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (full: 1600)")
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        help="final learning rate as a fraction of 1e-3 (exponential decay; full: 0.5; the paper: 1, constant)",
    )
    parser.add_argument("--label-dim", type=int, default=None, help="one-hot width (full: 8 for both mappings)")
    parser.add_argument("--z-dim", type=int, default=None, help="latent size (full: 2)")
    parser.add_argument("--out", type=Path, default=Path("results") / EXPERIMENT, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mapping", choices=MAPPINGS, nargs="+", default=list(MAPPINGS), help="label mappings to run (default both)")
    parser.add_argument(
        "--variants", choices=VARIANTS, nargs="+", default=list(VARIANTS), help="models to train (default all; ours always)"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    options = ("iterations", "width", "batch", "lr_decay", "label_dim", "z_dim")
    overrides = {k: getattr(args, k) for k in options if getattr(args, k) is not None}
    settings = replace(settings, **overrides)
    start = time.perf_counter()
    rows, results = reproduce(
        settings, args.out, seed=args.seed, progress=not args.no_progress, mappings=args.mapping, variants=args.variants
    )
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "metrics.csv", index=False)
    print(format_report(rows, {EXPERIMENT: PAPER}, quick=args.quick, all_rows=True))
    for (variant, mapping), m in results.items():
        failed = [k for k, ok in meets_bars(m).items() if not ok]
        print(f"{variant:>14s}/{mapping:<5s} train {m['train_seconds']:7.1f} s; targets missed: {', '.join(failed) or 'none'}")
    print(f"settings: {settings}; wall time {time.perf_counter() - start:.0f} s; figures and metrics.csv in {args.out}")
    return table


if __name__ == "__main__":
    main()
