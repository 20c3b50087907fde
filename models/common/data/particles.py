r"""The three interacting particles of the dNRI "small synth" data (MotionFlow Sec. 5.2, Table 2).

Three particles move in the plane. Particle 1 starts in :math:`[-2, -1]^2` with velocity in
:math:`[0.05, 0.1]^2`, particle 2 in :math:`[1, 2]^2` with velocity in :math:`[-0.1, -0.05]^2`; both
keep their velocity. Particle 3 starts in :math:`[-1, 1]^2` with velocity in
:math:`[-0.05, 0.05]^2` (all uniform) and is pushed away from particle :math:`i \in \{1, 2\}` while
they are closer than 1: at every step, before moving,

.. math::

    v_3 \leftarrow v_3 + \kappa\,(1 - \lVert p_3 - p_i \rVert)\,\frac{p_3 - p_i}{\lVert p_3 - p_i \rVert}
    \quad\text{if } \lVert p_3 - p_i \rVert < 1, \qquad p_j \leftarrow p_j + v_j ,

with push factor :math:`\kappa = 0.05` (both pushes use the distances before either is applied).
A frame records, per particle, its position and velocity after the move: ``(T, 3, 4)`` with
features ``(x, y, v_x, v_y)``. This follows the generator published with dNRI and reused by
MotionFlow's authors; the simulations are batched (the loop runs over time only) and seeded.

**Normalisation** (as in those loaders): positions and velocities are mapped to :math:`[-1, 1]`
separately, :math:`2 (v - \min) / (\max - \min) - 1`, with the minimum and maximum over the
training set. Errors are reported in this normalised space.

Reference: C. Graber, A. Schwing, "Dynamic neural relational inference", CVPR 2020 (the data);
M. Zand, A. Etemad, M. Greenspan, MotionFlow, Sec. 5.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PUSH_FACTOR = 0.05
NUM_PARTICLES = 3
NUM_FEATURES = 4


def _uniform(g: torch.Generator, n: int, low: float, high: float, dtype) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, 2, generator=g, dtype=dtype)


def simulate(num_sims: int, num_steps: int = 35, seed: int = 0, push_factor: float = PUSH_FACTOR, dtype=torch.float64) -> torch.Tensor:
    """``num_sims`` trajectories of ``num_steps`` frames: a tensor ``(num_sims, num_steps, 3, 4)``
    of positions and velocities (raw units; see the module docstring).

    Example::

        >>> traj = simulate(4, num_steps=20, seed=1)
        >>> traj.shape
        torch.Size([4, 20, 3, 4])
        >>> bool(torch.allclose(traj[:, 1:, 0, :2] - traj[:, :-1, 0, :2], traj[:, 1:, 0, 2:]))   # particle 1: constant velocity
        True
    """
    if num_sims < 1 or num_steps < 1:
        raise ValueError(f"num_sims, num_steps: expected positive integers, got {num_sims}, {num_steps}")
    g = torch.Generator().manual_seed(int(seed))
    pos = torch.stack(
        [_uniform(g, num_sims, -2, -1, dtype), _uniform(g, num_sims, 1, 2, dtype), _uniform(g, num_sims, -1, 1, dtype)], dim=1
    )
    vel = torch.stack(
        [_uniform(g, num_sims, 0.05, 0.1, dtype), _uniform(g, num_sims, -0.1, -0.05, dtype), _uniform(g, num_sims, -0.05, 0.05, dtype)],
        dim=1,
    )
    frames = []
    for _ in range(num_steps):
        diff = pos[:, 2:3] - pos[:, :2]  # (n, 2, 2): particle 3 relative to particles 1 and 2
        dist = diff.norm(dim=-1, keepdim=True)
        close = dist < 1
        push = torch.where(close, push_factor * (1 - dist) * diff / dist.clamp_min(1e-12), torch.zeros_like(diff)).sum(1)
        vel = torch.cat([vel[:, :2], vel[:, 2:] + push.unsqueeze(1)], dim=1)
        pos = pos + vel
        frames.append(torch.cat([pos, vel], dim=-1))
    return torch.stack(frames, dim=1)


@dataclass(frozen=True)
class MinMax:
    """Separate min-max maps of positions (features 0, 1) and velocities (2, 3) to ``[-1, 1]``."""

    loc_min: float
    loc_max: float
    vel_min: float
    vel_max: float

    @classmethod
    def fit(cls, traj: torch.Tensor) -> MinMax:
        loc, vel = traj[..., :2], traj[..., 2:]
        return cls(float(loc.min()), float(loc.max()), float(vel.min()), float(vel.max()))

    def _bounds(self, like: torch.Tensor):
        low = torch.tensor([self.loc_min] * 2 + [self.vel_min] * 2, dtype=like.dtype, device=like.device)
        high = torch.tensor([self.loc_max] * 2 + [self.vel_max] * 2, dtype=like.dtype, device=like.device)
        return low, high

    def normalize(self, traj: torch.Tensor) -> torch.Tensor:
        low, high = self._bounds(traj)
        return 2 * (traj - low) / (high - low) - 1

    def unnormalize(self, traj: torch.Tensor) -> torch.Tensor:
        low, high = self._bounds(traj)
        return (traj + 1) * (high - low) / 2 + low


def constant_velocity(observed: torch.Tensor, num_future: int) -> torch.Tensor:
    """The constant-velocity forecast in raw units: the last observed position moved by the last
    observed velocity at every step, the velocity kept. ``observed`` ``(..., U, 3, 4)`` ->
    ``(..., num_future, 3, 4)``."""
    last = observed[..., -1, :, :]
    k = torch.arange(1, num_future + 1, dtype=observed.dtype, device=observed.device).view(-1, 1, 1)
    pos = last[..., None, :, :2] + k * last[..., None, :, 2:]
    return torch.cat([pos, last[..., None, :, 2:].expand(pos.shape)], dim=-1)


def last_frame(observed: torch.Tensor, num_future: int) -> torch.Tensor:
    """The last observed frame repeated: ``(..., U, 3, 4)`` -> ``(..., num_future, 3, 4)``."""
    last = observed[..., -1:, :, :]
    return last.expand(last.shape[:-3] + (num_future,) + last.shape[-2:])
