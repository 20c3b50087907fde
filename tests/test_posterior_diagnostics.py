"""The posterior-diagnostics analysis in quick mode on Neal's funnel: the diagonal guide is flagged,
a flow guide is not as badly, and the flow's spread of v is nearer NUTS's."""

import pandas as pd
import pytest

from analyses import posterior_diagnostics as analysis

pytestmark = pytest.mark.experiment


# four SVI fits, NUTS and 10^4 draws per guide
def test_quick_run_on_the_funnel(tmp_path):
    summary = analysis.main(["--quick", "--models", "funnel", "--out", str(tmp_path), "--no-progress"])
    assert set(summary["method"]) == {"exact", "nuts", *analysis.GUIDES}
    rows = summary.set_index("method")
    assert set(summary["param"]) == {"v"}

    k = rows["pareto_k"]
    flows = ["coupling", "sylvester", "planar"]
    best = k[flows].idxmin()
    assert k["diagonal"] > 0.7, k.to_dict()
    assert k[best] < k["diagonal"], k.to_dict()
    assert rows.loc[best, "neg_elbo"] < rows.loc["diagonal", "neg_elbo"]

    sd = rows["sd"]
    assert abs(sd[best] - sd["nuts"]) < abs(sd["diagonal"] - sd["nuts"]), sd.to_dict()
    assert abs(sd["exact"] - 3.0) < 0.1  # the direct draws: v ~ N(0, 3^2)
    assert rows.loc["nuts", "ess_bulk"] > 5

    written = pd.read_csv(tmp_path / "summary.csv")
    assert len(written) == len(summary)
    params = pd.read_csv(tmp_path / "parameters.csv")
    assert {"v", "x[0]", "x[8]"} <= set(params["param"])
    png = tmp_path / "posteriors.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
