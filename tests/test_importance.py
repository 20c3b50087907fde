"""Importance weights and the IS evidence estimate against conjugate models with a known log p(x)."""

import math
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal
from pyro.optim import Adam

from pyroflows.infer import ImportanceChunk, chunk_log_densities, importance_log_likelihood, log_importance_weights, vectorized_traces

torch.set_num_threads(1)

N = 20
X = torch.linspace(-1.0, 2.5, N)


# global: mu ~ N(0, 1), x_i ~ N(mu, 1); p(x) = N(0, I + 11^T), posterior N(sum x / (N + 1), 1 / (N + 1))
def global_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_guide(x, shift=0.0, scale=1.0):
    post_sd = (1.0 / (len(x) + 1)) ** 0.5
    pyro.sample("mu", dist.Normal(x.sum() / (len(x) + 1) + shift * post_sd, scale * post_sd))


def global_log_evidence(x):
    return dist.MultivariateNormal(torch.zeros(len(x)), torch.eye(len(x)) + 1.0).log_prob(x)


# local: z_n ~ N(0, 1), x_n ~ N(z_n, 1); p(x_n) = N(0, 2), posterior N(x_n / 2, 1 / 2)
def local_model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def local_guide(x, shift=0.0, scale=1.0):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / 2 + shift * 0.5**0.5, scale * 0.5**0.5))


def test_shapes_and_chunks():
    torch.manual_seed(0)
    assert log_importance_weights(global_model, global_guide, X, num_samples=7).shape == (7,)
    assert log_importance_weights(global_model, global_guide, X, num_samples=7, chunk_size=3).shape == (7,)
    assert log_importance_weights(local_model, local_guide, X, num_samples=7, chunk_size=3, data_plate="data").shape == (7, N)
    chunks = list(vectorized_traces(global_model, global_guide, X, num_samples=7, chunk_size=3))
    assert [c.num_particles for c in chunks] == [3, 3, 1] and all(isinstance(c, ImportanceChunk) for c in chunks)
    c = chunks[0]
    assert c.particle_dim == -2  # one data plate
    assert c.model_trace.nodes["mu"]["value"].shape == (3, 1)
    assert c.model_trace.nodes["x"]["log_prob"].shape == (3, N)
    assert "log_prob" in c.guide_trace.nodes["mu"]
    assert importance_log_likelihood(global_model, global_guide, X, num_samples=7, chunk_size=3).shape == ()
    assert importance_log_likelihood(local_model, local_guide, X, num_samples=7, chunk_size=3, data_plate="data").shape == (N,)


def test_exact_posterior_gives_the_exact_evidence():
    torch.manual_seed(0)
    exact = global_log_evidence(X)
    lw = log_importance_weights(global_model, global_guide, X, num_samples=50)
    assert torch.allclose(lw, exact.expand(50), atol=1e-3), (lw[:3], exact)
    est = importance_log_likelihood(global_model, global_guide, X, num_samples=1000, chunk_size=300)
    assert abs(float(est - exact)) < 1e-3


def test_mediocre_guide_converges_from_below():
    torch.manual_seed(0)
    exact = float(global_log_evidence(X))
    mediocre = partial(global_guide, shift=1.0, scale=1.5)  # off by one posterior sd, 1.5 times too wide
    small = torch.stack([importance_log_likelihood(global_model, mediocre, X, num_samples=5, chunk_size=5) for _ in range(200)])
    large = importance_log_likelihood(global_model, mediocre, X, num_samples=40000, chunk_size=5000)
    # Jensen: biased low on average for few samples; consistent for many
    assert float(small.mean()) < exact - 0.02
    assert float(small.mean()) <= exact + 0.01
    assert abs(float(large) - exact) < 0.01 < abs(float(small.mean()) - exact)
    # the ELBO (mean log weight) is below both
    elbo = float(log_importance_weights(global_model, mediocre, X, num_samples=5000).mean())
    assert elbo < float(small.mean()) < exact


def test_per_datum_weights_sum_to_the_joint_weights():
    torch.manual_seed(1)
    mediocre = partial(local_guide, shift=0.5, scale=1.3)
    per_datum = log_importance_weights(local_model, mediocre, X, num_samples=100, data_plate="data")
    torch.manual_seed(1)
    joint = log_importance_weights(local_model, mediocre, X, num_samples=100)
    assert torch.allclose(per_datum.sum(1), joint, atol=1e-4)


def test_per_datum_evidence_of_local_latents():
    torch.manual_seed(0)
    exact = dist.Normal(0.0, 2**0.5).log_prob(X)
    est = importance_log_likelihood(local_model, local_guide, X, num_samples=100, data_plate="data")
    assert torch.allclose(est, exact, atol=1e-5)  # exact amortized posterior: exact per datum
    assert abs(float(est.sum() - importance_log_likelihood(local_model, local_guide, X, num_samples=100))) < 1e-3
    mediocre = importance_log_likelihood(
        local_model, partial(local_guide, shift=0.5, scale=1.3), X, num_samples=20000, chunk_size=4000, data_plate="data"
    )
    assert torch.allclose(mediocre, exact, atol=0.01)
    assert abs(float(mediocre.sum() - exact.sum())) < 0.05


def test_data_plate_errors_name_the_site_and_the_plate():
    with pytest.raises(ValueError, match=r"data_plate='data'.*latent site 'mu'"):
        log_importance_weights(global_model, global_guide, X, num_samples=5, data_plate="data")
    with pytest.raises(ValueError, match=r"data_plate='rows'.*'z'"):
        log_importance_weights(local_model, local_guide, X, num_samples=5, data_plate="rows")
    with pytest.raises(TypeError, match="data_plate"):
        log_importance_weights(local_model, local_guide, X, num_samples=5, data_plate=1)
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 1, got 0"):
        log_importance_weights(local_model, local_guide, X, num_samples=0)
    with pytest.raises(ValueError, match="chunk_size"):
        importance_log_likelihood(local_model, local_guide, X, num_samples=5, chunk_size=-1)


def test_autoguide_densities_count_once():
    # no data: p(x) = 1, so the IS estimate must converge to 0 with any proposal whose log q is right,
    # here an AutoDiagonalNormal over a positive and a simplex-valued site (Jacobians in its Delta sites)
    def model():
        pyro.sample("s", dist.LogNormal(0.0, 0.5))
        pyro.sample("p", dist.Dirichlet(torch.tensor([2.0, 3.0, 4.0])))

    pyro.clear_param_store()
    torch.manual_seed(0)
    guide = AutoDiagonalNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(300):
        svi.step()
    est = importance_log_likelihood(model, guide, num_samples=20000, chunk_size=5000)
    assert abs(float(est)) < 0.02
    assert float(log_importance_weights(model, guide, num_samples=2000).mean()) < 0  # ELBO < log p(x) = 0


def test_model_latents_missing_from_the_guide_are_drawn_from_their_prior():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Gamma(2.0, 1.0))  # left out of the guide
        pyro.deterministic("c", torch.tensor(1.0))

    def guide():
        pyro.sample("a", dist.Normal(0.0, 1.0))

    lw = log_importance_weights(model, guide, num_samples=10)
    assert torch.allclose(lw, torch.zeros(10), atol=1e-6)


def test_nested_plates_are_guessed():
    def model(y):
        with pyro.plate("groups", y.shape[0], dim=-2):
            g = pyro.sample("g", dist.Normal(0.0, 1.0))
            with pyro.plate("members", y.shape[1], dim=-1):
                pyro.sample("y", dist.Normal(g, 1.0), obs=y)

    def guide(y):
        with pyro.plate("groups", y.shape[0], dim=-2):
            # exact: N(sum y / (m + 1), 1 / (m + 1)) per group
            m = y.shape[1]
            pyro.sample("g", dist.Normal(y.sum(-1, keepdim=True) / (m + 1), (1.0 / (m + 1)) ** 0.5))

    y = torch.randn(4, 3)
    exact = sum(float(global_log_evidence(row)) for row in y)
    lw = log_importance_weights(model, guide, y, num_samples=6)
    assert lw.shape == (6,) and torch.allclose(lw, torch.full((6,), exact), atol=1e-4)
    assert log_importance_weights(model, guide, y, num_samples=6, data_plate="groups").shape == (6, 4)
    assert math.isfinite(float(importance_log_likelihood(model, guide, y, num_samples=6, max_plate_nesting=3)))


def test_one_draw_at_a_time_for_models_that_do_not_broadcast():
    def regression(A, y):
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("rows", A.shape[0]):
            pyro.sample("y", dist.Normal(A @ w, 1.0), obs=y)  # A @ w breaks under a particle plate

    def guide(A, y):  # exact posterior: N(S^-1 A^T y, S^-1), S = I + A^T A
        cov = torch.linalg.inv(torch.eye(2) + A.T @ A)
        pyro.sample("w", dist.MultivariateNormal(cov @ A.T @ y, cov))

    A, y = torch.randn(6, 2), torch.randn(6)
    exact = dist.MultivariateNormal(torch.zeros(6), torch.eye(6) + A @ A.T).log_prob(y)
    with pytest.raises(RuntimeError) as info:
        log_importance_weights(regression, guide, A, y, num_samples=4, vectorize=True)
    assert "vectorize=False" in "".join(getattr(info.value, "__notes__", ["vectorize=False"]))
    with pytest.warns(UserWarning, match="drawing one particle at a time") as record:
        probed = log_importance_weights(regression, guide, A, y, num_samples=4)
    assert len(record) == 1 and torch.allclose(probed, exact.expand(4), atol=1e-4)
    lw = log_importance_weights(regression, guide, A, y, num_samples=4, vectorize=False)
    assert lw.shape == (4,) and torch.allclose(lw, exact.expand(4), atol=1e-4)
    chunked = log_importance_weights(regression, guide, A, y, num_samples=3, chunk_size=2, vectorize=False, max_plate_nesting=1)
    assert chunked.shape == (3,) and torch.allclose(chunked, exact.expand(3), atol=1e-4)


def test_a_model_that_broadcasts_by_accident_is_caught_by_the_probe():
    # two particles of a 2-D event: the scale (2,) lines up with the event, so the vectorised
    # pass runs without error but gives every coordinate another particle's scale
    def funnel():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        pyro.sample("x", dist.Normal(torch.zeros(2), (v / 2).exp()).to_event(1))

    def proposal():
        v = pyro.sample("v", dist.Normal(0.0, 2.0))
        pyro.sample("x", dist.Normal(torch.zeros(2), (v / 2).exp()).to_event(1))

    def log_weights(vectorize):
        (chunk,) = vectorized_traces(funnel, proposal, num_samples=2, vectorize=vectorize)
        v = chunk.guide_trace.nodes["v"]["value"].reshape(2, 1)
        x = chunk.guide_trace.nodes["x"]["value"].reshape(2, 2)
        log_p, _ = chunk_log_densities(chunk)
        return log_p, dist.Normal(0.0, 3.0).log_prob(v[:, 0]) + dist.Normal(0.0, (v / 2).exp()).log_prob(x).sum(-1)

    got, want = log_weights(True)
    assert not torch.allclose(got, want, atol=1e-3)  # the mixing the probe must catch
    with pytest.warns(UserWarning, match="particle 0: vectorised log density") as record:
        got, want = log_weights(None)
    assert len(record) == 1 and torch.allclose(got, want, atol=1e-5)
    with pytest.raises(TypeError, match="vectorize: expected True, False or None"):
        log_importance_weights(funnel, proposal, num_samples=2, vectorize="yes")


def test_subsampled_plates_are_refused():
    def model(x):
        with pyro.plate("data", len(x), subsample_size=5) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        with pyro.plate("data", len(x), subsample_size=5) as idx:
            pyro.sample("z", dist.Normal(x[idx] / 2, 0.5**0.5))

    with pytest.raises(ValueError, match=r"plate 'data': subsampled \(5 of 20\)"):
        log_importance_weights(model, guide, X, num_samples=3)
