r"""Fixed permutations of the feature (channel) axis: :math:`y_i = x_{\pi(i)}`, :math:`\log|\det J| = 0`.

Used between coupling layers so every feature is transformed. The permutation is a buffer: it
moves with ``.to()`` and is saved in ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from pyro.distributions import TransformModule

from ..shapes import batch_shape_of
from ..validation import check_tensor
from .base import OnePassTransform, event_constraint


class Permute(OnePassTransform, TransformModule):
    r"""Permutes the feature axis (``dim = -event_dim``): :math:`y = x[..., \pi]`.

    Args:
        permutation: a ``LongTensor`` holding a permutation of ``range(num_features)``.
        event_dim: 1 for vectors, 3 for images, 4 for volumes.

    Example::

        >>> t = Permute(torch.tensor([2, 0, 1]))
        >>> t(torch.tensor([10., 11., 12.]))
        tensor([12., 10., 11.])
    """

    bijective = True
    volume_preserving = True

    def __init__(self, permutation: torch.Tensor, event_dim: int = 1) -> None:
        super().__init__(cache_size=1)
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        n = permutation.numel()
        if permutation.dim() != 1 or not torch.equal(torch.sort(permutation).values, torch.arange(n)):
            raise ValueError(f"permutation: expected a permutation of range({n}), got {permutation.tolist()}")
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))
        self.num_features, self._edim = n, event_dim
        self.event_shape_spec = (n,) + (None,) * (event_dim - 1)
        self.domain = self.codomain = event_constraint(event_dim)

    def check_input(self, name: str, value: torch.Tensor) -> None:
        check_tensor(name, value, self.event_shape_spec, device=self.permutation.device)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.index_select(x.dim() - self._edim, self.permutation), x.new_zeros(batch_shape_of(x, self._edim))

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y.index_select(y.dim() - self._edim, self.inverse_permutation), y.new_zeros(batch_shape_of(y, self._edim))

    def forward_value(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(x.dim() - self._edim, self.permutation)

    def inverse_value(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(y.dim() - self._edim, self.inverse_permutation)


def permute(num_features: int, kind: str = "random", event_dim: int = 1, generator: torch.Generator | None = None) -> Permute:
    """A fixed permutation: ``kind="random"`` (drawn once from ``generator``) or ``"reverse"``."""
    if kind == "random":
        # drawn where the generator lives (a seeded CPU generator gives the same permutation under
        # any default device), then kept where factories put tensors (torch.set_default_device)
        device = None if generator is None else generator.device
        perm = torch.randperm(num_features, generator=generator, device=device).to(torch.empty(0).device)
    elif kind == "reverse":
        perm = torch.arange(num_features - 1, -1, -1)
    else:
        raise ValueError(f"kind: expected 'random' or 'reverse', got {kind!r}")
    return Permute(perm, event_dim)


def block_permutations(
    num_features: int,
    permutation: str | Sequence[torch.Tensor | Sequence[int]] | None,
    num_blocks: int,
    generator: torch.Generator | None = None,
) -> Iterator:
    """One permutation tensor (or None) per block of a stack, drawn when asked for (so that a builder
    keeps its order of random draws): ``permutation`` is ``"random"`` (each drawn from ``generator``),
    ``"reverse"``, None, or a sequence of ``num_blocks`` given tensors (checked at once)."""
    if permutation is None or isinstance(permutation, str):
        if permutation not in (None, "random", "reverse"):
            raise ValueError(f"permutation: expected 'random', 'reverse', None or one permutation per block, got {permutation!r}")
        return (
            None if permutation is None else permute(num_features, permutation, generator=generator).permutation for _ in range(num_blocks)
        )
    perms = [torch.as_tensor(p, dtype=torch.long) for p in permutation]
    if len(perms) != num_blocks:
        raise ValueError(f"permutation: expected {num_blocks} permutations (one per block), got {len(perms)}")
    return iter(perms)
