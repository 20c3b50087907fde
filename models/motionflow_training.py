r"""Training and sampling helpers shared by the MotionFlow experiments (forecasting, motion, segmentation).

:func:`fit_motionflow` minimises the negative log-likelihood per dimension,
:math:`-\frac{1}{VD}\log p(y \mid x)`, of a :class:`~pyroflows.distributions.MotionFlow` on random
mini-batches with Adam (the paper's optimiser; weight decay as a parameter) and a cosine learning-rate
decay, through :func:`pyroflows.infer.fit` (progress bar, loss history, NaN report). :func:`sample_futures`
draws futures for many windows in chunks (bounded memory), and :func:`predict` is the point prediction of
eq. (15), the mean of ``S`` sampled futures. :func:`torch_threads`, :func:`write_figure` and
:func:`parse_settings` are the experiments' shared plumbing (thread count, figure files, command line).

Reference: M. Zand, A. Etemad, M. Greenspan, MotionFlow, IEEE TPAMI 2023, Sec. 5.1 (Adam, weight decay
5e-4) and eq. (15).
"""

from __future__ import annotations

import argparse
import contextlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from pyroflows.infer import fit


@dataclass(frozen=True)
class FlowSettings:
    """What every MotionFlow experiment sets: training (``steps`` Adam steps of ``batch`` windows, a
    cosine decay from ``lr`` to ``lr_final``, the paper's weight decay 5e-4: without it some
    forecasting rollouts diverged), the flow's size, the samples per prediction and the torch
    threads (``None`` keeps torch's). Each experiment's ``Settings`` extends it."""

    steps: int = 600
    batch: int = 16
    lr: float = 2e-3
    lr_final: float = 1e-4
    weight_decay: float = 5e-4
    num_steps: int = 2  # flow steps per frame
    hidden: int = 32
    fc_hidden: tuple[int, ...] = (32,)
    encoder_hidden: tuple[int, ...] = (8, 8)
    prior_hidden: int = 16
    samples: int = 10
    threads: int | None = 1

    def learning_rate(self, step: int) -> float:
        """The cosine schedule: ``lr`` at step 0, ``lr_final`` at the last step."""
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * step / max(self.steps - 1, 1)))

    def flow_kwargs(self) -> dict:
        """The size arguments of :class:`~pyroflows.distributions.MotionFlow`."""
        return {
            "num_steps": self.num_steps, "hidden_channels": self.hidden, "fc_hidden": self.fc_hidden,
            "encoder_hidden": self.encoder_hidden, "prior_hidden": self.prior_hidden,
        }  # fmt: skip


def fit_motionflow(
    flow,
    observed: torch.Tensor,
    future: torch.Tensor,
    settings: FlowSettings,
    seed: int = 0,
    progress: bool = True,
    desc: str = "motionflow",
    transform_future=None,
) -> pd.DataFrame:
    """Fit ``flow`` to ``(observed, future)`` pairs (leading dim: windows); returns the loss history.

    Args:
        flow: a :class:`~pyroflows.distributions.MotionFlow` (an ``nn.Module``).
        observed, future: ``(N, U, *frame)`` and ``(N, V, *frame)``.
        settings: steps, batch, learning rates and weight decay (:class:`FlowSettings`).
        seed: fixes the mini-batches.
        transform_future: an optional ``f(future_batch, generator) -> future_batch`` applied to every
            batch (e.g. dequantisation noise of binary masks).
    """
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    dims = future[0].numel()

    def step(i: int) -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate(i)
        idx = torch.randint(0, len(observed), (settings.batch,), generator=g)
        y = future[idx] if transform_future is None else transform_future(future[idx], g)
        loss = -flow.condition(observed[idx]).log_prob(y).mean() / dims
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        optimizer.step()
        return loss

    return fit(step, settings.steps, {"flow": flow, "optimizer": optimizer}, progress=progress, desc=desc, log_every=10)


@torch.no_grad()
def sample_futures(flow, observed: torch.Tensor, num_samples: int, chunk: int = 256, temperature: float = 1.0) -> torch.Tensor:
    """``num_samples`` futures for every window of ``observed`` ``(N, U, *frame)``: ``(S, N, V, *frame)``,
    sampled ``chunk`` windows at a time."""
    parts = [flow.condition(observed[i : i + chunk], temperature).sample((num_samples,)) for i in range(0, len(observed), chunk)]
    return torch.cat(parts, dim=1)


def predict(flow, observed: torch.Tensor, num_samples: int = 10, chunk: int = 256) -> torch.Tensor:
    """Eq. (15): the mean of ``num_samples`` sampled futures, ``(N, V, *frame)``."""
    return sample_futures(flow, observed, num_samples, chunk).mean(0)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run a block with ``threads`` torch threads (``None``: leave torch's setting), then restore."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def write_figure(fig, path: Path, dpi: int = 80) -> None:
    """Lay out, save (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def parse_settings(argv, doc: str, experiment: str, quick, full, quick_help: str, options=()):
    """The experiments' command line: ``--quick``, ``--steps``, ``--out``, ``--seed``, ``--no-progress``
    plus ``options``, each ``(flag, settings_field, add_argument kwargs)``; a given value replaces that
    field of the chosen preset. Returns ``(settings, args)``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--steps", type=int, default=None, help="training steps of each model")
    for flag, _, kwargs in options:
        parser.add_argument(flag, default=None, **kwargs)
    parser.add_argument("--out", type=Path, default=Path("results") / experiment)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    settings = quick if args.quick else full
    for dest, field in [("steps", "steps")] + [(flag.lstrip("-").replace("-", "_"), field) for flag, field, _ in options]:
        value = getattr(args, dest)
        if value:
            settings = replace(settings, **{field: tuple(value) if isinstance(value, list) else value})
    return settings, args
