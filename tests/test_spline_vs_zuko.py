"""The spline coupling flow against zuko's coupling NSF, in quick mode."""

import importlib.util
import math

import pandas as pd
import pytest
import torch

from analyses import spline_vs_zuko as analysis

# find_spec, not an import: importing zuko switches torch's distribution checks off process-wide
pytestmark = [
    pytest.mark.experiment,
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("zuko", "sklearn")), reason="needs zuko and scikit-learn"),
]


def test_digits_space_log_jacobian_matches_autograd():
    data = analysis.Data("digits", 0)
    y = data.test[:3].double()
    _, ladj = data.to_model(y)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: data.to_model(v[None])[0][0], y[i])
        assert ladj[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-8)
    assert data.to_model(data.test)[0].abs().max() < analysis.BOUND  # inside both splines' interval


def test_fits_leave_torch_argument_checks_as_they_were():
    before = torch.distributions.Distribution._validate_args
    analysis.compare("8gaussians", analysis.replace(analysis.QUICK_TOYS, steps=2, test_samples=100), [0])
    assert torch.distributions.Distribution._validate_args == before


# eight short fits: two seeds of each library on 8gaussians and on the digits
def test_quick_comparison(tmp_path):
    comparison, summary = analysis.main(["--quick", "--datasets", "8gaussians", "digits", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert len(comparison) == 8 and set(comparison.library) == {"pyroflows", "zuko"}
    assert list(summary.dataset) == ["8gaussians", "digits"] and (summary.seeds == 2).all()
    assert len(pd.read_csv(tmp_path / "comparison.csv")) == 8 and len(pd.read_csv(tmp_path / "summary.csv")) == 2
    assert comparison.fit_cpu_s.gt(0).all() and comparison.nll_se.gt(0).all()
    # both flows beat the Gaussian fitted to the held-out set itself
    assert (comparison.test_nll < comparison.gaussian_nll - 0.2).all(), comparison.to_dict()
    # on an easy toy the two libraries land close to each other
    toy = summary.set_index("dataset").loc["8gaussians"]
    assert abs(toy["pyroflows"] - toy["zuko"]) < 0.15, summary.to_dict()
    for _, row in summary.iterrows():
        per_seed = comparison[comparison.dataset == row.dataset].pivot(index="seed", columns="library", values="test_nll")
        paired = per_seed["pyroflows"] - per_seed["zuko"]
        assert row["diff"] == pytest.approx(row["pyroflows"] - row["zuko"], abs=1e-9)
        assert row["diff"] == pytest.approx(paired.mean(), abs=1e-9)
        assert row["diff_se"] == pytest.approx(paired.std() / math.sqrt(2), abs=1e-9)
        assert row["within_2se"] == (row["diff"] <= 2 * row["diff_se"])
    digits = comparison[comparison.dataset == "digits"]
    # bits/dim of the discrete digits: below the uniform model's log2(17)
    assert digits.bits_per_dim.between(0, math.log2(17)).all()


def test_the_comparison_transforms_the_conditioning_half_unless_told_not_to(tmp_path):
    args = ["--quick", "--datasets", "8gaussians", "--seeds", "0", "--libraries", "pyroflows", "--steps", "5"]
    default, _ = analysis.main([*args, "--out", str(tmp_path / "a")])
    plain, _ = analysis.main([*args, "--no-transform-passive", "--out", str(tmp_path / "b")])
    # one learned spline (3 * bins - 1 raw values) per conditioning feature (one in 2-D) and block
    extra = analysis.QUICK_TOYS.blocks * (3 * analysis.QUICK_TOYS.bins - 1)
    assert default.params.iloc[0] - plain.params.iloc[0] == extra
    flow, _ = analysis.build("pyroflows", 2, analysis.QUICK_TOYS, 0)
    assert sum(p.numel() for n, p in flow.named_parameters() if ".passive." in n) == extra


@pytest.mark.parametrize("direction", analysis.DIRECTIONS)
def test_the_direction_says_which_way_log_prob_runs_the_splines(direction):
    budget = analysis.replace(analysis.QUICK_TOYS, blocks=2, direction=direction)
    flow, log_prob = analysis.build("pyroflows", 2, budget, 0)
    with torch.no_grad():  # a flow away from the identity
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(64, 2)
    base = torch.distributions.Normal(torch.zeros(2), 1.0)
    if direction == "density":  # data to noise through the forward call: the splines' closed form
        z = flow(x)
        expected = base.log_prob(z).sum(-1) + flow.log_abs_det_jacobian(x, z)
    else:  # Pyro's direction: data to noise through the inverse
        z = flow.inv(x)
        expected = base.log_prob(z).sum(-1) - flow.log_abs_det_jacobian(z, x)
    assert torch.allclose(log_prob(x), expected, atol=1e-5)
    assert not torch.allclose(z, x, atol=1e-2)
