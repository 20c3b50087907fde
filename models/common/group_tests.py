r"""Mass-univariate group comparisons: per-feature two-sample t-tests, type-I error control, Cohen's d.

The statistics of a group analysis such as Hwang et al. (2019), Sec. 4.2 (82 ROIs compared
between two groups of generated sequences at one time point):

* Student's two-sample t statistic per feature (pooled variance, :math:`n_a + n_b - 2` degrees of
  freedom) and its two-sided p-value,

  .. math::

      t = \frac{\bar a - \bar b}{s_p \sqrt{1/n_a + 1/n_b}}, \qquad
      s_p^2 = \frac{(n_a - 1) s_a^2 + (n_b - 1) s_b^2}{n_a + n_b - 2};

* Cohen's d, the mean difference in units of the pooled standard deviation,
  :math:`d = (\bar a - \bar b) / s_p`;
* type-I error control over the :math:`m` features: Bonferroni (reject when :math:`p < \alpha / m`,
  family-wise error :math:`\le \alpha`) and Benjamini-Hochberg (reject the :math:`k` smallest
  p-values, :math:`k = \max\{i : p_{(i)} \le i \alpha / m\}`, false discovery rate :math:`\le \alpha`);
* precision and recall of the rejected features against a known set (for simulators with a truth).

Example::

    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(100, 5)), rng.normal(size=(100, 5))
    >>> b[:, :2] += 1.0                                     # features 0 and 1 differ
    >>> table = group_difference(a, b, alpha=0.01)
    >>> table["significant_bonferroni"].tolist()
    [True, True, False, False, False]
    >>> precision_recall(table["significant_bonferroni"], np.array([1, 1, 0, 0, 0], bool))
    (1.0, 1.0)

Reference: J. Cohen, *Statistical Power Analysis for the Behavioral Sciences*, 1988; Y. Benjamini,
Y. Hochberg, "Controlling the false discovery rate", JRSS B 57 (1995).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

CORRECTIONS = ("none", "bonferroni", "bh")


def _groups(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a, b: expected (n_a, m) and (n_b, m) arrays, got shapes {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a, b: each group needs at least 2 samples, got {len(a)} and {len(b)}")
    return a, b


def pooled_sd(a, b) -> np.ndarray:
    """:math:`s_p` per feature of groups ``a`` ``(n_a, m)`` and ``b`` ``(n_b, m)``."""
    a, b = _groups(a, b)
    na, nb = len(a), len(b)
    return np.sqrt(((na - 1) * a.var(0, ddof=1) + (nb - 1) * b.var(0, ddof=1)) / (na + nb - 2))


def cohens_d(a, b) -> np.ndarray:
    """Cohen's d per feature, :math:`(\\bar a - \\bar b) / s_p`: shape ``(m,)``."""
    a, b = _groups(a, b)
    return (a.mean(0) - b.mean(0)) / pooled_sd(a, b)


def t_test(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Student's two-sample t statistic and two-sided p-value per feature: two ``(m,)`` arrays."""
    a, b = _groups(a, b)
    result = stats.ttest_ind(a, b, axis=0, equal_var=True)
    return np.asarray(result.statistic), np.asarray(result.pvalue)


def bonferroni(p, alpha: float = 0.05) -> np.ndarray:
    """Rejections at family-wise error ``alpha``: :math:`p < \\alpha / m`."""
    p = np.asarray(p, dtype=np.float64)
    return p < alpha / p.size


def benjamini_hochberg(p, alpha: float = 0.05) -> np.ndarray:
    """Rejections at false discovery rate ``alpha`` (Benjamini-Hochberg step-up)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    below = p[order] <= alpha * np.arange(1, p.size + 1) / p.size
    k = np.flatnonzero(below).max() + 1 if below.any() else 0
    reject = np.zeros(p.size, dtype=bool)
    reject[order[:k]] = True
    return reject


def significant(p, alpha: float = 0.01, correction: str = "none") -> np.ndarray:
    """Rejections at level ``alpha`` with ``correction`` ``"none"`` (:math:`p < \\alpha`), ``"bonferroni"`` or ``"bh"``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a level in (0, 1), got {alpha}")
    if correction == "none":
        return np.asarray(p) < alpha
    if correction == "bonferroni":
        return bonferroni(p, alpha)
    if correction == "bh":
        return benjamini_hochberg(p, alpha)
    raise ValueError(f"correction: expected one of {CORRECTIONS}, got {correction!r}")


def precision_recall(found, truth) -> tuple[float, float]:
    """Share of the found features that are true (1.0 when nothing is found) and share of the true
    features that are found (NaN when there are none)."""
    found, truth = np.asarray(found, dtype=bool), np.asarray(truth, dtype=bool)
    if found.shape != truth.shape:
        raise ValueError(f"found, truth: expected the same shape, got {found.shape} and {truth.shape}")
    hits = int((found & truth).sum())
    precision = hits / found.sum() if found.any() else 1.0
    recall = hits / truth.sum() if truth.any() else float("nan")
    return float(precision), float(recall)


def group_difference(a, b, alpha: float = 0.01, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per feature: both group means, Cohen's d, t, p and whether it is significant at
    ``alpha`` without correction, after Bonferroni and after Benjamini-Hochberg."""
    a, b = _groups(a, b)
    t, p = t_test(a, b)
    table = pd.DataFrame({"mean_a": a.mean(0), "mean_b": b.mean(0), "cohens_d": cohens_d(a, b), "t": t, "p": p}, index=names)
    for correction in CORRECTIONS:
        table[f"significant_{correction}"] = significant(p, alpha, correction)
    return table
