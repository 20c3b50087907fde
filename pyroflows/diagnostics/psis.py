r"""Pareto-:math:`\hat k`: how far a guide's importance weights can be trusted.

Pareto smoothed importance sampling (PSIS, Vehtari et al. 2024) fits a generalized Pareto
distribution to the largest importance ratios :math:`w_s = p(x, z_s) / q(z_s)`, :math:`z_s \sim q`.
Its shape :math:`\hat k` estimates how heavy the tail of the weights is: the ratios have finite
moments of order below :math:`1/k`, so for :math:`k \ge 1/2` their variance is infinite and for
:math:`k \ge 1` even their mean. Yao et al. (2018) read it as a diagnostic of the guide: the
smaller :math:`\hat k`, the closer :math:`q` is to the posterior in the region that matters. The
bins, as ArviZ labels them:

==================  ============  =====================================================
:math:`\hat k`      label         meaning
==================  ============  =====================================================
:math:`< 0.5`       ``good``      IS and PSIS estimates are reliable
:math:`[0.5, 0.7)`  ``ok``        PSIS estimates usable, plain IS noisy
:math:`[0.7, 1)`    ``bad``       estimates unreliable, the guide misses posterior mass
:math:`\ge 1`       ``very bad``  the weights' mean does not exist
==================  ============  =====================================================

ArviZ's ``loo`` also uses a sample-size dependent bar, :math:`\min(1 - 1/\log_{10} S,\ 0.7)`
(:func:`good_k_threshold`). Importance weights that are all equal (the guide *is* the
posterior, to rounding) have no tail to fit; :func:`pareto_k_from_log_weights` reports
:math:`-\infty` for them, where ArviZ would return :math:`+\infty`.

:math:`\hat k` is itself an estimate, and its bin flips between runs when :math:`k` is near an
edge. :func:`k_verdict` names a bin only when a bootstrap interval (:func:`pareto_k_interval`) lies
in it. :func:`k_reliability` asks the question a user acts on, whether :math:`k` lies below the bar
:math:`t` = :func:`good_k_threshold` (0.7 from 2155 draws on): ``"reliable"`` when the upper bound
lies below it, ``"unreliable"`` when the lower bound lies at or above it, else ``"undecided"``.
A false ``"reliable"`` costs more than a false ``"unreliable"``, so the bounds of
:data:`RELIABILITY_TAILS` are asymmetric: the 99 % one-sided upper bound (the 1 % tail of the
bootstrap) for ``"reliable"``, the 95 % one-sided lower bound for ``"unreliable"``.
:func:`pareto_k_until_decided` and :func:`pareto_k_reliability` draw more (doubling) until two
looks in a row give the same verdict or a cap is reached.

References: A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, "Pareto smoothed importance
sampling", JMLR 25(72), 2024; Y. Yao, A. Vehtari, D. Simpson, A. Gelman, "Yes, but did it work?:
Evaluating variational inference", ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import numpy.typing as npt
import torch

from ..infer.importance import log_importance_weights
from ..validation import check_size

K_GOOD = 0.5
"""Below this :math:`\\hat k` the weights are ``good``."""
K_OK = 0.7
"""Below this (and at least :data:`K_GOOD`) ``ok``; from here on ``bad``."""
K_VERY_BAD = 1.0
"""From here on ``very bad``: the importance ratios have no finite mean."""
RELIABILITY_TAILS = (0.05, 0.01)
"""Bootstrap probability left below the lower and above the upper bound that :func:`k_reliability`
reads: a 95 % one-sided bound for ``"unreliable"``, a 99 % one for ``"reliable"``."""


def good_k_threshold(num_samples: int) -> float:
    r"""ArviZ's sample-size dependent bar for a good :math:`\hat k`: :math:`\min(1 - 1/\log_{10} S, 0.7)`.

    Example::

        >>> round(good_k_threshold(1000), 3)
        0.667
    """
    if num_samples < 11:
        raise ValueError(f"num_samples: expected more than 10 draws for a Pareto-k bar, got {num_samples}")
    return min(1.0 - 1.0 / math.log10(num_samples), K_OK)


def k_category(k: npt.ArrayLike) -> str | np.ndarray:
    """The label of each :math:`\\hat k`: ``"good"``, ``"ok"``, ``"bad"`` or ``"very bad"``.

    Example::

        >>> k_category(0.3), k_category(np.array([0.6, 0.8, 1.2])).tolist()
        ('good', ['ok', 'bad', 'very bad'])
    """
    k = np.asarray(k, dtype=float)
    labels = np.select([k < K_GOOD, k < K_OK, k < K_VERY_BAD], ["good", "ok", "bad"], "very bad")
    return str(labels) if labels.ndim == 0 else labels


def pareto_k_from_log_weights(log_weights: torch.Tensor | npt.ArrayLike, axis: int = 0) -> float | np.ndarray:
    r"""PSIS :math:`\hat k` of log importance weights, computed with ``arviz.psislw`` (``reff=1``:
    the draws are independent).

    Args:
        log_weights: tensor or array whose ``axis`` runs over draws; any other axes (data points)
            get one :math:`\hat k` each.
        axis: the axis of the draws.

    Returns:
        a float for 1-d input, else an array of the shape without ``axis``. Rows of weights equal
        to rounding (a spread below 100 machine epsilons of their dtype, times their magnitude)
        give :math:`-\infty` (see the module docstring).

    Example::

        >>> g = np.random.default_rng(0)
        >>> light = g.normal(size=4000)                      # log-normal ratios: thin tail
        >>> heavy = np.log(g.pareto(1 / 0.9, size=4000))     # Pareto tail with k = 0.9
        >>> k = pareto_k_from_log_weights(np.stack([light, heavy], 1))
        >>> bool(k[0] < 0.5 and k[1] > 0.7)
        True
    """
    return _pareto_k(*_draws_last(log_weights, axis))


def _draws_last(log_weights: torch.Tensor | npt.ArrayLike, axis: int) -> tuple[np.ndarray, float]:
    """``(log weights as float64 with the draws on the last axis, machine epsilon of their own dtype)``."""
    if isinstance(log_weights, torch.Tensor):
        eps = torch.finfo(log_weights.dtype).eps if log_weights.is_floating_point() else np.finfo(float).eps
        log_weights = log_weights.detach().cpu().double().numpy()
    else:
        log_weights = np.asarray(log_weights)
        eps = np.finfo(log_weights.dtype).eps if np.issubdtype(log_weights.dtype, np.floating) else np.finfo(float).eps
    lw = np.moveaxis(np.asarray(log_weights, dtype=float), axis, -1)
    if lw.shape[-1] < 2:
        raise ValueError(f"log_weights: expected at least 2 draws along axis {axis}, got shape {np.shape(log_weights)}")
    return lw, float(eps)


def _tail_size(num_draws: int) -> int:
    """The number of largest weights PSIS fits its Pareto tail to (``arviz.psislw`` with ``reff=1``)."""
    return int(math.ceil(min(num_draws / 5.0, 3.0 * math.sqrt(num_draws))))


def _equal_to_rounding(lw: np.ndarray, eps: float) -> np.ndarray:
    """Rows of ``lw`` whose spread is below 100 machine epsilons of the weights' magnitude."""
    return lw.max(-1) - lw.min(-1) <= 100 * eps * np.maximum(1.0, np.abs(lw).max(-1))


def _pareto_k(lw: np.ndarray, eps: float, num_draws: int | None = None, equal: np.ndarray | None = None) -> float | np.ndarray:
    r""":math:`\hat k` per row of ``lw`` (draws last); ``eps`` is the weights' own rounding unit.

    With ``num_draws``, each row holds only the largest values of that many draws (at least five
    times the tail, :func:`_tail_size`); ``equal`` then says which rows' full draws are equal to
    rounding. :math:`\hat k` depends on the tail and the value just below it alone, so this is the
    :math:`\hat k` of the full draws."""
    if np.isnan(lw).any() or np.isposinf(lw).any():
        raise ValueError("log_weights: expected no NaN or +inf entries (the guide puts mass where the model has none?)")
    if equal is None:
        equal = _equal_to_rounding(lw, eps)
    reff = 1.0
    if num_draws is not None:
        # psislw's tail is ceil(min(n / 5, 3 sqrt(n / reff))) of the n values it sees: this reff
        # makes it the tail of num_draws draws (the half keeps the ceiling clear of rounding)
        reff = lw.shape[-1] / ((_tail_size(num_draws) - 0.5) / 3.0) ** 2
    # k is invariant to a shift of the log weights; shifting the largest to 0 keeps psislw's
    # exponentials finite when the weights span hundreds of nats
    # psislw's tail fit weighs its candidate shapes with exponentials that overflow to a weight
    # of zero for very heavy tails; that is its intended result, not an error
    with np.errstate(over="ignore"):
        _, k = az.psislw(lw - lw.max(-1, keepdims=True), reff=reff)
    k = np.where(equal, -np.inf, np.asarray(k, dtype=float))
    return float(k) if k.ndim == 0 else k


def pareto_k_interval(
    log_weights: torch.Tensor | npt.ArrayLike,
    axis: int = 0,
    level: float = 0.9,
    num_resamples: int = 200,
    seed: int = 0,
    tails: tuple[float, float] | None = None,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r"""A bootstrap interval for :math:`\hat k`: the central ``level`` quantiles of
    :func:`pareto_k_from_log_weights` over ``num_resamples`` resamples of the draws (with
    replacement, all resamples in one vectorised call).

    :math:`\hat k` is fitted to the largest :math:`\approx 3\sqrt S` weights, so its spread over
    independent runs is of order :math:`(1 + k) / \sqrt{3 \sqrt S}`, about 0.14 at
    :math:`S = 4000`: a verdict read off the point estimate alone flips between runs when
    :math:`k` is near a bin edge. :func:`k_verdict` names a bin only when the interval lies in it.

    Args:
        tails: ``(below, above)``, the bootstrap probability left below ``low`` and above ``high``
            (an asymmetric interval, such as :data:`RELIABILITY_TAILS`); replaces ``level``.

    Returns:
        ``(low, high)``, floats for 1-d input, else arrays of the shape without ``axis``.

    Example::

        >>> g = np.random.default_rng(1)
        >>> low, high = pareto_k_interval(np.log(g.pareto(1 / 0.9, size=4000)))  # k = 0.9
        >>> bool(low < 0.9 < high and high - low < 0.6)
        True
    """
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ValueError(f"level: expected a float in (0, 1), got {level!r}")
    below, above = _check_tails(((1 - level) / 2, (1 - level) / 2) if tails is None else tails)
    lw, eps = _draws_last(log_weights, axis)
    k = _bootstrap_k(lw, eps, num_resamples, seed)
    low, high = _quantile(k, below), _quantile(k, 1 - above)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def _check_tails(tails: tuple[float, float]) -> tuple[float, float]:
    if len(tails) != 2 or not all(isinstance(t, float) and 0.0 < t < 0.5 for t in tails):
        raise ValueError(f"tails: expected two floats in (0, 0.5), got {tails!r}")
    return float(tails[0]), float(tails[1])


def _bootstrap_k(lw: np.ndarray, eps: float, num_resamples: int, seed: int) -> np.ndarray:
    r""":math:`\hat k` of ``num_resamples`` resamples (with replacement) of the draws of ``lw``
    (draws last), all in one call: shape ``lw.shape[:-1] + (num_resamples,)``.

    :math:`\hat k` reads only a resample's largest values, and those come from the largest draws.
    With many draws (from about 60000) a resample is therefore built from its top alone: multinomial counts of the
    largest draws (each drawn with probability :math:`1/S` per pick, :math:`S` picks), enough of
    them to fill five tails, expanded in order. This is the full bootstrap's distribution, at a
    cost that grows with :math:`\sqrt S` instead of :math:`S` per resample."""
    num_resamples = check_size("num_resamples", num_resamples)
    g = np.random.default_rng(seed)
    n = lw.shape[-1]
    keep = 5 * _tail_size(n) + 5  # values of each resample that the tail fit can read
    pool = 2 * keep  # largest draws whose counts are drawn: they cover `keep` with room to spare
    if 4 * pool <= n:  # from about 60000 draws on; below, every draw is resampled
        top = -np.sort(-lw, axis=-1)[..., :pool]
        counts = g.multinomial(n, np.append(np.full(pool, 1.0 / n), 1.0 - pool / n), size=num_resamples)[:, :pool]
        if (counts.sum(-1) >= keep).all():
            # the j-th largest value of resample r is the draw whose cumulative count first exceeds j;
            # one searchsorted over all resamples, each row offset past the previous one
            ends = np.cumsum(counts, -1) + (n + 1) * np.arange(num_resamples)[:, None]
            wanted = np.arange(keep) + (n + 1) * np.arange(num_resamples)[:, None]
            index = np.searchsorted(ends.ravel(), wanted.ravel(), side="right").reshape(num_resamples, keep)
            index -= pool * np.arange(num_resamples)[:, None]
            return np.asarray(_pareto_k(top[..., index], eps, n, _equal_to_rounding(lw, eps)[..., None]))
    index = g.integers(0, n, size=(num_resamples, n))
    return np.asarray(_pareto_k(lw[..., index], eps))


def _quantile(k: np.ndarray, q: float) -> np.ndarray:
    r"""``np.quantile(k, q, axis=-1)`` (linear interpolation) that keeps :math:`-\infty` (weights equal
    to rounding) where numpy's interpolation would give NaN."""
    k = np.sort(k, axis=-1)
    position = q * (k.shape[-1] - 1)
    i = int(np.floor(position))
    a, b = k[..., i], k[..., min(i + 1, k.shape[-1] - 1)]
    with np.errstate(invalid="ignore"):
        between = a + (b - a) * (position - i)
    return np.where(np.isneginf(a), -np.inf, between)


def k_verdict(low: npt.ArrayLike, high: npt.ArrayLike) -> str | np.ndarray:
    r"""The bin of :math:`\hat k` when an interval ``[low, high]`` lies inside one bin, else
    ``"<bin of low> to <bin of high>"``: say so rather than guess.

    Example::

        >>> k_verdict(0.2, 0.4), k_verdict(0.6, 0.9)
        ('good', 'ok to bad')
    """
    lo, hi = np.atleast_1d(k_category(low)), np.atleast_1d(k_category(high))
    out = np.where(lo == hi, lo, np.char.add(np.char.add(lo.astype(str), " to "), hi.astype(str)))
    return str(out[0]) if np.ndim(low) == 0 else out


def k_reliability(low: npt.ArrayLike, high: npt.ArrayLike, num_samples: int | None = None) -> str | np.ndarray:
    r"""Whether :math:`k` lies below the bar :math:`t` of PSIS (Vehtari et al. 2024), read off an
    interval ``[low, high]``: ``"reliable"`` when ``high`` < :math:`t`, ``"unreliable"`` when
    ``low`` :math:`\ge t`, else ``"undecided"`` (draw more). :math:`t` is
    :func:`good_k_threshold` of ``num_samples``, or :data:`K_OK` (0.7, the bar from 2155 draws
    on) without it. Read it off the asymmetric bounds of :data:`RELIABILITY_TAILS`
    (``pareto_k_interval(lw, tails=RELIABILITY_TAILS)``), as :func:`guide_report` and
    :func:`pareto_k_until_decided` do.

    Example::

        >>> k_reliability(0.2, 0.6), k_reliability(0.75, 1.1), k_reliability(0.6, 0.8)
        ('reliable', 'unreliable', 'undecided')
        >>> k_reliability(0.5, 0.68), k_reliability(0.5, 0.68, num_samples=1000)  # the bar is 2/3 at 1000 draws
        ('reliable', 'undecided')
    """
    bar = K_OK if num_samples is None else good_k_threshold(num_samples)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    out = np.select([high < bar, low >= bar], ["reliable", "unreliable"], "undecided")
    return str(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class ParetoKDecision:
    r"""What :func:`pareto_k_until_decided` found: the point estimate ``k``, the bounds ``low`` /
    ``high`` (of :data:`RELIABILITY_TAILS` unless told otherwise), the :func:`k_reliability`
    verdict and the number of ``draws`` it took; floats and a str, or arrays with one entry per
    data point."""

    k: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    reliability: str | np.ndarray
    draws: int


def pareto_k_until_decided(
    draw: Callable[[int], torch.Tensor | npt.ArrayLike],
    num_samples: int = 4000,
    max_samples: int = 4096000,
    num_resamples: int = 200,
    tails: tuple[float, float] = RELIABILITY_TAILS,
    seed: int = 0,
) -> ParetoKDecision:
    r""":func:`k_reliability` with as many draws as it takes: ``num_samples`` log weights, then as
    many again (doubling the total) until the verdict is decided or the total would pass
    ``max_samples``.

    Each look reads the bootstrap bounds of ``tails`` of all draws so far. A verdict counts once
    two consecutive looks give it: :math:`\hat k` of a guide often climbs with :math:`S` while the
    draws have not yet reached the tail (a pre-asymptotic tail), and asking the doubled sample
    to agree holds such a guide back instead of calling it ``"reliable"`` on one run and
    ``"undecided"`` on the next. A false ``"reliable"`` at :math:`k = t` needs the 99 % one-sided
    bound crossed at two looks in a row; with at most
    :math:`\log_2(\text{max\_samples}/\text{num\_samples})` such pairs (10 at the defaults) its
    probability is at most 10 % by Bonferroni, and in practice far less, the two looks sharing
    half their draws. A guide whose :math:`k` lies on the bar stays ``"undecided"``: no number of
    draws settles it. The verdict holds for the draws it took: a tail that larger samples would
    first reach is beyond any finite-sample diagnostic.

    Args:
        draw: ``draw(n)`` returns ``n`` new log importance weights, draws on the first axis
            (any other axes: one verdict per entry, e.g. per data point).
        num_samples: the draws of the first look (a verdict needs the second, twice as many).
        max_samples: the cap on the total.
        num_resamples, seed: of the bootstrap (:func:`pareto_k_interval`).
        tails: the bootstrap probability below ``low`` and above ``high``.

    Example::

        >>> g = np.random.default_rng(0)
        >>> result = pareto_k_until_decided(lambda n: np.log(g.pareto(1 / 0.2, size=n)))  # k = 0.2
        >>> result.reliability, result.draws
        ('reliable', 8000)
    """
    num_samples = check_size("num_samples", num_samples, minimum=11)
    max_samples = check_size("max_samples", max_samples, minimum=2 * num_samples)
    below, above = _check_tails(tails)
    chunks = []
    total = 0
    previous = decided = None  # the last look's verdicts; those confirmed so far ("undecided" elsewhere)
    while True:
        lw, eps = _draws_last(draw(num_samples if total == 0 else total), 0)
        chunks.append(lw)
        total += lw.shape[-1]
        lw = np.concatenate(chunks, axis=-1)
        k_boot = _bootstrap_k(lw, eps, num_resamples, seed)
        low, high = _quantile(k_boot, below), _quantile(k_boot, 1 - above)
        look = np.asarray(k_reliability(low, high, total))
        if previous is not None:
            confirmed = np.where(look == previous, look, "undecided")
            # an entry keeps its verdict once confirmed, while the others draw on
            decided = confirmed if decided is None else np.where(decided == "undecided", confirmed, decided)
            if not (decided == "undecided").any() or 2 * total > max_samples:
                break
        previous = look
    verdict = decided
    k = _pareto_k(lw, eps)
    if np.ndim(low) == 0:
        return ParetoKDecision(float(k), float(low), float(high), str(verdict), total)
    return ParetoKDecision(k, low, high, verdict, total)


def pareto_k_reliability(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 4000,
    max_samples: int = 4096000,
    num_resamples: int = 200,
    chunk_size: int | None = None,
    data_plate: str | None = None,
    max_plate_nesting: int | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> ParetoKDecision:
    r""":func:`pareto_k_until_decided` for a guide's importance weights: whether importance sampling
    with the guide is ``"reliable"``, ``"unreliable"`` or, after ``max_samples`` draws, still
    ``"undecided"``, and how many draws it took. The remaining arguments are those of
    :func:`~pyroflows.infer.log_importance_weights` (``data_plate``: one verdict per data point).

    A verdict needs two looks in a row to agree, so a guide whose :math:`k` lies near the bar
    ends ``"undecided"`` rather than ``"reliable"`` on one run and ``"undecided"`` on the next
    (``analyses/pareto_k_stability.py`` measures the agreement over seeds on the guides of
    ``docs/diagnostics.md``); ``draws`` and the bounds say how close the call was. Such a guide
    draws up to ``max_samples`` weights, all held in memory as float64 (32 MB at the default),
    times the data points with ``data_plate``: lower ``max_samples`` for many data points or an
    expensive model.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def wide():
        ...     pyro.sample("z", dist.Normal(0.0, 1.5))
        >>> pyro.set_rng_seed(0)
        >>> pareto_k_reliability(model, wide).reliability
        'reliable'
    """

    def draw(n: int) -> torch.Tensor:
        return log_importance_weights(
            model,
            guide,
            *args,
            num_samples=n,
            chunk_size=chunk_size,
            data_plate=data_plate,
            max_plate_nesting=max_plate_nesting,
            vectorize=vectorize,
            **kwargs,
        )

    return pareto_k_until_decided(draw, num_samples, max_samples, num_resamples)


def pareto_k(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    chunk_size: int | None = None,
    data_plate: str | None = None,
    max_plate_nesting: int | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> float | np.ndarray:
    r"""PSIS :math:`\hat k` of a guide's importance weights for a model.

    One :math:`\hat k` for the joint weights of a guide over global latents; with ``data_plate``
    (every latent and observed site inside that plate: an amortized guide) one per data point,
    from the per-datum weights of :func:`~pyroflows.infer.log_importance_weights`, whose arguments
    these are.

    Returns:
        a float, or an array of shape ``(N,)`` with ``data_plate``.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def narrow():  # a tenth of the posterior's scale: ratios with a tail of shape 0.99
        ...     pyro.sample("z", dist.Normal(0.0, 0.1))
        >>> pyro.set_rng_seed(0)
        >>> bool(pareto_k(model, narrow, num_samples=10000) > 0.7)
        True
    """
    lw = log_importance_weights(
        model,
        guide,
        *args,
        num_samples=num_samples,
        chunk_size=chunk_size,
        data_plate=data_plate,
        max_plate_nesting=max_plate_nesting,
        vectorize=vectorize,
        **kwargs,
    )
    return pareto_k_from_log_weights(lw, axis=0)
