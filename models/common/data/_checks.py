"""Argument checks shared by the simulators of :mod:`models.common.data` (positive sizes, seeds)."""

from __future__ import annotations

import torch


def check_positive_ints(**values) -> None:
    """Raise a ``ValueError`` naming the first argument that is not a positive int (bools excluded)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


def seeded_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """``generator`` itself, a fresh CPU generator seeded with an int, or seed 0 for ``None``."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None or (isinstance(generator, int) and not isinstance(generator, bool)):
        return torch.Generator().manual_seed(0 if generator is None else generator)
    raise TypeError(f"generator: expected None, an int seed or a torch.Generator, got {type(generator).__name__}")
