"""The octagon mixture generator, the metric functions and the Sec. 5.1 reproduction in quick mode."""

import dataclasses
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from models import ROW_KEYS
from models.common.data import gaussian_mixture as gm
from models.common.metrics import accuracy, category_shares, relative_frobenius_error, sample_covariance, sample_mean_error

# ---------------------------------------------------------------------------------------------
# generator


def test_centres_form_a_regular_octagon():
    c = gm.octagon_centres(torch.float64)
    a = 1 + math.sqrt(2)
    assert c.shape == (8, 2)
    assert torch.allclose(c[0], torch.tensor([a, 1.0], dtype=torch.float64))
    assert torch.allclose(c[3], torch.tensor([-a, 1.0], dtype=torch.float64))
    expected = {(round(sx * u, 4), round(sy * v, 4)) for u, v in ((a, 1), (1, a)) for sx in (1, -1) for sy in (1, -1)}
    assert {(round(float(p), 4), round(float(q), 4)) for p, q in c} == expected
    # same radius, side 2, counter-clockwise in steps of 45 degrees from 22.5 degrees
    assert torch.allclose(c.norm(dim=-1), torch.full((8,), math.sqrt(4 + 2 * math.sqrt(2)), dtype=torch.float64))
    assert torch.allclose((c - c.roll(-1, 0)).norm(dim=-1), torch.full((8,), 2.0, dtype=torch.float64))
    angles = torch.rad2deg(torch.atan2(c[:, 1], c[:, 0])) % 360
    assert torch.allclose(angles, torch.arange(8, dtype=torch.float64) * 45 + 22.5)


def test_label_mappings():
    assert gm.num_labels("eight") == 8 and gm.num_labels("four") == 4
    assert gm.mode_labels("eight").tolist() == list(range(8))
    assert gm.mode_labels("four").tolist() == [0, 0, 0, 0, 1, 1, 2, 3]
    assert gm.modes_of_label("four", 0) == [0, 1, 2, 3]  # the upper half-plane
    assert (gm.octagon_centres()[gm.modes_of_label("four", 0), 1] > 0).all()
    assert gm.modes_of_label("four", 1) == [4, 5] and gm.modes_of_label("four", 3) == [7]
    with pytest.raises(ValueError, match="mapping"):
        gm.num_labels("three")
    with pytest.raises(ValueError, match="label"):
        gm.modes_of_label("four", 4)


def test_samples_labels_and_seed():
    x, y, mode = gm.octagon_mixture(4000, "four", generator=torch.Generator().manual_seed(1))
    assert x.shape == (4000, 2) and y.shape == (4000, 4) and mode.shape == (4000,)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert torch.equal(y.sum(-1), torch.ones(4000))
    assert torch.equal(y.argmax(-1), gm.mode_labels("four")[mode])
    # equal weights: every mode holds 1/8 of the points (binomial sd 0.005)
    assert torch.allclose(torch.bincount(mode, minlength=8) / 4000.0, torch.full((8,), 0.125), atol=0.02)
    # fixed seed: same data; another seed: other data
    x2, _, _ = gm.octagon_mixture(4000, "four", generator=torch.Generator().manual_seed(1))
    x3, _, _ = gm.octagon_mixture(4000, "four", generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    x64, _, _ = gm.octagon_mixture(10, "eight", generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert x64.dtype == torch.float64


def test_mode_std_is_0_2():
    x, _, mode = gm.octagon_mixture(80000, "eight", generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    residual = x - gm.octagon_centres(torch.float64)[mode]
    assert torch.allclose(residual.std(0), torch.full((2,), gm.STD, dtype=torch.float64), rtol=0.01)
    assert abs(float(residual[:, 0] @ residual[:, 1]) / len(x)) < 1e-3  # isotropic


@pytest.mark.parametrize("mapping", ["eight", "four"])
def test_true_posterior_moments_match_a_large_sample(mapping):
    mean, cov = gm.posterior_moments(mapping, dtype=torch.float64)
    x, y, _ = gm.octagon_mixture(200000, mapping, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for label in range(gm.num_labels(mapping)):
        s = x[y[:, label] == 1]
        assert torch.allclose(s.mean(0), mean[label], atol=0.03)
        assert torch.allclose(torch.cov(s.T), cov[label], atol=0.05 * float(cov[label].norm()))


def test_true_posterior_moments_by_hand():
    mean, cov = gm.posterior_moments("four", dtype=torch.float64)
    a = 1 + math.sqrt(2)
    # label 0: modes (a, 1), (1, a), (-1, a), (-a, 1)
    assert torch.allclose(mean[0], torch.tensor([0.0, (1 + a) / 2], dtype=torch.float64))
    var_x = (2 * a**2 + 2) / 4 + 0.04
    var_y = ((a - 1) / 2) ** 2 + 0.04
    assert torch.allclose(cov[0], torch.tensor([[var_x, 0.0], [0.0, var_y]], dtype=torch.float64))
    # label 1: modes (-a, -1), (-1, -a): the spread lies along the anti-diagonal
    assert torch.allclose(mean[1], torch.tensor([-(1 + a) / 2, -(1 + a) / 2], dtype=torch.float64))
    d = (a - 1) / 2
    assert torch.allclose(cov[1], torch.tensor([[d * d + 0.04, -d * d], [-d * d, d * d + 0.04]], dtype=torch.float64))
    # single-mode labels: the mode itself
    mean8, cov8 = gm.posterior_moments("eight")
    assert torch.allclose(mean8, gm.octagon_centres()) and torch.allclose(cov8, 0.04 * torch.eye(2).expand(8, 2, 2))


def test_assign_modes():
    c = gm.octagon_centres()
    assert gm.assign_modes(c).tolist() == list(range(8))
    direction = torch.tensor([0.6, 0.8])
    inside, outside = c[5] + 0.59 * direction, c[5] + 0.61 * direction
    assert gm.assign_modes(torch.stack([inside, outside, torch.zeros(2)])).tolist() == [5, -1, -1]
    assert gm.assign_modes(c.expand(3, 8, 2)).shape == (3, 8)
    # exact samples: about 1.1 % fall outside the 3-sd discs, the rest in their own mode
    x, _, mode = gm.octagon_mixture(50000, generator=torch.Generator().manual_seed(5))
    assigned = gm.assign_modes(x)
    elsewhere = (assigned == -1).double().mean()
    assert abs(float(elsewhere) - math.exp(-4.5)) < 0.003
    assert torch.equal(assigned[assigned >= 0], mode[assigned >= 0])


# ---------------------------------------------------------------------------------------------
# metrics


def test_accuracy_by_hand():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.0, 0.2, 0.3]])
    labels = torch.tensor([0, 1, 2, 2])  # predictions 0, 1, 0, 2: three right
    assert float(accuracy(scores, labels)) == pytest.approx(0.75)
    assert float(accuracy(scores, torch.eye(3)[labels])) == pytest.approx(0.75)  # one-hot target
    assert float(accuracy(torch.tensor([1, 1]), torch.tensor([1, 0]))) == pytest.approx(0.5)  # integer predictions
    with pytest.raises(ValueError, match="target"):
        accuracy(scores, labels[:3])


def test_relative_frobenius_error_by_hand():
    truth = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    estimate = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert float(relative_frobenius_error(estimate, truth)) == pytest.approx(1 / math.sqrt(2))
    estimate = torch.tensor([[4.0, 3.0], [0.0, 0.0]])
    truth = torch.tensor([[4.0, 0.0], [0.0, 4.0]])  # ||(0, 3; 0, -4)|| / ||truth|| = 5 / sqrt(32)
    assert float(relative_frobenius_error(estimate, truth)) == pytest.approx(5 / math.sqrt(32))
    batch = relative_frobenius_error(torch.zeros(3, 2, 2), torch.eye(2))
    assert batch.shape == (3,) and torch.allclose(batch, torch.ones(3))


def test_sample_moments_by_hand():
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    # mean (1, 1); deviations +-1 in each coordinate, uncorrelated: variance 4 / 3
    assert torch.allclose(sample_covariance(s), torch.eye(2) * 4 / 3)
    assert float(sample_mean_error(s, torch.tensor([4.0, 5.0]))) == pytest.approx(5.0)
    batched = torch.stack([s, s + 1], dim=1)  # (N, 2, d)
    assert sample_covariance(batched).shape == (2, 2, 2)
    assert torch.allclose(sample_mean_error(batched, torch.tensor([[1.0, 1.0], [1.0, 1.0]])), torch.tensor([0.0, math.sqrt(2)]))


def test_category_shares_by_hand():
    a = torch.tensor([0, 1, 1, 3, -1, 0, 1, 2])
    assert category_shares(a, [0, 1, 2, 3]).tolist() == [0.25, 0.375, 0.125, 0.125]
    assert float(1 - category_shares(a, [0, 1]).sum()) == pytest.approx(0.375)  # everything else
    with pytest.raises(ValueError, match="assignment"):
        category_shares(a.float(), [0])


# ---------------------------------------------------------------------------------------------
# the flow as a Pyro likelihood


def test_elbo_of_the_pyro_model_is_the_flow_log_likelihood():
    import models.xiao_gaussian_mixture as xgm

    settings = dataclasses.replace(xgm.QUICK, width=16, num_blocks=2)
    flow = xgm.make_flow("four", settings, seed=0)
    with torch.no_grad():  # a non-trivial network
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    flow.eval()  # x_0 = 0: deterministic log-likelihood
    x, y, _ = gm.octagon_mixture(50, "four", generator=torch.Generator().manual_seed(0))
    pyro.clear_param_store()
    model, guide = xgm.likelihood_model(flow)
    elbo = -Trace_ELBO().loss(model, guide, x, y)
    assert elbo == pytest.approx(float(flow.condition(y).log_prob(x).sum().detach()), rel=1e-5)
    # the same flow generates from the posterior of each label
    assert flow.condition(torch.eye(4)).sample(torch.Size([3])).shape == (3, 4, 2)


def test_full_settings_build_the_papers_ten_dimensional_network_for_both_mappings():
    import models.xiao_gaussian_mixture as xgm

    small = dataclasses.replace(xgm.FULL, width=8, num_blocks=1)
    for mapping in ("eight", "four"):
        flow = xgm.make_flow(mapping, small, seed=0)
        assert (flow.x_dim, flow.pad_dim, flow.z_dim, flow.y_dim) == (2, 8, 2, 8)
    y = torch.eye(4)[[0, 3]]
    wide = xgm.encode_labels(y, "four", small)
    assert wide.shape == (2, 8) and torch.equal(wide[:, :4], y) and not wide[:, 4:].any()
    assert xgm.encode_labels(y, "four", xgm.QUICK).shape == (2, 4)  # quick mode: the compact encoding
    with pytest.raises(ValueError, match="label_dim"):
        xgm.label_width("eight", dataclasses.replace(small, label_dim=4))
    # full settings: the paper's network and data, trained longer with a decaying learning rate
    assert dataclasses.replace(xgm.FULL, iterations=400, lr_decay=1.0) == xgm.PAPER_SETTINGS
    assert (xgm.PAPER_SETTINGS.iterations, xgm.PAPER_SETTINGS.lr, xgm.PAPER_SETTINGS.batch) == (400, 1e-3, 1600)


@pytest.mark.experiment
def test_reproduce_trains_only_the_chosen_variants(tmp_path):
    import models.xiao_gaussian_mixture as xgm

    tiny = dataclasses.replace(xgm.QUICK, width=8, num_blocks=1, iterations=3, batch=64, num_test=64, num_samples=64)
    rows, results = xgm.reproduce(tiny, tmp_path, seed=0, progress=False, mappings=("four",), variants=("inn_forward",))
    assert set(results) == {("ours", "four"), ("inn_forward", "four")}  # ours is always trained
    assert {r["setting"] for r in rows} == {"ours/four", "inn_forward/four"}
    assert (tmp_path / "fig5_2.png").stat().st_size > 0
    with pytest.raises(ValueError, match="variants"):
        xgm.reproduce(tiny, tmp_path, progress=False, mappings=("four",), variants=("inn_backward",))


# ---------------------------------------------------------------------------------------------
# the reproduction in quick mode (Settings QUICK: width 64, 300 iterations, batch 400)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    import models.xiao_gaussian_mixture as xgm

    out = tmp_path_factory.mktemp("xiao_gaussian_mixture")
    rows, results = xgm.reproduce(xgm.QUICK, out, seed=0, progress=False)
    return out, rows, results


def _value(rows, setting, metric):
    (value,) = [r["value"] for r in rows if r["setting"] == setting and r["metric"] == metric]
    return value


@pytest.mark.experiment
def test_quick_rows_and_files(quick_run):
    import models.xiao_gaussian_mixture as xgm

    out, rows, results = quick_run
    assert all(set(r) == set(ROW_KEYS) for r in rows)
    assert {r["experiment"] for r in rows} == {"xiao_gaussian_mixture"}
    # 3 metrics per model and mapping, plus 4 mode shares, their largest deviation and the share
    # elsewhere on the four-label mapping
    assert len(rows) == len(xgm.VARIANTS) * (3 + 3 + 6)
    ours = [r for r in rows if r["setting"].startswith("ours/")]
    assert all(math.isfinite(r["value"]) for r in ours)
    # the targets are on ours; the INN variants are shown beside it without targets
    targeted = [r for r in ours if r["target"] is not None]
    assert len(targeted) == 3 + 5 and all(r["headline"] and isinstance(r["met"], bool) for r in targeted)
    assert all(r["target"] is None and not r["headline"] for r in rows if not r["setting"].startswith("ours/"))
    share = next(r for r in ours if r["setting"] == "ours/four" and r["metric"] == "label0_share_elsewhere")
    assert share["target"] == xgm.BARS["elsewhere"] and share["target_kind"] == "<"
    for name in ("fig5_1.png", "fig5_2.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 20_000
    assert (out / "loss_history.csv").exists()
    assert len(list((out / "checkpoints").glob("*.pt"))) == 8


@pytest.mark.experiment
def test_quick_ours_learns_the_posterior(quick_run):
    _, rows, _ = quick_run
    for mapping in ("eight", "four"):
        assert _value(rows, f"ours/{mapping}", "forward_accuracy") >= 0.97
    # quick settings (a 64-wide network, 300 small batches) leave wide tails: looser bars than the full run's
    assert _value(rows, "ours/eight", "posterior_mean_error_max") <= 0.2
    assert _value(rows, "ours/eight", "posterior_cov_rel_error_max") <= 2.0
    assert _value(rows, "ours/four", "posterior_mean_error_max") <= 0.35


@pytest.mark.experiment
def test_quick_ours_splits_the_four_mode_label(quick_run):
    _, rows, _ = quick_run
    shares = [_value(rows, "ours/four", f"label0_share_mode{k}") for k in range(4)]
    assert all(0.08 <= s <= 0.35 for s in shares), shares  # every mode populated, none dominant
    elsewhere = _value(rows, "ours/four", "label0_share_elsewhere")
    assert elsewhere == pytest.approx(1 - sum(shares), abs=1e-6)
    assert elsewhere <= 0.6


@pytest.mark.experiment
def test_quick_inn_baselines(quick_run):
    _, rows, _ = quick_run
    # full losses: the forward pass classifies and the backward pass lands near the modes
    assert _value(rows, "inn_full/eight", "forward_accuracy") >= 0.97
    assert _value(rows, "inn_full/eight", "posterior_mean_error_max") <= 0.3
    # forward losses only (Fig. 5.2 middle): classification works, the posterior does not
    assert _value(rows, "inn_forward/eight", "forward_accuracy") >= 0.9
    assert _value(rows, "inn_forward/eight", "posterior_mean_error_max") > 1.0
    assert _value(rows, "inn_forward/four", "label0_share_elsewhere") > _value(rows, "ours/four", "label0_share_elsewhere") + 0.2


@pytest.mark.experiment
def test_quick_run_reloads_finished_checkpoints(quick_run, monkeypatch):
    import models.xiao_gaussian_mixture as xgm

    def no_training_batch(*args):
        raise AssertionError("a finished checkpoint was retrained")

    out, rows, _ = quick_run
    monkeypatch.setattr(xgm, "_batch", no_training_batch)  # every training step draws its batch here
    again, _ = xgm.reproduce(xgm.QUICK, out, seed=0, progress=False)
    assert again == rows  # same weights, same seeded evaluation
