"""pyroflows' IAF guide against Pyro's AutoIAFNormal on Neal's funnel, in a short run."""

import pytest

from analyses import iaf_funnel as analysis

pytestmark = [pytest.mark.experiment, pytest.mark.usefixtures("one_thread")]


def test_the_iaf_guide_reaches_auto_iaf_normal_on_the_funnel(tmp_path):
    table = analysis.main(["--seeds", "0", "1", "--steps", "300", "--out", str(tmp_path)])
    assert set(table.guide) == {"Pyro AutoIAFNormal", "pyroflows iaf"} and len(table) == 4
    mean = table.groupby("guide")["elbo"].mean()
    # the funnel is normalised: an ELBO is minus a KL divergence, below 0 up to its standard error
    assert (table.elbo < 4 * table.elbo_se).all(), table.to_dict("records")
    # both guides learned (about -3.6 and -7.2 at the start), and ours is as good as Pyro's or better
    assert (table.elbo > -2.5).all(), table.to_dict("records")
    assert mean["pyroflows iaf"] > mean["Pyro AutoIAFNormal"] - 0.1, mean.to_dict()
