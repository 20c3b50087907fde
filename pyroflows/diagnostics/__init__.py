r"""Diagnostics of fitted guides: ArviZ conversion, importance weights and Pareto-:math:`\hat k`.

- :func:`to_inference_data`: a model and a fitted guide as an ``arviz.InferenceData`` (posterior,
  sample stats with the importance weights and :math:`\hat k`, log-likelihood, observed data,
  posterior predictive, prior), ready for ``az.summary``, ``az.plot_posterior``, ``az.loo``, ...
- :func:`pareto_k`: the PSIS :math:`\hat k` of a guide's importance weights, one for a global guide
  or one per data point for an amortized guide; :func:`guide_report` tabulates them, and
  :func:`pareto_k_reliability` draws until a bootstrap interval says whether importance sampling
  with the guide is reliable.

The importance weights and the IS estimate of :math:`\log p(x)` live in :mod:`pyroflows.infer`
(:func:`~pyroflows.infer.log_importance_weights`, :func:`~pyroflows.infer.importance_log_likelihood`).
"""

from .inference_data import guide_report, to_inference_data
from .psis import (
    K_GOOD,
    K_OK,
    K_VERY_BAD,
    RELIABILITY_TAILS,
    ParetoKDecision,
    good_k_threshold,
    k_category,
    k_reliability,
    k_verdict,
    pareto_k,
    pareto_k_from_log_weights,
    pareto_k_interval,
    pareto_k_reliability,
    pareto_k_until_decided,
)

__all__ = [
    "K_GOOD",
    "K_OK",
    "K_VERY_BAD",
    "ParetoKDecision",
    "RELIABILITY_TAILS",
    "good_k_threshold",
    "guide_report",
    "k_category",
    "k_reliability",
    "k_verdict",
    "pareto_k",
    "pareto_k_from_log_weights",
    "pareto_k_interval",
    "pareto_k_reliability",
    "pareto_k_until_decided",
    "to_inference_data",
]
