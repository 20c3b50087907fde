"""The articulated-skeleton simulator (models.common.data.skeleton)."""

import math

import pytest
import torch

from models.common.data import skeleton

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("action", skeleton.ACTIONS)
def test_shapes_determinism_and_seeds(action):
    x = skeleton.simulate(action, 5, 40)
    assert x.shape == (5, 40, len(skeleton.JOINTS), 3) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, skeleton.simulate(action, 5, 40, generator=0))
    assert not torch.equal(x, skeleton.simulate(action, 5, 40, generator=1))
    assert skeleton.simulate(action, 2, 3, dtype=torch.float64).dtype == torch.float64


def test_bone_lengths_are_kept_and_noise_free_poses_are_rigid():
    x = skeleton.simulate("running", 3, 30, noise=0.0, dtype=torch.float64)
    for j, parent in enumerate(skeleton.PARENTS):
        if parent < 0:
            continue
        length = (x[..., j, :] - x[..., parent, :]).norm(dim=-1)  # (n, T): constant in time per subject
        assert torch.allclose(length, length[:, :1].expand_as(length), atol=1e-9)
        rest = float(skeleton.OFFSETS[j].norm())
        assert torch.all((length[:, 0] >= 0.9 * rest - 1e-9) & (length[:, 0] <= 1.1 * rest + 1e-9))


def test_forward_kinematics_of_the_rest_pose():
    angles = torch.zeros(len(skeleton.JOINTS), 3, dtype=torch.float64)
    x = skeleton.forward_kinematics(angles, torch.zeros(3, dtype=torch.float64))
    # the left wrist hangs below the left shoulder by upper arm + forearm
    sh, wr = skeleton.JOINTS.index("l_shoulder"), skeleton.JOINTS.index("l_wrist")
    assert torch.allclose(x[wr] - x[sh], torch.tensor([0.0, -550.0, 0.0], dtype=torch.float64))
    # a 90-degree heading turns the toes from +z to +x
    toe, ankle = skeleton.JOINTS.index("l_toe"), skeleton.JOINTS.index("l_ankle")
    turned = skeleton.forward_kinematics(
        angles, torch.zeros(3, dtype=torch.float64), heading=torch.tensor(math.pi / 2, dtype=torch.float64)
    )
    assert torch.allclose(turned[toe] - turned[ankle], torch.tensor([130.0, -60.0, 0.0], dtype=torch.float64), atol=1e-9)
    with pytest.raises(ValueError, match="angles: expected shape"):
        skeleton.forward_kinematics(torch.zeros(5, 3), torch.zeros(3))


def test_actions_differ_in_what_moves():
    walk, wave = skeleton.simulate("walking", 20, 50, noise=0.0), skeleton.simulate("waving", 20, 50, noise=0.0)
    toe, wrist = skeleton.JOINTS.index("l_toe"), skeleton.JOINTS.index("r_wrist")
    head = skeleton.JOINTS.index("head")
    # walking swings the feet, waving keeps them still and raises the right hand above the head
    assert float(walk[:, :, toe].std(1).mean()) > 5 * float(wave[:, :, toe].std(1).mean())
    assert bool((wave[:, :, wrist, 1] > wave[:, :, head, 1] - 200).float().mean() > 0.9)
    # running is faster than walking: more motion per frame
    run = skeleton.simulate("running", 20, 50, noise=0.0)

    def speed(x):
        return float(x.diff(dim=1).norm(dim=-1).mean())

    assert speed(run) > 1.5 * speed(walk)


def test_horizons_and_bad_arguments():
    assert skeleton.horizon_frames([80, 160, 320, 400, 560, 1000]) == [2, 4, 8, 10, 14, 25]
    with pytest.raises(ValueError, match="action: expected one of"):
        skeleton.simulate("dancing", 2, 5)
    with pytest.raises(ValueError, match="frames: expected a positive int"):
        skeleton.simulate("walking", 2, 0)
    with pytest.raises(ValueError, match="noise"):
        skeleton.simulate("walking", 2, 5, noise=-1.0)
