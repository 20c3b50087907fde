r"""Data-parallel training of a flow on scikit-learn's 8x8 digits with ``torch.distributed``.

    torchrun --nproc_per_node=2 -m models.distributed --quick                 # 2 gloo ranks on a CPU
    torchrun --nproc_per_node=4 -m models.distributed --device cuda --flow glow   # NCCL, one GPU a rank
    python -m models.distributed --quick                                      # one process

Every rank holds the whole flow and trains on its share of each global batch
(:class:`~pyroflows.infer.distributed.ShardedBatches`); :func:`~pyroflows.infer.fit` averages the
gradients over the ranks, so the run follows one process at the same global batch ``--batch``
(up to the dequantisation noise, which each rank draws for its own images). Rank 0 prints one line
per logged step (ranks, global batch, loss in nats per dimension) and writes the checkpoint
``<out>/<flow>.pt``, from which a rerun resumes, with any number of ranks.

``--flow`` picks the model, each conditioned on the digit's label (one-hot):

- ``coupling``: a conditional coupling flow on the 64 dequantised pixels;
- ``glow``: a conditional multi-scale Glow on the ``1 x 8 x 8`` image;
- ``dual_glow``: DUAL-GLOW from a digit to its "modality" (:mod:`models.common.data.modality_pairs`,
  8x8), without label;
- ``motionflow``: MotionFlow predicting the last 4 rows of a digit from its first 4, the rows read
  as a sequence of 8-pixel frames.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyro.distributions
import torch
import torch.distributed as dist

from models.common.data.digits import sklearn_digits
from models.common.data.modality_pairs import digit_modality_pairs
from pyroflows import validation
from pyroflows.distributions import ConditionalFlowDistribution, DualGlow, MotionFlow
from pyroflows.flows import conditional_glow
from pyroflows.infer import fit
from pyroflows.infer.distributed import ShardedBatches, init_distributed, is_distributed, rank, rank_random, world_size
from pyroflows.transforms import conditional_coupling_flow

FLOWS = ("coupling", "glow", "dual_glow", "motionflow")
LEVELS = 17  # sklearn's digits take the values 0..16


@dataclass(frozen=True)
class Settings:
    """Training (``steps`` Adam steps at the global batch ``batch`` and learning rate ``lr``) and the
    flow's size (``blocks``: coupling blocks, or steps per Glow level / per MotionFlow frame)."""

    steps: int = 2000
    batch: int = 128
    lr: float = 1e-3
    blocks: int = 4
    hidden: int = 64
    log_every: int = 50
    checkpoint_every: int = 200


FULL = Settings()
QUICK = Settings(steps=20, batch=32, lr=2e-3, blocks=2, hidden=16, log_every=5, checkpoint_every=10)


def dequantize(pixels: torch.Tensor, step: int) -> torch.Tensor:
    """Pixels in ``[0, 1]`` (multiples of 1/16) to ``(16 p + u) / 17 - 1/2`` with ``u ~ U(0, 1)``,
    the noise drawn for this rank and step (:func:`~pyroflows.infer.distributed.rank_random`)."""
    with rank_random(step):
        u = torch.rand_like(pixels)
    return ((LEVELS - 1) * pixels + u) / LEVELS - 0.5


def build(name: str, settings: Settings, device: torch.device) -> tuple[torch.nn.Module, int, Callable[[torch.Tensor, int], torch.Tensor]]:
    """``(module, num_examples, loss)``: ``loss(indices, step)`` is the mean negative log-likelihood in
    nats per dimension of the examples ``indices`` (on this rank)."""
    if name not in FLOWS:
        raise ValueError(f"flow: expected one of {FLOWS}, got {name!r}")
    digits = sklearn_digits()
    pixels = torch.as_tensor(digits.x_train, device=device)
    context = torch.eye(10, device=device)[torch.as_tensor(digits.y_train, device=device)]
    h, k = settings.hidden, settings.blocks
    if name == "coupling":
        flow = conditional_coupling_flow(64, context_dim=10, num_blocks=k, hidden=(h, h), seed=0).to(device)
        base = pyro.distributions.Normal(torch.zeros(64, device=device), 1.0)
        d = ConditionalFlowDistribution(base.to_event(1), [flow])
        return flow, len(pixels), lambda idx, i: -d.condition(context[idx]).log_prob(dequantize(pixels[idx], i)).mean() / 64
    if name == "glow":
        flow = conditional_glow((1, 8, 8), context_shape=(10,), num_levels=2, num_steps=k, hidden_channels=h).to(device)
        d = ConditionalFlowDistribution(flow.base(), [flow], context_event_dim=1)
        images = pixels.reshape(-1, 1, 8, 8)
        return flow, len(images), lambda idx, i: -d.condition(context[idx]).log_prob(dequantize(images[idx], i)).mean() / 64
    if name == "dual_glow":
        pairs = digit_modality_pairs(size=8)
        source, target = pairs.source_train.to(device), pairs.target_train.to(device)
        dual = DualGlow((1, 8, 8), num_levels=2, num_steps=k, hidden_channels=h, relation_hidden=h).to(device)

        def dual_loss(idx, i):
            # the modality is continuous: uniform noise of one 8-bit level, as the paper's 8-bit volumes
            with rank_random(i):
                xs, xt = source[idx] - 0.5, target[idx] + torch.rand_like(target[idx]) / 256 - 0.5
            return -dual.objective(xs, xt).mean() / 64

        return dual, len(source), dual_loss
    rows = pixels.reshape(-1, 8, 8)  # (N, frames, pixels): the rows of each digit as a sequence
    mf = MotionFlow((8,), num_observed=4, num_future=4, num_steps=k, hidden_channels=h, fc_hidden=(h,), prior_hidden=h).to(device)
    return mf, len(rows), lambda idx, i: -mf.condition(rows[idx, :4] - 0.5).log_prob(dequantize(rows[idx, 4:], i)).mean() / 32


def train(name: str, settings: Settings, out: Path, device: str = "cpu", progress: bool = True) -> list[tuple[int, float]]:
    """Train ``name`` data-parallel over the process group's ranks (one process without one) and
    return the logged ``(step, loss)`` pairs."""
    device = init_distributed(device)
    torch.manual_seed(0)
    module, num_examples, loss_fn = build(name, settings, device)
    batches = ShardedBatches(num_examples, settings.batch, seed=0)
    with torch.no_grad(), validation(False):  # ActNorm's data-dependent start, on the same global batch on every rank
        loss_fn(batches.global_batch(0).to(device), 0)
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.lr)

    def step(i: int) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(batches(i).to(device), i)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def report(i: int, loss: float) -> None:
        if rank() == 0:
            print(f"step {i + 1:6d}  ranks {world_size()}  global batch {settings.batch}  loss {loss:.4f} nats/dim", flush=True)

    # what a resumed run must share; steps may grow, the number of ranks may change
    config = {"flow": name, "batch": settings.batch, "lr": settings.lr, "blocks": settings.blocks, "hidden": settings.hidden}
    with validation(False):
        history = fit(step, settings.steps, {"flow": module, "optimizer": optimizer}, checkpoint=out / f"{name}.pt",
                      checkpoint_every=settings.checkpoint_every, log_every=settings.log_every, progress=progress,
                      desc=name, config=config, on_log=report)  # fmt: skip
    if rank() == 0:
        print(f"checkpoint: {out / f'{name}.pt'}", flush=True)
    return list(history.itertuples(index=False, name=None))


def main(argv=None) -> list[tuple[int, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small flow, 20 steps")
    parser.add_argument("--flow", choices=FLOWS, default="glow")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: NCCL, one GPU per rank")
    parser.add_argument("--batch", type=int, default=None, help="global batch, summed over the ranks")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="learning rate for the global batch")
    parser.add_argument("--out", type=Path, default=Path("results/distributed"))
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    overrides = {k: v for k, v in (("batch", args.batch), ("steps", args.steps), ("lr", args.lr)) if v is not None}
    settings = Settings(**{**asdict(settings), **overrides})
    if not math.isfinite(settings.lr) or settings.lr <= 0:
        raise ValueError(f"lr: expected a positive number, got {settings.lr}")
    try:
        return train(args.flow, settings, args.out, args.device, progress=False)
    finally:
        if is_distributed():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
