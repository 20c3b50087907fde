r"""Data-parallel training on ``torch.distributed``: the pieces :func:`~pyroflows.infer.fit` uses.

Launched by ``torchrun`` (one process per rank, ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ... in the
environment), every rank holds the whole model, computes the loss of its shard of the global
batch, and the gradients are averaged over the ranks before each optimiser step. With a loss that
estimates the same objective on every rank (a mean over the rank's examples, or a Pyro
``plate(size=N, subsample=...)``), the averaged gradient is the single-process gradient at the
global batch, so ``R`` ranks at a local batch ``B / R`` follow the single-process run at batch
``B``.

- :func:`init_distributed` starts the process group from ``torchrun``'s environment (NCCL for
  CUDA, gloo otherwise);
- :func:`average_gradients` all-reduces the gradients of given parameters (one collective per
  dtype and device);
- :class:`ShardedBatches` is ``DistributedSampler``'s counterpart for tensors: the global batch of
  step ``i`` depends on the seed and ``i`` only, each rank takes its slice, so a run resumes with
  any number of ranks;
- :func:`rank_random` draws from a random stream of its own per rank and step (Hutchinson noise,
  dequantisation noise), leaving the stream the ranks share (a guide's samples of global latents)
  untouched.

Without a process group every function is a no-op (rank 0 of 1): the same script runs in one
process.

Example::

    >>> batches = ShardedBatches(num_examples=10, batch_size=4, seed=0)
    >>> batches(0).shape                        # one process: the whole global batch
    torch.Size([4])
    >>> [batches(0, rank=r, world_size=2).tolist() for r in range(2)] == [batches(0)[:2].tolist(), batches(0)[2:].tolist()]
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

__all__ = [
    "ShardedBatches",
    "average_gradients",
    "average_losses",
    "collective_device",
    "init_distributed",
    "is_distributed",
    "rank",
    "rank_random",
    "world_size",
]

# Large odd constants (from the golden ratio and SplitMix64) mix seed, step and rank into one seed.
_MIX_A, _MIX_B, _MIX_C = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(*values: int) -> int:
    h = 0
    for v in values:
        h = ((h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * _MIX_A + _MIX_B) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = (h * _MIX_C) & 0xFFFFFFFFFFFFFFFF
    return h >> 1  # a non-negative int64, as torch's seeds want


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def _group() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def collective_device() -> torch.device:
    """Where tensors for collectives live: the current CUDA device under NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(device: str | torch.device = "cpu") -> torch.device:
    """Start the process group from ``torchrun``'s environment and return this rank's device.

    Without ``WORLD_SIZE`` in the environment (a plain ``python`` run) nothing is started and
    ``device`` comes back as it is. Under ``torchrun``, CUDA devices use NCCL and this rank's GPU
    (``cuda:LOCAL_RANK``); every other device uses gloo. An already initialised group is kept.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (a device type or a ``torch.device``).
    """
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {str(device)!r}")
    if "WORLD_SIZE" not in os.environ and not is_distributed():
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: 'cuda' asked for, but CUDA is not available on this machine")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not is_distributed():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks, in place.

    Every rank must pass the same parameters in the same order. A parameter without a gradient on
    this rank contributes zeros (as ``DistributedDataParallel`` does for unused parameters) and then
    holds the average. One ``all_reduce`` per dtype and device; nothing happens with one rank.
    """
    params = list(params)
    n = world_size()
    if n == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        flat.div_(n)
        for p, g in zip(group, flat.split([p.numel() for p in group]), strict=True):
            p.grad.copy_(g.view_as(p.grad))


def average_losses(values: torch.Tensor) -> torch.Tensor:
    """The mean over the ranks of a tensor of losses (returned as it is with one rank)."""
    if world_size() == 1:
        return values
    flat = values.to(collective_device(), torch.float64)
    dist.all_reduce(flat)
    return (flat / world_size()).to(values.device)


@contextlib.contextmanager
def rank_random(step: int, seed: int = 0) -> Iterator[None]:
    """Inside the block, torch's global generators (CPU and the current CUDA device) are seeded
    from ``(seed, step, rank)``; afterwards they are restored as they were.

    Use it around data-side noise that must differ between ranks (dequantisation noise, a CNF's
    Hutchinson noise, dropout), so that the ranks do not all draw the same noise for different
    examples, while the stream outside the block stays the same on every rank. The noise depends on
    the step, not on what ran before, so a resumed run draws the same.

    Example::

        >>> with rank_random(step=3):
        ...     a = torch.rand(2)
        >>> with rank_random(step=3):
        ...     b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_mix(seed, step, rank()))
        yield


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class ShardedBatches:
    """Mini-batch indices for data-parallel training on tensors (``DistributedSampler`` for a
    dataset that is one tensor).

    Each epoch is a permutation of ``range(num_examples)`` drawn from ``(seed, epoch)``; step ``i``'s
    global batch is the next ``batch_size`` indices of it (the last incomplete batch of an epoch is
    dropped), and rank ``r`` of ``R`` takes the ``r``-th of ``R`` equal slices. The global batch of a
    step depends on nothing else, so a run stopped at any step resumes with any number of ranks on
    the same batches, and ``R`` ranks together see what one process sees. Nothing to checkpoint.

    Args:
        num_examples: size of the data set.
        batch_size: the global batch ``B`` (summed over the ranks; divisible by the number of ranks).
        seed: picks the permutations.

    Call ``batches(step)`` for this rank's indices (an int64 CPU tensor of ``B / R`` entries);
    ``rank`` and ``world_size`` default to the process group's.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int = 0) -> None:
        self.num_examples = _check_int("num_examples", num_examples, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if self.batch_size > self.num_examples:
            raise ValueError(f"batch_size: expected at most num_examples={self.num_examples}, got {self.batch_size}")
        self.seed = _check_int("seed", seed, 0)
        self.steps_per_epoch = self.num_examples // self.batch_size
        self._epoch: tuple[int, torch.Tensor] | None = None

    def global_batch(self, step: int) -> torch.Tensor:
        """The indices of step ``step``'s global batch, the same on every rank."""
        step = _check_int("step", step, 0)
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch))
            self._epoch = (epoch, torch.randperm(self.num_examples, generator=g))
        return self._epoch[1][k * self.batch_size : (k + 1) * self.batch_size]

    def __call__(self, step: int, rank: int | None = None, world_size: int | None = None) -> torch.Tensor:
        r = _group()[0] if rank is None else rank
        n = _group()[1] if world_size is None else world_size
        n = _check_int("world_size", n, 1)
        if not 0 <= r < n:
            raise ValueError(f"rank: expected an integer in [0, {n - 1}], got {r!r}")
        if self.batch_size % n:
            raise ValueError(f"batch_size: the global batch {self.batch_size} must be divisible by the number of ranks, got {n} ranks")
        local = self.batch_size // n
        return self.global_batch(step)[r * local : (r + 1) * local]

    def __repr__(self) -> str:
        return f"ShardedBatches(num_examples={self.num_examples}, batch_size={self.batch_size}, seed={self.seed})"
