r"""MotionFlow, Sec. 5.2 / Table 2: predicting three interacting particles.

Data: the dNRI "small synth" system (:mod:`models.common.data.particles`): particles 1 and 2 move at
constant velocity, particle 3 is pushed away from either while closer than 1. Every simulation has
35 frames of ``(x, y, v_x, v_y)`` per particle; the first 10 are observed, the remaining 25 are
predicted. Positions and velocities are min-max normalised to ``[-1, 1]`` with the training set's
ranges, and errors are measured in this normalised space, as the paper's loaders do.

Model: :class:`~pyroflows.distributions.MotionFlow` on frames laid out as vectors ``(12,)``: all
particles' features are the channels of a ``(12, 1, 1)`` image. ``layout="particles"`` gives
images ``(4 features, 3 particles, 1)`` instead, whose 3x3 convolutions and encoder columns run
over particles (an earlier run with the gradient clamp: 1.20x over constant velocity at step 15,
against 1.27x for the vector layout). The flow uses the residual parameterisation (it models the
change from the previous frame). The latents of the last 6 observed frames start the dynamic
prior, and the encoder sees the window of the 4 frames before each predicted one. The system is
Markov in its state, so a short window loses nothing, and the encoder, the costliest part, runs
on small pseudo-images. Training is Pyro SVI with an empty guide, i.e. maximum likelihood of
``pyro.sample("y", mf.condition(x), obs=y)``, 6000 steps of 32 sequences with ClippedAdam
(learning rate 2e-3 decaying to 5 %) and no gradient clamp
(``grad_clamp``: ClippedAdam's ``clip_norm`` bounds every gradient *element*, and the gradients of
the summed likelihood exceed 10 almost everywhere: clamped at 10, 2000 steps gave 1.39x over
constant velocity at step 15 instead of 1.64x, and 6000 steps 1.32x). Gaussian noise of standard
deviation ``noise`` is added to the training frames at every step: the simulator is deterministic,
and a conditional density of a deterministic map has no maximum.

Read-outs: the MSE per predicted step (1, 15 and 25) of the point prediction of eq. (15) (mean of
10 samples) at temperature 0.5 (chosen before the runs), next to the paper's MotionFlow row
(1.55e-5, 2.88e-4, 4.32e-4). Rows for temperatures 0 (the rollout of zero noise) and 1 are also
reported. Baselines: constant velocity (last position moved by the last velocity, in raw units)
and the last observed frame. Targets (this project's): at steps 15 and 25 the MSE is at least 2x
below constant velocity, and at every step below the last frame; quick mode (120 steps instead of
6000) is not expected to meet the first. Figure ``trajectories.png``: one test
simulation, observed path, ground truth (circles) and prediction (squares), like the paper's
Fig. 4.

Measured at full settings (``docs/papers/motionflow.md`` has the table): seed 0, MSE 3.52e-6,
7.12e-3 and 1.02e-2 at steps 1, 15 and 25 (paper: 1.55e-5, 2.88e-4, 4.32e-4); constant velocity
1.56e-4, 1.57e-2, 2.30e-2; last frame 2.01e-4, 2.65e-2, 5.33e-2: 2.21x and 2.27x below constant
velocity at steps 15 and 25, and below the last frame at every step, so both targets are met. Seeds
1 and 2 (other data and initialisation): 10.4x and 10.9x, 7.0x and 7.3x. Training takes 12 min on
one CPU core; quick mode under a minute.

Run::

    python -m models.motionflow_particles            # full settings
    python -m models.motionflow_particles --quick    # tiny settings (under a minute)
    python -m models --only motionflow_particles

Paper: M. Zand, A. Etemad, M. Greenspan, "Flow-based Spatio-Temporal Structured Prediction of
Dynamics" (MotionFlow), Sec. 5.2, Table 2, Fig. 4; data: C. Graber, A. Schwing, "Dynamic neural
relational inference", CVPR 2020.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from models import format_report, row
from models.common.data import particles
from models.common.results import OKABE_ITO, pyplot, run_label
from pyroflows.distributions import MotionFlow
from pyroflows.infer.fit import fit

PAPER = (
    "M. Zand, A. Etemad, M. Greenspan, 'Flow-based Spatio-Temporal Structured Prediction of Dynamics' (MotionFlow), "
    "Sec. 5.2, Table 2: three interacting particles (dNRI small synth), observe 10 frames, predict 25"
)
EXPERIMENT = "motionflow_particles"
NUM_OBSERVED, NUM_FUTURE = 10, 25
#: the paper's MotionFlow row of Table 2: MSE at prediction steps 1, 15, 25
PAPER_MSE = {1: 1.55e-5, 15: 2.88e-4, 25: 4.32e-4}
STEPS = (1, 15, 25)
MAIN_TEMPERATURE = 0.5
TEMPERATURES = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Settings:
    num_train: int = 5000
    num_test: int = 300
    iterations: int = 6000
    batch_size: int = 32
    lr: float = 2e-3
    grad_clamp: float = math.inf  # ClippedAdam's clip_norm: a bound on every gradient element
    noise: float = 0.0003
    layout: str = "vector"
    history: int = 6
    num_steps: int = 3
    hidden_channels: int = 32
    fc_hidden: tuple = (64,)
    encoder_hidden: tuple = (16, 16)
    prior_hidden: int = 32
    num_samples: int = 10
    temperatures: tuple = TEMPERATURES


QUICK = Settings(
    num_train=400,
    num_test=100,
    iterations=120,
    batch_size=32,
    lr=3e-3,
    num_steps=2,
    hidden_channels=16,
    fc_hidden=(32,),
    encoder_hidden=(8, 8),
    prior_hidden=16,
)


#: frame layouts: ``"particles"``, images ``(4 features, 3 particles, 1)``; ``"vector"``, ``(12,)``
FRAME_SHAPES = {"particles": (4, 3, 1), "vector": (12,)}


def to_frames(traj: torch.Tensor, layout: str = "particles") -> torch.Tensor:
    """``(..., T, 3 particles, 4 features)`` -> frames ``(..., T, 4, 3, 1)`` or ``(..., T, 12)``."""
    return traj.transpose(-1, -2).unsqueeze(-1) if layout == "particles" else traj.flatten(-2)


def from_frames(frames: torch.Tensor, layout: str = "particles") -> torch.Tensor:
    """The inverse of :func:`to_frames`."""
    return frames.squeeze(-1).transpose(-1, -2) if layout == "particles" else frames.unflatten(-1, (3, 4))


def load_data(settings: Settings, seed: int = 0):
    """Normalised train and test trajectories ``(n, 35, 3, 4)``, raw test trajectories and the normaliser."""
    train_raw = particles.simulate(settings.num_train, NUM_OBSERVED + NUM_FUTURE, seed=1000 * seed + 1)
    test_raw = particles.simulate(settings.num_test, NUM_OBSERVED + NUM_FUTURE, seed=1000 * seed + 2)
    norm = particles.MinMax.fit(train_raw)
    return norm.normalize(train_raw).float(), norm.normalize(test_raw).float(), test_raw, norm


def make_model(settings: Settings) -> MotionFlow:
    return MotionFlow(
        FRAME_SHAPES[settings.layout],
        NUM_OBSERVED,
        NUM_FUTURE,
        residual=True,
        history=settings.history,
        num_steps=settings.num_steps,
        hidden_channels=settings.hidden_channels,
        fc_hidden=settings.fc_hidden,
        encoder_hidden=settings.encoder_hidden,
        prior_hidden=settings.prior_hidden,
    )


def train(settings: Settings, train_data: torch.Tensor, seed: int = 0, progress: bool = True, checkpoint: Path | None = None):
    """Fit MotionFlow by Pyro SVI (empty guide: maximum likelihood). Returns the model and the loss
    history (negative log-likelihood per predicted value)."""
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    mf = make_model(settings)
    frames = to_frames(train_data, settings.layout)
    per_value = NUM_FUTURE * 12

    def model(x, y):
        pyro.module("motionflow", mf)
        with pyro.plate("sequences", len(x)):
            pyro.sample("y", mf.condition(x), obs=y)

    optim = ClippedAdam({"lr": settings.lr, "clip_norm": settings.grad_clamp, "lrd": 0.05 ** (1.0 / settings.iterations)})
    svi = SVI(model, lambda x, y: None, optim, Trace_ELBO())
    g = torch.Generator().manual_seed(seed)

    def step(i):
        idx = torch.randint(len(frames), (settings.batch_size,), generator=g)
        batch = frames[idx] + settings.noise * torch.randn(frames[idx].shape, generator=g)
        return svi.step(batch[:, :NUM_OBSERVED], batch[:, NUM_OBSERVED:]) / (settings.batch_size * per_value)

    history = fit(
        step,
        settings.iterations,
        # the module beside the param store: its buffers (LU permutations, ActNorm flags), and a resumed run
        # keeps its parameters the ones the optimiser steps; the batch generator, so batches resume too
        {"model": mf, "params": pyro.get_param_store(), "optim": optim, "batches": g},
        checkpoint=checkpoint,
        progress=progress,
        desc="motionflow particles",
    )
    return mf, history


@torch.no_grad()
def predict(
    mf: MotionFlow, observed: torch.Tensor, temperature: float, num_samples: int, layout: str = "particles", chunk: int = 100
) -> torch.Tensor:
    """Eq. (15) on normalised trajectories ``(n, 10, 3, 4)`` -> ``(n, 25, 3, 4)`` (temperature 0: one rollout)."""
    mf.eval()
    out = []
    for part in observed.split(chunk):
        x = to_frames(part, layout)
        pred = mf.condition(x, 0.0).sample() if temperature == 0 else mf.predict(x, num_samples, temperature)
        out.append(from_frames(pred, layout))
    return torch.cat(out)


def mse_per_step(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared error per predicted step, over simulations, particles and features: ``(25,)``."""
    return (pred - truth).pow(2).mean(dim=(0, 2, 3))


def baselines(test_norm: torch.Tensor, test_raw: torch.Tensor, norm: particles.MinMax) -> dict:
    cv = norm.normalize(particles.constant_velocity(test_raw[:, :NUM_OBSERVED], NUM_FUTURE)).float()
    last = particles.last_frame(test_norm[:, :NUM_OBSERVED], NUM_FUTURE)
    truth = test_norm[:, NUM_OBSERVED:]
    return {"constant_velocity": mse_per_step(cv, truth), "last_frame": mse_per_step(last, truth)}


def plot_trajectories(test_norm: torch.Tensor, pred: torch.Tensor, path: Path, index: int = 0, label: str = "") -> None:
    """Fig. 4: observed path (line), ground truth (circles) and prediction (squares) of one simulation."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    colours = (OKABE_ITO[0], OKABE_ITO[4], OKABE_ITO[2])  # orange, blue, bluish green
    seq, guess = test_norm[index], pred[index]
    for p, c in enumerate(colours):
        ax.plot(seq[:NUM_OBSERVED, p, 0], seq[:NUM_OBSERVED, p, 1], "-", color=c, lw=1.5, label=f"particle {p + 1} (observed)")
        ax.plot(seq[NUM_OBSERVED:, p, 0], seq[NUM_OBSERVED:, p, 1], "o", color=c, ms=5)
        ax.plot(guess[:, p, 0], guess[:, p, 1], "s", color=c, ms=5, alpha=0.4)
    ax.set_title(
        f"MotionFlow Fig. 4: one test simulation, truth (circles) and\nprediction at temperature {MAIN_TEMPERATURE:g} (squares); {label}",
        fontsize=9,
    )
    ax.set_xlabel("x (normalised)")
    ax.set_ylabel("y (normalised)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _result(setting: str, metric: str, value, **kw) -> dict:
    """A result row under this experiment's name (:func:`models.row`)."""
    return row(EXPERIMENT, setting, metric, value, **kw)


def reproduce(settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_norm, test_norm, test_raw, norm = load_data(settings, seed)
    tag = (
        f"seed{seed}_{settings.layout}_it{settings.iterations}_k{settings.num_steps}_h{settings.hidden_channels}"
        f"_n{settings.noise:g}_c{settings.grad_clamp:g}"
    )
    checkpoint = None if settings == QUICK else out_dir / "checkpoints" / f"{tag}.pt"
    mf, history = train(settings, train_norm, seed, progress, checkpoint)
    train_time = time.perf_counter() - start
    history.to_csv(out_dir / "loss_history.csv", index=False)
    truth = test_norm[:, NUM_OBSERVED:]
    curves = baselines(test_norm, test_raw, norm)
    torch.manual_seed(10_000 + seed)
    if MAIN_TEMPERATURE not in settings.temperatures:
        raise ValueError(f"temperatures: expected a tuple holding {MAIN_TEMPERATURE}, got {settings.temperatures}")
    preds = {t: predict(mf, test_norm[:, :NUM_OBSERVED], t, settings.num_samples, settings.layout) for t in settings.temperatures}
    for t, pred in preds.items():
        curves[f"motionflow_T{t:g}"] = mse_per_step(pred, truth)
    label = run_label(settings, QUICK, Settings(), seed)
    plot_trajectories(test_norm, preds[MAIN_TEMPERATURE], out_dir / "trajectories.png", label=label)
    main = curves[f"motionflow_T{MAIN_TEMPERATURE:g}"]
    cv, last = curves["constant_velocity"], curves["last_frame"]
    rows = []
    main_name = f"motionflow_T{MAIN_TEMPERATURE:g}"
    for name, curve in curves.items():
        for k in STEPS:
            if name.startswith("motionflow"):
                rows.append(
                    _result(name, f"mse_step{k}", float(curve[k - 1]), paper=PAPER_MSE[k], paper_source="Table 2",
                            baseline=float(cv[k - 1]), headline=name == main_name,
                            note=f"mean of {settings.num_samples} samples, temperature {name[12:]}; baseline: constant velocity")
                )  # fmt: skip
            else:
                rows.append(_result(name, f"mse_step{k}", float(curve[k - 1]), note="baseline, this run"))
    bars = {
        "cv_over_motionflow_step15": float(cv[14] / main[14]),
        "cv_over_motionflow_step25": float(cv[24] / main[24]),
        "below_last_frame_every_step": bool((main < last).all()),
    }
    quick_reason = f"{settings.iterations} training steps; full: 6000"
    for step in (15, 25):
        rows.append(
            _result(main_name, f"cv_over_motionflow_step{step}", bars[f"cv_over_motionflow_step{step}"], target=2.0, target_kind=">=",
                    quick_expected=False, quick_reason=quick_reason, baseline=float(cv[step - 1]), headline=True,
                    note="constant velocity's MSE / MotionFlow's: how many times lower MotionFlow's error is")
        )  # fmt: skip
    rows.append(
        _result(main_name, "worst_mse_ratio_to_last_frame", float((main / last).max()), target=1.0, target_kind="<",
                quick_expected=True, headline=True,
                note="largest over the 25 steps of MotionFlow's MSE / the last observed frame's; below 1: better at every step")
    )  # fmt: skip
    rows.append(
        _result("motionflow", "final_train_nll_per_value", float(history.loss.iloc[-10:].mean()), note="mean of the last logged SVI losses")
    )
    rows.append(_result("motionflow", "train_seconds", train_time, note="wall time of data, training"))
    info = {
        "settings": asdict(settings),
        "seed": seed,
        "mse_per_step": {k: v.tolist() for k, v in curves.items()},
        "bars": bars,
        "train_seconds": train_time,
        "total_seconds": time.perf_counter() - start,
    }
    (out_dir / "results.json").write_text(json.dumps(info, indent=1))
    return rows, info


def run(quick: bool, out_dir: Path, seed: int = 0, progress: bool = True) -> list[dict]:
    """Registry entry point: result rows with the keys of ``models.ROW_KEYS``."""
    rows, _ = reproduce(QUICK if quick else Settings(), out_dir, seed, progress)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results") / EXPERIMENT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=None, help="override the number of SVI steps")
    parser.add_argument("--layout", choices=sorted(FRAME_SHAPES), default=None, help="override the frame layout")
    parser.add_argument("--noise", type=float, default=None, help="override the training noise")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.iterations is not None:
        settings = replace(settings, iterations=args.iterations)
    if args.layout is not None:
        settings = replace(settings, layout=args.layout)
    if args.noise is not None:
        settings = replace(settings, noise=args.noise)
    rows, info = reproduce(settings, args.out, args.seed)
    print(format_report(rows, {EXPERIMENT: PAPER}, quick=args.quick, all_rows=True))
    print(f"total {info['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
