"""Amyloid simulator (known truth, realistic ranges and trajectories), TADPOLE loader, group tests."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.common import group_tests
from models.common.data import amyloid

# ----------------------------------------------------------------------------- simulator


@pytest.fixture(scope="module")
def cohort():
    return amyloid.simulate(seed=0)


def test_rois_and_truth():
    assert len(amyloid.ROI_NAMES) == len(set(amyloid.ROI_NAMES)) == 82
    beta = amyloid.EFFECTS
    assert (beta == amyloid.STRONG_EFFECT).sum() == 10 and (beta == amyloid.WEAK_EFFECT).sum() == 12
    strong = [amyloid.ROI_NAMES[r] for r in np.flatnonzero(beta == amyloid.STRONG_EFFECT)]
    assert "ctx-lh-precuneus" in strong and "ctx-rh-posteriorcingulate" in strong
    assert not any(name.startswith(("Left-", "Right-")) for name in np.asarray(amyloid.ROI_NAMES)[beta > 0])


def test_shapes_ranges_and_trajectories(cohort):
    n, T, R = cohort.suvr.shape
    assert (n, T, R) == (276, 3, 82) and cohort.affected.sum() == 22
    assert 0.6 < cohort.suvr.min() and cohort.suvr.max() < 2.2
    assert cohort.adas13.min() >= 0 and cohort.adas13.max() <= 85 and cohort.mmse.min() >= 0 and cohort.mmse.max() <= 30
    assert np.array_equal(cohort.adas13, np.rint(cohort.adas13))
    # the stage only grows: no diagnosis goes back, and every group is present at every visit
    assert (np.diff(cohort.diagnosis, axis=1) >= 0).all() and (np.diff(cohort.stage, axis=1) > 0).all()
    for t in range(T):
        assert set(np.unique(cohort.diagnosis[:, t])) == {0, 1, 2}
    # realistic group means: ADAS13 rises, MMSE falls CN -> MCI -> AD
    adas = [cohort.adas13[cohort.diagnosis == d].mean() for d in range(3)]
    mmse = [cohort.mmse[cohort.diagnosis == d].mean() for d in range(3)]
    assert 6 < adas[0] < 13 < adas[1] < 24 < adas[2] < 35
    assert mmse[0] > 28 > mmse[1] > 24 > mmse[2] > 16
    assert cohort.covariate("diagnosis").shape == (276, 3, 3) and cohort.covariate("mmse").shape == (276, 3, 1)
    with pytest.raises(ValueError, match="covariate|expected one of"):
        cohort.covariate("age")


def test_affected_rois_rise_with_the_disease_and_the_others_do_not(cohort):
    # regression of visit-3 SUVR on the true load per ROI: slope ~ effect
    load = amyloid.amyloid_load(cohort.stage[:, 2])
    slopes = np.array([stats.linregress(load, cohort.suvr[:, 2, r]).slope for r in range(82)])
    assert slopes[amyloid.EFFECTS == amyloid.STRONG_EFFECT].min() > 0.15
    assert np.abs(slopes[~cohort.affected]).max() < 0.05
    # and the subject random effects make visits of one subject correlate
    corr = np.corrcoef(cohort.suvr[:, 0, ~cohort.affected].mean(1), cohort.suvr[:, 2, ~cohort.affected].mean(1))[0, 1]
    assert corr > 0.9


def test_simulator_is_seeded_and_checks_its_input():
    a, b = amyloid.simulate(20, seed=3), amyloid.simulate(20, seed=3)
    assert np.array_equal(a.suvr, b.suvr) and not np.array_equal(a.suvr, amyloid.simulate(20, seed=4).suvr)
    with pytest.raises(ValueError, match="positive"):
        amyloid.simulate(0)


# ----------------------------------------------------------------------------- TADPOLE table


def test_tadpole_round_trip(tmp_path):
    cohort = amyloid.simulate(12, seed=1)
    path = tmp_path / "TADPOLE_D1_D2.csv"
    table = amyloid.to_tadpole(cohort, path)
    assert "CTX_LH_PRECUNEUS_UCBERKELEYAV45_10_17_16" in table and "LEFT_ACCUMBENS_AREA_UCBERKELEYAV45_10_17_16" in table
    back = amyloid.load_tadpole(path)
    assert np.allclose(back.suvr, cohort.suvr, atol=1e-6)
    assert np.array_equal(back.diagnosis, cohort.diagnosis) and np.array_equal(back.subject, cohort.subject)
    assert np.array_equal(back.adas13, cohort.adas13) and np.array_equal(back.mmse, cohort.mmse)
    assert back.effects is None
    with pytest.raises(ValueError, match="no known truth"):
        _ = back.affected


def test_tadpole_loader_handles_blanks_transitions_order_and_short_subjects(tmp_path):
    cohort = amyloid.simulate(4, visits=4, seed=2)
    table = amyloid.to_tadpole(cohort, tmp_path / "full.csv")
    table["DX"] = table["DX"].astype(object)
    table.loc[1, "DX"] = "NL to MCI"  # subject 1, visit 2: a transition counts as where it ends
    roi = amyloid.tadpole_column("ctx-rh-insula")
    table[roi] = table[roi].astype(object)
    table.loc[4, roi] = " "  # subject 2, visit 1: a blank, so the visit is dropped
    table.loc[[12, 13, 14], "ADAS13"] = np.nan  # subject 4 keeps one complete visit: dropped
    table = table.sample(frac=1.0, random_state=0)  # row order does not matter
    table.to_csv(tmp_path / "edited.csv", index=False)
    back = amyloid.load_tadpole(tmp_path / "edited.csv", visits=3)
    assert back.subject.tolist() == [1, 2, 3]
    assert back.diagnosis[0, 1] == 1
    assert np.allclose(back.suvr[1], cohort.suvr[1, 1:], atol=1e-6)  # visits 2..4 of subject 2
    assert np.allclose(back.suvr[2], cohort.suvr[2, :3], atol=1e-6)


def test_tadpole_loader_errors(tmp_path):
    pd.DataFrame({"RID": [1], "M": [0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="missing columns"):
        amyloid.load_tadpole(tmp_path / "bad.csv")
    table = amyloid.to_tadpole(amyloid.simulate(2, seed=0), tmp_path / "t.csv")
    table["DX"] = "Unknown"
    table.to_csv(tmp_path / "dx.csv", index=False)
    with pytest.raises(ValueError, match="unknown diagnosis"):
        amyloid.load_tadpole(tmp_path / "dx.csv")
    with pytest.raises(ValueError, match="complete visits"):
        amyloid.load_tadpole(tmp_path / "t.csv", visits=5)


# ----------------------------------------------------------------------------- group tests


def test_group_tests_match_scipy_and_the_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 6)), rng.normal(0.5, 2.0, size=(45, 6))
    t, p = group_tests.t_test(a, b)
    for j in range(6):
        ref = stats.ttest_ind(a[:, j], b[:, j])
        assert np.isclose(t[j], ref.statistic) and np.isclose(p[j], ref.pvalue)
    sp = np.sqrt((29 * a.var(0, ddof=1) + 44 * b.var(0, ddof=1)) / 73)
    assert np.allclose(group_tests.cohens_d(a, b), (a.mean(0) - b.mean(0)) / sp)
    assert np.allclose(t, group_tests.cohens_d(a, b) / np.sqrt(1 / 30 + 1 / 45))


def test_corrections():
    p = np.array([0.0001, 0.004, 0.019, 0.03, 0.2])
    assert group_tests.bonferroni(p, 0.05).tolist() == [True, True, False, False, False]
    # BH at 0.05: thresholds 0.01, 0.02, 0.03, 0.04, 0.05 -> the largest i with p_(i) <= i q/m is 4
    assert group_tests.benjamini_hochberg(p, 0.05).tolist() == [True, True, True, True, False]
    assert group_tests.benjamini_hochberg(p[::-1], 0.05).tolist() == [False, True, True, True, True]
    assert not group_tests.benjamini_hochberg(np.array([0.5, 0.9]), 0.05).any()
    assert group_tests.significant(p, 0.01).tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="correction"):
        group_tests.significant(p, 0.01, "holm")
    with pytest.raises(ValueError, match="alpha"):
        group_tests.significant(p, 1.5)


def test_precision_recall_and_errors():
    found, truth = np.array([1, 1, 0, 1, 0], bool), np.array([1, 0, 0, 1, 1], bool)
    assert group_tests.precision_recall(found, truth) == (2 / 3, 2 / 3)
    assert group_tests.precision_recall(np.zeros(5, bool), truth) == (1.0, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        group_tests.precision_recall(found, truth[:3])
    with pytest.raises(ValueError, match="at least 2"):
        group_tests.t_test(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="expected"):
        group_tests.cohens_d(np.ones((5, 3)), np.ones((5, 2)))


def test_group_difference_table_on_the_simulator_truth(cohort):
    # the simulator's own large groups: CN -> CN -> CN against the rest at visit 3
    big = amyloid.simulate(3000, seed=5)
    control, case = (big.diagnosis == 0).all(1), big.diagnosis[:, 2] == 2
    table = group_tests.group_difference(big.suvr[control, 2], big.suvr[case, 2], 0.01, amyloid.ROI_NAMES)
    found = table["significant_bonferroni"].to_numpy()
    precision, recall = group_tests.precision_recall(found, big.affected)
    assert precision >= 0.9 and recall == 1.0
    assert list(table.index[:2]) == list(amyloid.ROI_NAMES[:2])
