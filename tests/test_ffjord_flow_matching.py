"""The flow-matching against maximum-likelihood comparison on the FFJORD toys, in quick mode."""

import pandas as pd
import pytest

from analyses import ffjord_flow_matching as analysis

pytestmark = pytest.mark.experiment


# two short CNF fits (one with ODE solves) and two dopri5 scorings
def test_quick_comparison_on_8gaussians(tmp_path):
    table = analysis.main(["--quick", "--toys", "8gaussians", "--out", str(tmp_path)])
    rows = table.set_index("method")
    assert list(rows.index) == ["maximum likelihood", "flow matching"]
    fm = rows.loc["flow matching"]
    # the flow-matched CNF, scored by its exact log-density, beats the best Gaussian by a margin
    assert fm["test_nll"] < fm["gaussian_nll"] - 0.5, table.to_dict()
    assert fm["nll_gap_to_ml"] == pytest.approx(fm["test_nll"] - rows.loc["maximum likelihood", "test_nll"], abs=1e-3)
    assert fm["time_ratio"] > 0 and fm["nfe_test"] > 0
    assert len(pd.read_csv(tmp_path / "comparison.csv")) == 2
