"""Training and log-densities under ``torch.autocast``: the conditioners run in bfloat16, the data
path, the log-dets and the base density in float32, and training reaches float32's loss."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyroflows.distributions.dual_glow import dual_glow
from pyroflows.flows.glow import glow
from pyroflows.transforms.coupling import AffineCoupling
from pyroflows.transforms.elementwise import Affine
from pyroflows.transforms.linear import InvertibleConv1x1
from pyroflows.transforms.stacks import coupling_flow
from pyroflows.validation import validation

pytestmark = pytest.mark.usefixtures("one_thread")  # small bfloat16 products are slow when threads contend

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Move every parameter off its (identity) initialisation so log-dets are not zero."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _banana(n: int, seed: int) -> torch.Tensor:
    """A bent, shifted and squeezed 2-D Gaussian (far from the standard Normal base)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    x1 = 0.5 * z[:, 0] + 2.0
    return torch.stack([x1, 0.3 * z[:, 1] + 0.5 * (x1 - 2.0).pow(2) - 1.0], -1)


def _blobs(n: int, seed: int) -> torch.Tensor:
    """Smooth random 1x8x8 images: a bright blob at a random place on a noisy background."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(8.0)
    centre = 2.0 + 4.0 * torch.rand(n, 2, 1, generator=g)
    rows = (grid - centre[:, :1]).pow(2)  # (n, 1, 8)
    cols = (grid - centre[:, 1:]).pow(2)
    blob = torch.exp(-(rows.unsqueeze(-1) + cols.unsqueeze(-2)) / 4.0)  # (n, 1, 8, 8)
    return blob + 0.1 * torch.randn(n, 1, 8, 8, generator=g)


def _train(
    make, data: torch.Tensor, autocast: bool, steps: int = 200, batch: int = 32, lr: float = 1e-2, dtype: torch.dtype = torch.bfloat16
) -> float:
    """Train ``-log_prob`` with Adam from seed 0 (autocast to ``dtype``, or float32) and return the
    float32 negative log-likelihood of the trained model on ``data``. Under float16 the loss is
    scaled by a ``GradScaler``, as on a GPU."""
    torch.manual_seed(0)
    flow, d = make()
    with torch.no_grad():
        d.log_prob(data[:256])  # ActNorm's data-dependent initialisation, outside autocast in both runs
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cpu", enabled=autocast and dtype == torch.float16)
    g = torch.Generator().manual_seed(0)
    with validation(False):  # the per-call input checks cost more than these small steps
        for _ in range(steps):
            x = data[torch.randint(len(data), (batch,), generator=g)]
            with torch.autocast("cpu", dtype=dtype, enabled=autocast):
                loss = -d.log_prob(x).mean()
            assert loss.dtype == torch.float32
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    with torch.no_grad():
        return float(-d.log_prob(data).mean())


def _coupling():
    flow = coupling_flow(2, num_blocks=2, hidden=(32,), seed=0)
    return flow, dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])


def _glow():
    flow = glow((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
    return flow, flow.distribution()


# the flows trained in float32 and in half precision, with their data
TRAINED_FLOWS = pytest.mark.parametrize(
    "make, data", [(_coupling, lambda: _banana(1024, 0)), (_glow, lambda: _blobs(512, 0))], ids=["coupling", "glow"]
)


@TRAINED_FLOWS
def test_bfloat16_training_reaches_float32_loss(make, data):
    x = data()
    _, d = make()
    with torch.no_grad():
        start = float(-d.log_prob(x).mean())
    full = _train(make, x, autocast=False)
    half = _train(make, x, autocast=True)
    assert math.isfinite(half)
    assert full < start - 0.2, (start, full)  # the runs learn: the comparison is not between two untrained flows
    assert abs(half - full) <= 0.02 * abs(full), (half, full)


@TRAINED_FLOWS
def test_float16_training_with_a_grad_scaler_reaches_float32_loss(make, data):
    """The GPU recipe (float16 autocast, a ``GradScaler``), run on the CPU, which has both."""
    x = data()
    full = _train(make, x, autocast=False, steps=100)
    half = _train(make, x, autocast=True, steps=100, dtype=torch.float16)
    assert math.isfinite(half)
    assert abs(half - full) <= 0.02 * abs(full), (half, full)


def test_conditioner_runs_in_bfloat16_and_log_det_accumulates_in_float32():
    """The coupling's network output is bfloat16 under autocast; the log-det is the float32 sum of
    the bounded log-scales of that very output (not a bfloat16 sum, which keeps 8 bits)."""
    t = AffineCoupling(4, torch.nn.Conv2d(2, 4, 3, padding=1), event_dim=3)
    with torch.no_grad():
        t.conditioner.bias.fill_(0.3)  # log-scales about 0.3: a log-det far from zero
    _perturb(t, 0.02)
    raws = []
    t.conditioner.register_forward_hook(lambda m, i, o: raws.append(o))
    x = torch.randn(5, 4, 16, 16)
    with torch.autocast(**BF16):
        y = t(x)
        ladj = t.log_abs_det_jacobian(x, y)
    assert raws[-1].dtype == torch.bfloat16
    assert y.dtype == ladj.dtype == torch.float32
    log_scale, _ = Affine().log_scale_shift(raws[-1].double(), -3)
    expected = log_scale.sum((-3, -2, -1))
    assert expected.abs().min() > 10  # large sums: a bfloat16 sum would be off by several 0.1
    torch.testing.assert_close(ladj.double(), expected, rtol=1e-5, atol=1e-4)
    # and within bfloat16's rounding of the conditioner of the float32 log-det
    ladj32 = t.log_abs_det_jacobian(x, t(x))
    torch.testing.assert_close(ladj, ladj32, rtol=2e-2, atol=0.5)


def test_invertible_conv_stays_float32_under_autocast():
    t = InvertibleConv1x1(6)
    x = torch.randn(3, 6, 4, 4)
    y32 = t(x)
    with torch.autocast(**BF16):
        y = t(x)
        back = t.inv(y)
    assert y.dtype == back.dtype == torch.float32
    torch.testing.assert_close(y, y32)
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["coupling", "glow", "dual_glow"])
def test_log_prob_is_float32_and_close_to_float32(family):
    torch.manual_seed(0)
    if family == "coupling":
        flow, d = _coupling()
        x = _banana(64, 1)
        log_prob = d.log_prob
    elif family == "glow":
        flow, d = _glow()
        x = _blobs(16, 1)
        log_prob = d.log_prob
    else:
        flow = dual_glow((1, 8, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
        x_m, x_p = torch.randn(4, 1, 8, 8, 8), torch.randn(4, 1, 8, 8, 8)
        with torch.no_grad():
            flow.objective(x_m, x_p)  # ActNorm's initialisation

        def log_prob(v):
            return flow.objective(x_m, v)

        x = x_p
    with torch.no_grad():
        log_prob(x)
        _perturb(flow, 0.02)
        full = log_prob(x)
        with torch.autocast(**BF16):
            half = log_prob(x)
    assert full.dtype == half.dtype == torch.float32
    assert torch.isfinite(half).all()
    # bfloat16 conditioners: about 3 significant digits per log-scale, averaging out over the sum
    torch.testing.assert_close(half, full, rtol=1e-2, atol=0.05 * x[0].numel() ** 0.5)
