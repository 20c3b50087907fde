"""The fit loop (checkpoints, resume, NaN reports) and the INN baseline's losses."""

import os

import pytest
import torch

from pyroflows.distributions import RelaxedConditionalFlow
from pyroflows.infer import INNLoss, fit, inverse_multiquadric_mmd, save_checkpoint


def _problem(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(100)  # the same data whatever the seed of the weights
    x = torch.randn(64, 3, generator=g)
    target = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(64, generator=g)

    def step(i):
        opt.zero_grad()
        noise = 0.01 * torch.randn(64)  # uses the RNG, so resuming must restore it
        loss = ((net(x).squeeze(-1) - target - noise) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    return net, opt, step


def test_fit_reduces_loss_and_returns_history():
    net, opt, step = _problem()
    hist = fit(step, 200, {"net": net, "opt": opt}, progress=False, log_every=10)
    assert list(hist.columns) == ["step", "loss"] and len(hist) == 20
    assert hist.loss.iloc[-1] < 0.05 * hist.loss.iloc[0]


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    ckpt = tmp_path / "run.pt"
    net_a, opt_a, step_a = _problem()
    fit(step_a, 60, {"net": net_a, "opt": opt_a}, progress=False)

    net_b, opt_b, step_b = _problem()
    calls = []

    def crashing(i):
        if i == 37:
            raise KeyboardInterrupt
        calls.append(i)
        return step_b(i)

    with pytest.raises(KeyboardInterrupt):
        fit(crashing, 60, {"net": net_b, "opt": opt_b}, checkpoint=ckpt, checkpoint_every=20, progress=False)
    assert ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] == 20

    net_c, opt_c, step_c = _problem(seed=5)  # fresh objects; state comes from the checkpoint
    resumed = []
    fit(lambda i: (resumed.append(i), step_c(i))[1], 60, {"net": net_c, "opt": opt_c}, checkpoint=ckpt, checkpoint_every=20, progress=False)
    assert resumed[0] == 20 and resumed[-1] == 59
    for a, c in zip(net_a.parameters(), net_c.parameters()):
        assert torch.allclose(a, c, atol=1e-6)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_nan_loss_names_step_and_parameters():
    net = torch.nn.Linear(2, 1)

    def step(i):
        if i == 4:
            with torch.no_grad():
                net.weight.fill_(float("nan"))
        return net(torch.ones(1, 2)).sum()

    with pytest.raises(FloatingPointError, match=r"net: non-finite values in parameters \['weight'\]"):
        fit(step, 10, {"net": net}, progress=False, log_every=1)


def test_mmd_is_small_for_same_distribution_and_large_for_different():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    c = torch.randn(500, 2, generator=g) + torch.tensor([2.0, 0.0])
    same, diff = inverse_multiquadric_mmd(a, b), inverse_multiquadric_mmd(a, c)
    assert same < 0.02 and diff > 10 * same
    assert inverse_multiquadric_mmd(a, a).abs() < 1e-6
    with pytest.raises(ValueError, match="b: expected shape"):
        inverse_multiquadric_mmd(a, torch.randn(5, 3))


def test_inn_loss_terms_and_ramp():
    torch.manual_seed(0)
    model = RelaxedConditionalFlow(2, 4, num_blocks=1, hidden=(8,))
    loss = INNLoss(model, ramp_iters=100)
    assert loss.ramp(0) == pytest.approx(0.004) and loss.ramp(100) == 1.0 and loss.ramp(50) < loss.ramp(90)
    x, y = torch.randn(32, 2), torch.eye(4)[torch.randint(4, (32,))]
    total, terms = loss(x, y, 0)
    assert set(terms) == {"fit_y", "mmd_z", "mmd_x", "rec_x"}
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    fwd_only = INNLoss(model, w_x=0.0, w_rec=0.0)
    assert set(fwd_only(x, y, 0)[1]) == {"fit_y", "mmd_z"}
    with pytest.raises(ValueError, match="y: expected shape"):
        loss(x, torch.randn(32, 3))
