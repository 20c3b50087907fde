"""Bad arguments get a clear error naming the argument, the expected and the received value, and a
NaN is reported by the part that holds it, never passed on as someone else's input."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyroflows
import pyroflows.distributions as D
import pyroflows.flows as FL
import pyroflows.transforms as T
from pyroflows.infer import amortized_posterior, importance_log_likelihood
from pyroflows.nn import MLP, ConcatSquashNet, ConvNet, GRUConditioner, ResidualMLP

BAD_CONSTRUCTORS = [
    (lambda: T.affine_coupling(1), r"num_features: expected an integer >= 2, got 1"),
    (lambda: T.affine_coupling(4, hidden=0), r"hidden_features: expected integers >= 1, got \(0, 0\)"),
    (lambda: T.affine_coupling(4, hidden=(0,)), r"hidden_features: expected integers >= 1"),
    (lambda: T.affine_coupling(4, clamp=-1), r"clamp: expected a positive number or None, got -1"),
    (lambda: T.affine_coupling(4, split=4), r"split: expected an integer in \[1, 3\], got 4"),
    (lambda: T.coupling_flow(4, num_blocks=0), r"num_blocks: expected an integer >= 1, got 0"),
    (lambda: T.coupling_flow(-3), r"dim: expected an integer >= 1, got -3"),
    (lambda: T.coupling_flow(4, permutation="shuffle"), r"permutation: expected 'random', 'reverse', None"),
    (lambda: T.spline_coupling(4, count_bins=0), r"count_bins: expected an integer >= 1, got 0"),
    (lambda: T.spline_coupling(4, bound=-1.0), r"bound: expected a positive number, got -1.0"),
    (lambda: T.Spline(4, min_bin_width=0.3), r"min_bin_width: expected a value in \[0, 1 / count_bins\)"),
    (lambda: T.Spline(4, max_bin_ratio=1.0), r"max_bin_ratio: expected a value above 1 or None, got 1.0"),
    (lambda: T.spline_coupling(4, transform_passive="yes"), r"transform_passive: expected True or False, got 'yes'"),
    (lambda: T.conditional_spline_coupling_flow(4, 2, transform_passive=1), r"transform_passive: expected True or False, got 1"),
    (lambda: T.spline_autoregressive(3, cheap="both"), r"cheap: expected one of \('forward', 'inverse'\)"),
    (lambda: T.affine_autoregressive(3, hidden=(0,)), r"hidden: expected integers >= 1"),
    (lambda: T.maf(3, num_blocks=0), r"num_blocks: expected an integer >= 1, got 0"),
    (lambda: T.iaf(0), r"num_features: expected an integer >= 1, got 0"),
    (lambda: T.planar(0), r"dim: expected an integer >= 1, got 0"),
    (lambda: T.planar(2.5), r"dim: expected an integer >= 1, got 2.5"),
    (lambda: T.radial(0), r"dim: expected an integer >= 1, got 0"),
    (lambda: T.actnorm(3, event_dim=5), r"event_dim: expected one of 1 \(vectors\)"),
    (lambda: T.invertible_linear(0), r"num_features: expected an integer >= 1, got 0"),
    (lambda: T.sylvester(3, "orthogonal", num_ortho_vecs=4), r"num_ortho_vecs: expected an integer in \[1, 3\], got 4"),
    (lambda: T.sylvester(3, "householder", num_householder=0), r"num_householder: expected an integer >= 1, got 0"),
    (lambda: T.conditional_planar(3, 0), r"context_dim: expected an integer >= 1, got 0"),
    (lambda: T.cnf(2, atol=0), r"atol: expected a positive number, got 0"),
    (lambda: T.cnf(2, time=-1.0), r"time: expected a positive number, got -1.0"),
    (lambda: T.cnf(2, hidden=(0,)), r"hidden_features: expected integers >= 1"),
    (lambda: T.cnf(2, method="leapfrog"), r"method: expected one of"),
    (lambda: FL.glow((1, 8, 8), num_steps=0), r"num_steps: expected an integer >= 1, got 0"),
    (lambda: FL.glow((1, 8, 8), num_levels=1, hidden_channels=0), r"hidden_channels: expected an integer >= 1, got 0"),
    (lambda: FL.glow((1, 8, 8), num_levels=1, prior_clamp=0.0), r"prior_clamp: expected a positive number or None, got 0.0"),
    (lambda: FL.crow(4, num_blocks=0), r"num_blocks: expected an integer >= 1, got 0"),
    (lambda: FL.crow(4, recurrent=False, gate=True), r"gate: temporal context gating"),
    (lambda: FL.crow(4, depth=3), r"depth: not an option of CRowArchitecture"),
    (lambda: MLP(3, 2, (0,)), r"hidden_features: expected integers >= 1, got \(0,\)"),
    (lambda: MLP(0, 2), r"in_features: expected an integer >= 1, got 0"),
    (lambda: ResidualMLP(3, 2, num_blocks=-1), r"num_blocks: expected an integer >= 0, got -1"),
    (lambda: ConvNet(2, 4, 0), r"hidden_channels: expected an integer >= 1, got 0"),
    (lambda: ConcatSquashNet(2, (8, 0)), r"hidden_features: expected integers >= 1"),
    (lambda: GRUConditioner(2, 4, hidden_size=0), r"hidden_size: expected an integer >= 1, got 0"),
    (lambda: D.RelaxedConditionalFlow(2, 3, eps=0), r"eps: expected a positive number, got 0"),
    (lambda: D.RelaxedConditionalFlow(2, 3, eps=-1.0), r"eps: expected a positive number, got -1.0"),
    (lambda: D.RelaxedConditionalFlow(2, 3, num_blocks=0), r"num_blocks: expected an integer >= 1, got 0"),
    (lambda: D.CRow(2, 2, eps=0), r"eps: expected a positive number, got 0"),
    (lambda: D.CRow(2, 2, pad_noise=-0.1), r"pad_noise: expected a non-negative standard deviation"),
    (
        lambda: amortized_posterior("planar", in_features=4, latent_dim=2, num_householder=3),
        r"num_householder: an option of kind='householder' only",
    ),
    (lambda: amortized_posterior("planar", in_features=4, latent_dim=2, num_flows=-1), r"num_flows: expected an integer >= 0, got -1"),
    (lambda: pyroflows.set_validation("no"), r"enabled: expected True or False, got 'no'"),
]


@pytest.mark.parametrize("make, match", BAD_CONSTRUCTORS, ids=[m for _, m in BAD_CONSTRUCTORS])
def test_bad_arguments_are_named(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_a_conditional_transform_called_without_a_context_says_what_to_do():
    for flow in (T.conditional_planar(3, 2), T.conditional_coupling_flow(4, 2, num_blocks=1, hidden=(8,))):
        with pytest.raises(TypeError, match=r"is a conditional transform: call \.condition\(context\) first"):
            flow(torch.randn(5, flow.event_shape_spec[0] if hasattr(flow, "event_shape_spec") else 4))


@pytest.mark.parametrize(
    "flow, x_shape",
    [
        (lambda: T.conditional_planar(3, 2), (5, 3)),
        (lambda: T.conditional_coupling_flow(4, 2, num_blocks=1, hidden=(8,)), (5, 4)),
        (lambda: FL.conditional_glow((1, 4, 4), (2,), num_levels=1, num_steps=1, hidden_channels=4), (5, 1, 4, 4)),
    ],
)
def test_a_context_whose_batch_does_not_broadcast_is_named(flow, x_shape):
    t = flow().condition(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"context: batch shape \(4,\) does not broadcast with the batch shape \(5,\) of x"):
        t(torch.randn(x_shape))


def test_a_nan_parameter_inside_a_flow_is_named_not_blamed_on_the_input():
    flow = T.coupling_flow(4, num_blocks=2, hidden=(8,))
    with torch.no_grad():
        flow.parts[2].conditioner.net[0].weight[0, 0] = float("nan")  # the second coupling of block 1
    with pytest.raises(ValueError, match=r"parameters: non-finite values in \['conditioner.net.0.weight'\] of AffineCoupling"):
        flow(torch.randn(3, 4))
    with pyroflows.validation(False):  # checks only: with validation off the NaN goes through
        assert torch.isnan(flow(torch.randn(3, 4))).any()


def test_a_guide_site_missing_from_the_model_warns_as_in_pyro():
    def model(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_with_a_typo(x):
        pyro.sample("zz", dist.Normal(0.0, 1.0))

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        importance_log_likelihood(model, guide_with_a_typo, torch.tensor(0.5), num_samples=5)
    messages = " ".join(str(w.message) for w in seen)
    assert "in guide but not model" in messages and "'zz'" in messages
