"""The kit the experiments share: simulators and loaders (:mod:`models.common.data`), experiment
metrics (:mod:`models.common.metrics`, :mod:`models.common.metrics_prediction`), reference
forecasters (:mod:`models.common.baselines`) and mass-univariate group tests
(:mod:`models.common.group_tests`).

It lives beside the experiments, not in the installable ``pyroflows`` package: a user of flows
needs none of it. ``analyses/`` imports it too.
"""
