r"""An articulated-skeleton simulator: 3-D joint positions of periodic actions (walking, running,
waving), the offline stand-in for the CMU motion-capture data of MotionFlow's Sec. 5.3.

**The skeleton.** 19 joints in a kinematic tree rooted at the pelvis (:data:`JOINTS`, :data:`PARENTS`):
spine, chest, neck, head; per side hip, knee, ankle, toe and shoulder, elbow, wrist. :data:`OFFSETS`
holds each bone's rest-pose vector (millimetres) in its parent's frame: :math:`y` up, :math:`z`
forward (the walking direction), :math:`x` to the subject's left; the arms hang down at rest.

**Forward kinematics.** Each joint :math:`j` has angles :math:`(a_j, b_j, c_j)` (radians) and the local
rotation :math:`R^{loc}_j = R_z(b_j) R_x(a_j) R_y(c_j)` (abduction, flexion, twist). With
:math:`p(j)` the parent, the global frame and position are

.. math::

    R_j = R_{p(j)} R^{loc}_j, \qquad x_j = x_{p(j)} + R_{p(j)}\, s\, o_j,

with :math:`o_j` the rest offset and :math:`s` the subject's size; the root has :math:`R_0 = R_y(\psi)\,R^{loc}_0`
(heading :math:`\psi`) and position :math:`x_0` (the pelvis' bob and sway; there is no forward
travel: positions are relative to a pelvis that stays over the origin, as in root-relative
motion-prediction protocols). A flexion :math:`a > 0` about :math:`x` swings a hanging limb backwards,
so the gaits below use negative flexions to swing legs and arms forwards.

**Gaits.** Every action is driven by one phase :math:`\varphi(t)` whose speed varies slowly within a
sequence,

.. math::

    \dot\varphi(t) = 2\pi f\,(1 + \epsilon \sin(2\pi\nu t + \chi)), \qquad
    \varphi(t) = \varphi_0 + 2\pi f\left[t - \frac{\epsilon}{2\pi\nu}\left(\cos(2\pi\nu t + \chi) - \cos\chi\right)\right],

with per-sequence base frequency :math:`f` (cycles per second, an action-dependent range),
:math:`\varphi_0 \sim U(0, 2\pi)`, modulation depth :math:`\epsilon \sim U(0, 0.15)`, rate
:math:`\nu \sim U(0.1, 0.3)` Hz and :math:`\chi \sim U(0, 2\pi)`; amplitudes scale by
:math:`\kappa \sim U(0.85, 1.15)`, the size by :math:`s \sim U(0.9, 1.1)`, the heading is
:math:`\psi \sim U(-\pi/6, \pi/6)`, and every coordinate of every frame gets
:math:`\mathcal N(0, \sigma^2)` measurement noise (``noise`` :math:`= \sigma`, 4 mm by default).

``walking`` (:math:`f \in [0.8, 1.05]` strides/s)
    hips :math:`\mp 25^\circ\sin\varphi` (the legs in antiphase), knees
    :math:`8^\circ + 55^\circ\,((1 + \sin(\varphi + 0.9))/2)^3` (flexed in swing), ankles
    :math:`10^\circ\cos\varphi`, arms swinging against the legs by :math:`18^\circ`, elbows
    :math:`15^\circ`-:math:`25^\circ`, a :math:`6^\circ` trunk twist, a 20 mm bob at twice the
    stride rate and a 15 mm sideways sway.
``running`` (:math:`f \in [1.3, 1.6]`)
    hips :math:`40^\circ`, knees :math:`20^\circ + 80^\circ(\dots)^2`, arms :math:`35^\circ` with
    elbows near :math:`85^\circ`, a :math:`12^\circ` forward lean, a 45 mm bob.
``waving`` (:math:`f \in [1.2, 2.2]` waves/s)
    the right arm raised sideways (shoulder abduction :math:`140^\circ \pm 10^\circ\sin\varphi`,
    elbow :math:`60^\circ + 35^\circ\sin\varphi`), the left arm at rest with a :math:`3^\circ`
    sway, the legs still, a slow 10 mm weight shift and a :math:`3^\circ` trunk sway.

At :data:`FPS` = 25 frames per second, the horizons 80, 160, 320, 400, 560 and 1000 ms are frames
2, 4, 8, 10, 14 and 25 after the last observed one.

Example::

    >>> x = simulate("walking", 4, 50, generator=0)
    >>> x.shape, x.dtype                      # (sequences, frames, joints, xyz) in mm
    (torch.Size([4, 50, 19, 3]), torch.float32)
    >>> torch.equal(x, simulate("walking", 4, 50, generator=0))
    True
    >>> round(float((x[:, :, JOINTS.index("head"), 1] - x[:, :, JOINTS.index("l_toe"), 1]).mean()))  # height, toe to head
    1682

Reference: M. Zand, A. Etemad, M. Greenspan, "Flow-based spatio-temporal structured prediction of
motion dynamics" (MotionFlow), IEEE TPAMI 2023, Sec. 5.3 and Tables 3 and 7 (CMU Mocap, walking and
basketball); the horizons follow W. Mao et al., "Learning trajectory dependencies for human motion
prediction", ICCV 2019.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_positive_ints, seeded_generator

__all__ = ["ACTIONS", "FPS", "JOINTS", "OFFSETS", "PARENTS", "forward_kinematics", "horizon_frames", "simulate"]

#: frames per second of the simulated sequences
FPS = 25
ACTIONS = ("walking", "running", "waving")
JOINTS = (
    "pelvis", "spine", "chest", "neck", "head",
    "l_hip", "l_knee", "l_ankle", "l_toe", "r_hip", "r_knee", "r_ankle", "r_toe",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip
#: index of each joint's parent (-1: the root); parents come before their children
PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 2, 13, 14, 2, 16, 17)
#: rest-pose bone vectors in the parent's frame, millimetres (the root's is unused)
OFFSETS = torch.tensor([
    [0, 0, 0], [0, 120, 0], [0, 250, 0], [0, 230, 0], [0, 130, 0],
    [95, -60, 0], [0, -440, 0], [0, -420, 0], [0, -60, 130],
    [-95, -60, 0], [0, -440, 0], [0, -420, 0], [0, -60, 130],
    [170, 200, 0], [0, -290, 0], [0, -260, 0],
    [-170, 200, 0], [0, -290, 0], [0, -260, 0],
], dtype=torch.float64)  # fmt: skip
_J = {name: i for i, name in enumerate(JOINTS)}
_FREQUENCY = {"walking": (0.8, 1.05), "running": (1.3, 1.6), "waving": (1.2, 2.2)}
_DEG = math.pi / 180


def horizon_frames(milliseconds, fps: int = FPS) -> list[int]:
    """Frames after the last observed one at each horizon: ``round(ms * fps / 1000)``."""
    return [round(ms * fps / 1000) for ms in milliseconds]


def _rotation(axis: str, angle: torch.Tensor) -> torch.Tensor:
    c, s = angle.cos(), angle.sin()
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def forward_kinematics(
    angles: torch.Tensor, root: torch.Tensor, heading: torch.Tensor | None = None, size: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Joint positions from joint angles (see the module docstring).

    Args:
        angles: ``(..., J, 3)`` radians, (flexion about x, abduction about z, twist about y) per joint.
        root: the pelvis position ``(..., 3)``.
        heading: rotation of the whole body about the vertical axis, broadcasting to ``angles.shape[:-2]``.
        size: bone-length factor :math:`s`, broadcasting to ``angles.shape[:-2]``.

    Returns:
        positions ``(..., J, 3)`` in the units of :data:`OFFSETS` (mm), the dtype of ``angles``.
    """
    if angles.dim() < 2 or angles.shape[-2:] != (len(JOINTS), 3):
        raise ValueError(f"angles: expected shape (..., {len(JOINTS)}, 3), got {tuple(angles.shape)}")
    batch = angles.shape[:-2]
    offsets = OFFSETS.to(angles)
    if size is not None:
        offsets = offsets * torch.as_tensor(size, dtype=angles.dtype, device=angles.device).expand(batch)[..., None, None]
    local = _rotation("z", angles[..., 1]) @ _rotation("x", angles[..., 0]) @ _rotation("y", angles[..., 2])
    top = local[..., 0, :, :]
    if heading is not None:
        top = _rotation("y", torch.as_tensor(heading, dtype=angles.dtype, device=angles.device).expand(batch)) @ top
    frames, positions = [top], [root.expand(batch + (3,))]
    for j in range(1, len(JOINTS)):  # a walk down the tree (19 joints), batched over sequences and frames
        parent = PARENTS[j]
        positions.append(positions[parent] + (frames[parent] @ offsets[..., j, :].unsqueeze(-1)).squeeze(-1))
        frames.append(frames[parent] @ local[..., j, :, :])
    return torch.stack(positions, -2)


def _uniform(low: float, high: float, n: int, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _gait(action: str, phase: torch.Tensor, t: torch.Tensor, amp: torch.Tensor, g: torch.Generator):
    """Joint angles ``(n, T, J, 3)`` and pelvis offsets ``(n, T, 3)`` of one action at the given phases."""
    n, frames = phase.shape
    angles = torch.zeros(n, frames, len(JOINTS), 3, dtype=torch.float64)
    root = torch.zeros(n, frames, 3, dtype=torch.float64)
    a = amp[:, None]  # (n, 1)
    sin = phase.sin()
    if action in ("walking", "running"):
        hip, knee0, knee1, power, arm, lean, bob = (25, 8, 55, 3, 18, 0, 20) if action == "walking" else (40, 20, 80, 2, 35, 12, 45)
        for side, sign in (("l", 1.0), ("r", -1.0)):
            leg = phase if sign > 0 else phase + math.pi
            angles[:, :, _J[f"{side}_hip"], 0] = -hip * _DEG * a * leg.sin()
            angles[:, :, _J[f"{side}_knee"], 0] = (knee0 + knee1 * a * ((1 + (leg + 0.9).sin()) / 2) ** power) * _DEG
            angles[:, :, _J[f"{side}_ankle"], 0] = 10 * _DEG * a * leg.cos()
            angles[:, :, _J[f"{side}_shoulder"], 0] = arm * _DEG * a * leg.sin()  # against the leg of its side
            elbow = (15 + 10 * (1 + leg.sin()) / 2) if action == "walking" else (85 + 15 * leg.sin())
            angles[:, :, _J[f"{side}_elbow"], 0] = -elbow * _DEG
        angles[:, :, _J["spine"], 2] = 6 * _DEG * a * sin
        angles[:, :, _J["pelvis"], 0] = -lean * _DEG
        root[..., 1] = bob * a * (2 * phase).cos()
        root[..., 0] = 15 * a * sin
    else:  # waving
        angles[:, :, _J["r_shoulder"], 1] = -(140 + 10 * a * sin) * _DEG
        angles[:, :, _J["r_elbow"], 1] = -(60 + 35 * a * sin) * _DEG
        slow = 2 * math.pi * _uniform(0.15, 0.35, n, g)[:, None] * t + _uniform(0, 2 * math.pi, n, g)[:, None]
        angles[:, :, _J["l_shoulder"], 0] = 3 * _DEG * slow.sin()
        angles[:, :, _J["spine"], 1] = 3 * _DEG * slow.cos()
        root[..., 0] = 10 * slow.sin()
    return angles, root


def simulate(
    action: str,
    n: int,
    frames: int,
    fps: int = FPS,
    noise: float = 4.0,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``n`` sequences of ``frames`` frames of ``action`` (see the module docstring).

    Args:
        action: one of :data:`ACTIONS`.
        n, frames: number of sequences and of frames per sequence.
        fps: frames per second.
        noise: standard deviation of the measurement noise per coordinate, mm.
        generator: a ``torch.Generator``, an int seed, or ``None`` (seed 0).
        dtype: of the result (the simulation runs in float64).

    Returns:
        joint positions ``(n, frames, 19, 3)`` in mm.
    """
    if action not in ACTIONS:
        raise ValueError(f"action: expected one of {ACTIONS}, got {action!r}")
    check_positive_ints(n=n, frames=frames, fps=fps)
    if noise < 0:
        raise ValueError(f"noise: expected a standard deviation >= 0, got {noise}")
    g = seeded_generator(generator)
    t = torch.arange(frames, dtype=torch.float64) / fps
    f = _uniform(*_FREQUENCY[action], n, g)[:, None]
    depth, rate = _uniform(0, 0.15, n, g)[:, None], _uniform(0.1, 0.3, n, g)[:, None]
    chi, phi0 = _uniform(0, 2 * math.pi, n, g)[:, None], _uniform(0, 2 * math.pi, n, g)[:, None]
    phase = phi0 + 2 * math.pi * f * (t - depth / (2 * math.pi * rate) * ((2 * math.pi * rate * t + chi).cos() - chi.cos()))
    amp = _uniform(0.85, 1.15, n, g)
    size = _uniform(0.9, 1.1, n, g)[:, None]
    heading = _uniform(-math.pi / 6, math.pi / 6, n, g)[:, None]
    angles, root = _gait(action, phase, t, amp, g)
    x = forward_kinematics(angles, root, heading, size)
    x = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x.to(dtype)
