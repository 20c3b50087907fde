"""DUAL-GLOW experiments in quick mode: what each must show (the bars at tiny settings), the
simulators behind them, and the registry protocol."""

from __future__ import annotations

import math

import pytest
import torch

from models import EXPERIMENTS, ROW_KEYS
from models.common.data.brain_phantom import ROI_NAMES, brain_phantoms, hypometabolism, roi_means
from models.common.data.modality_pairs import digit_modality_pairs, modality_transform

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

pytestmark = [pytest.mark.experiment, pytest.mark.usefixtures("one_thread")]


def _value(rows, setting, metric):
    (v,) = [r["value"] for r in rows if r["setting"] == setting and r["metric"] == metric]
    return v


# ---------------------------------------------------------------------------------------------
# simulators


def test_modality_pairs_plant_the_age_effect():
    pairs = digit_modality_pairs(seed=0)
    assert pairs.source_train.shape == (1438, 1, 16, 16) and pairs.source_test.shape == (359, 1, 16, 16)
    assert torch.equal(pairs.target_test, digit_modality_pairs(seed=0).target_test)  # fixed by the seed
    # the noise-free target's mean falls with age for every image; the noise has the stated size
    src = pairs.source_test[:20]
    young, old = modality_transform(src, torch.zeros(20)), modality_transform(src, torch.ones(20))
    assert bool((old.mean((1, 2, 3)) < young.mean((1, 2, 3))).all())
    resid = pairs.target_test - modality_transform(pairs.source_test, pairs.age_test)
    assert abs(resid.std().item() - 0.01) < 0.002
    # age is independent of the digit: no correlation with the source's mean intensity
    r = torch.corrcoef(torch.stack([pairs.age_train, pairs.source_train.mean((1, 2, 3))]))[0, 1]
    assert abs(r.item()) < 0.1


def test_brain_phantoms_hypometabolism_grows_with_age_and_disease():
    ph = brain_phantoms(120, size=16, seed=1)
    assert ph.mri.shape == ph.pet.shape == (120, 1, 16, 16, 16) and ph.rois.shape == (120, len(ROI_NAMES), 16, 16, 16)
    assert float(ph.mri.min()) >= 0 and float(ph.pet.max()) <= 1
    assert bool(ph.rois.flatten(2).any(-1).all())  # every region holds voxels in every subject
    means = roi_means(ph.pet, ph.rois)
    for r in range(len(ROI_NAMES)):
        c = torch.corrcoef(torch.stack([ph.age, means[:, r]]))[0, 1]
        assert c < -0.5, (ROI_NAMES[r], c)
        assert means[ph.disease == 1, r].mean() < means[ph.disease == 0, r].mean()
    assert torch.allclose(hypometabolism(torch.tensor([0.0, 1.0]), torch.tensor([0, 1])), torch.tensor([0.0, 0.65]))
    # the MRI carries atrophy: more CSF-like voxels with age
    csf = ((ph.mri > 0.05) & (ph.mri < 0.3)).flatten(1).float().mean(-1)
    assert torch.corrcoef(torch.stack([ph.age, csf]))[0, 1] > 0.3


# ---------------------------------------------------------------------------------------------
# quick runs


def test_transfer_quick_meets_the_bars(tmp_path):
    from models import dual_glow_transfer as m

    rows, res = m.reproduce(m.QUICK, tmp_path, seed=0, progress=False)
    assert all(set(r) == set(ROW_KEYS) for r in rows)
    bits = res["bits"]
    assert bits["glow"] - bits["dual_glow"] >= 0.5, bits  # conditional beats unconditional by >= 0.5 bits/dim
    assert bits["dual_glow_shuffled"] > bits["dual_glow"] + 0.3, bits  # shuffled pairs score worse
    table = res["table"]
    assert table["dual_glow"]["psnr"][0] >= table["mean_image"]["psnr"][0] + 3.0, table
    assert table["dual_glow"]["psnr"][0] > table["dual_glow_shuffled"]["psnr"][0] + 3.0
    assert table["dual_glow"]["ssim"][0] > table["mean_image"]["ssim"][0]
    assert res["spearman"] < -0.9, res["sweep"]  # the mean intensity falls with age, as planted
    for name in ("table1.csv", "age_sweep.csv", "examples.png", "age_sweep.png", "loss_history.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_phantom_quick_shows_age_trend_and_transfer(tmp_path):
    from models import dual_glow_phantom as m

    rows, res = m.reproduce(m.QUICK, tmp_path, seed=0, progress=False)
    assert all(set(r) == set(ROW_KEYS) for r in rows)
    assert all(rho < -0.9 for rho in res["rhos"].values()), res["rhos"]  # Fig. 7: every region falls with age
    assert res["bits_shuffled"] > res["bits"], res
    assert res["table2"]["real"]["accuracy"] > 0.8 and res["table2"]["generated"]["accuracy"] > 0.7, res["table2"]
    assert math.isfinite(_value(rows, "dual_glow", "ssim"))
    for name in ("fig7_roi_vs_age.png", "slices.png", "table2.csv", "roi_age_sweep.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_registered():
    assert EXPERIMENTS["dual_glow_transfer"] == "models.dual_glow_transfer"
    assert EXPERIMENTS["dual_glow_phantom"] == "models.dual_glow_phantom"
