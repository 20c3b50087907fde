"""The input-fuzzing tally over the shared suite's grid of unusual and bad inputs."""

import pytest

from analyses import input_fuzzing as analysis
from pyroflows.testing.fuzz import ACCEPTABLE, OUTCOMES

pytestmark = pytest.mark.experiment


def test_the_grid_is_counted_whole_and_every_outcome_is_acceptable(tmp_path):
    table = analysis.main(["--cases", "planar", "conditional_coupling_flow", "--out", str(tmp_path)])
    grid = len(analysis.grid())
    assert list(table.columns) == list(OUTCOMES)
    assert table.loc["all cases"].sum() == 2 * grid
    assert (table.drop(index="all cases").sum(axis=1) == grid).all()
    failures = table.loc["all cases"].drop(list(ACCEPTABLE))
    assert failures.sum() == 0, failures[failures > 0].to_dict()
    # valid float64 inputs of every batch shape and layout give a result
    assert table.loc["planar", "result"] >= len(analysis.BATCHES) * 3


def test_unknown_case_names_are_refused():
    with pytest.raises(ValueError, match=r"cases: unknown case names \['nope'\]"):
        analysis.run(["planar", "nope"])
