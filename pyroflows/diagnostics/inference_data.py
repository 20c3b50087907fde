r"""A fitted guide as an ``arviz.InferenceData``, with its importance weights and Pareto-:math:`\hat k`.

:func:`to_inference_data` draws from the guide (vectorised, or one draw at a time with
``vectorize=False``; see :func:`~pyroflows.infer.vectorized_traces`), replays the model on the
draws and fills the groups

- ``posterior``: every latent and ``pyro.deterministic`` site of the model, dims ``(chain, draw, ...)``.
  A dim that comes from a ``pyro.plate`` is named after the plate (so sites in one plate share
  it); other dims are ``<site>_dim_<i>`` unless ``dims`` names them. Guide-only (auxiliary) sites
  are left out.
- ``sample_stats``: ``log_p`` (:math:`\log p(x, z)`), ``log_q`` (:math:`\log q(z)`), ``log_weight``
  (their difference) and ``pareto_k``; with ``data_plate`` also ``log_p_datum``, ``log_q_datum``,
  ``log_weight_datum`` with the plate's dim, and then ``pareto_k`` has one value per data point.
  The attrs carry the :math:`\hat k` bins and ArviZ's sample-size dependent bar.
- ``log_likelihood``: :math:`\log p(y_i \mid z)` per observation, for every observed site (without
  the sites' ``scale``), as ``az.loo`` / ``az.waic`` / ``az.compare`` want it.
- ``observed_data``; ``posterior_predictive`` (the observed sites drawn anew given each posterior
  draw); with ``prior=True`` also ``prior`` (latents drawn from the model alone) and
  ``prior_predictive``.

The guide's draws are independent, so ``num_chains`` only reshapes them; R-hat and ESS of such
draws say nothing about the guide's quality, :math:`\hat k` does (:func:`guide_report`). ArviZ
logs a shape warning for R-hat of a single chain: ask for ``az.summary(idata, kind="stats")`` or
``num_chains >= 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pyro
import torch
import xarray as xr
from pyro import poutine
from scipy.special import logsumexp

from ..infer.importance import (
    PARTICLE_PLATE,
    check_plate_nesting,
    chunk_log_densities,
    draw_chunks,
    is_deterministic,
    is_observed,
    resolve_vectorize,
    sample_sites,
    stack_traces,
    uncondition,
)
from ..infer.importance import vectorize as vectorize_model
from ..validation import check_size
from .psis import (
    K_GOOD,
    K_OK,
    K_VERY_BAD,
    RELIABILITY_TAILS,
    good_k_threshold,
    k_category,
    k_reliability,
    k_verdict,
    pareto_k_from_log_weights,
    pareto_k_interval,
)

_PLATE = "plate"  # marker in a dim spec: ("plate", name) or ("anon", None)


def _event_dim(site: dict, particle_dim: int | None) -> int:
    """A site's event dims. ``pyro.deterministic`` declares all of a value's dims as event dims
    by default, so there the leading ``-particle_dim`` dims are taken as batch dims instead."""
    if is_deterministic(site) and particle_dim is not None:
        return max(site["value"].dim() + particle_dim, 0)
    return site["fn"].event_dim


def _plates_of(site: dict) -> dict[int, str]:
    return {f.dim: f.name for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None and f.name != PARTICLE_PLATE}


def _split(
    site: dict, value: torch.Tensor, event_dim: int, particle_dim: int | None, num: int | None = None
) -> tuple[np.ndarray, list[tuple[str, str | None]]]:
    """Drop the singleton batch dims that belong to no plate of the site. Returns the array (``num``
    draws first when ``particle_dim`` is given) and one spec per remaining non-draw dim."""
    value = value.detach()
    batch = value.dim() - event_dim
    plates = _plates_of(site)
    index, specs = [], []
    if particle_dim is not None:
        p = batch + particle_dim
        if p < 0:
            value = value.reshape((1,) * -p + tuple(value.shape))
            batch, p = batch - p, 0
        index += [0] * p + [slice(None)]
        slots = range(p + 1, batch)
    else:
        slots = range(batch)
    for i in slots:
        dim = i - batch  # negative, as plates count
        if dim in plates:
            index.append(slice(None))
            specs.append((_PLATE, plates[dim]))
        elif value.shape[i] == 1:
            index.append(0)
        else:
            index.append(slice(None))
            specs.append(("anon", None))
    array = value[tuple(index)]
    if num is not None and array.shape[0] != num:  # a deterministic value that ignores the particles
        array = array.expand((num,) + tuple(array.shape[1:]))
    specs += [("anon", None)] * event_dim
    return array.cpu().numpy(), specs


class _Group:
    """Arrays of one InferenceData group, gathered chunk by chunk."""

    def __init__(self, with_draws: bool = True) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.specs: dict[str, list] = {}
        self.with_draws = with_draws

    def add(self, name: str, array: np.ndarray, specs: list) -> None:
        self.parts.setdefault(name, []).append(array)
        self.specs.setdefault(name, specs)

    def arrays(self, num_chains: int) -> dict[str, np.ndarray]:
        if not self.with_draws:
            return {name: parts[0] for name, parts in self.parts.items()}
        out = {}
        for name, parts in self.parts.items():
            a = np.concatenate(parts, 0)
            out[name] = a.reshape((num_chains, a.shape[0] // num_chains) + a.shape[1:])
        return out


def _check_mapping(name: str, value: object, expected: str) -> dict:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected {expected} or None, got {type(value).__name__}")
    return dict(value or {})


def to_inference_data(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    num_chains: int = 1,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Sequence] | None = None,
    posterior_predictive: bool = True,
    prior: bool = False,
    data_plate: str | None = None,
    chunk_size: int | None = None,
    max_plate_nesting: int | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> az.InferenceData:
    r"""Draws of a fitted guide, with the model's densities, as an ``arviz.InferenceData``.

    Args:
        model: the Pyro model; ``*args`` and ``**kwargs`` are passed to it and to the guide.
        guide: the fitted guide (a flow guide, any autoguide, a hand-written or amortized guide).
        num_samples: draws per chain.
        num_chains: chains the ``num_chains * num_samples`` independent draws are split into.
        dims: names of a site's dims after ``(chain, draw)``, as in ``az.from_pyro``; by default a
            plate's dim is named after the plate, others ``<site>_dim_<i>``. The log-likelihood of
            an observed site takes the leading names (it has no event dims).
        coords: coordinate values per dim name (default ``0 .. n-1``).
        posterior_predictive: add the ``posterior_predictive`` group.
        prior: add ``prior`` and ``prior_predictive`` (as many draws, from the model alone).
        data_plate: a plate holding every latent and observed site (amortized guides): adds
            per-datum weights and gives one Pareto-:math:`\hat k` per data point.
        chunk_size: draws per vectorised pass (all at once when None); bounds the memory.
        max_plate_nesting: batch dims of the model; guessed when None.
        vectorize: draw a chunk's particles in one pass under a ``pyro.plate`` (True), one draw
            at a time (False: slower, for models that do not broadcast over an extra batch dim),
            or decide by a two-particle probe (None: falls back to one draw at a time, with one
            warning, where the model does not broadcast).

    Returns:
        ``arviz.InferenceData`` with the groups listed in the module docstring.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> x = torch.tensor([0.3, -1.2, 0.8, 2.0])
        >>> def model(x):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(sum x / 5, 1 / 5)
        ...     pyro.sample("mu", dist.Normal(x.sum() / 5, 0.2**0.5))
        >>> idata = to_inference_data(model, guide, x, num_samples=500, num_chains=2)
        >>> idata.posterior["mu"].dims, idata.log_likelihood["x"].dims
        (('chain', 'draw'), ('chain', 'draw', 'data'))
        >>> float(idata.sample_stats["pareto_k"])  # constant weights: the guide is the posterior
        -inf
    """
    num_samples = check_size("num_samples", num_samples)
    num_chains = check_size("num_chains", num_chains)
    dims = _check_mapping("dims", dims, "a dict of site name -> list of dim names")
    coords = _check_mapping("coords", coords, "a dict of dim name -> coordinate values")
    if data_plate is not None and not isinstance(data_plate, str):
        raise TypeError(f"data_plate: expected a plate name (str) or None, got {type(data_plate).__name__}")
    total = num_chains * num_samples
    max_plate_nesting = check_plate_nesting(model, guide, args, kwargs, max_plate_nesting)
    vectorize = resolve_vectorize(model, guide, args, kwargs, max_plate_nesting, vectorize)

    groups = {
        name: _Group() for name in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "prior", "prior_predictive")
    }
    groups["observed_data"] = _Group(with_draws=False)
    datum_spec = None

    for chunk, predictive in draw_chunks(
        model, guide, args, kwargs, total, chunk_size, max_plate_nesting, vectorize, predictive=posterior_predictive
    ):
        pdim = chunk.particle_dim
        for name, site in sample_sites(chunk.model_trace).items():
            if is_observed(site):
                groups["log_likelihood"].add(name, *_split(site, site["unscaled_log_prob"], 0, pdim, chunk.num_particles))
                if not isinstance(site["fn"], pyro.distributions.Unit) and name not in groups["observed_data"].parts:
                    groups["observed_data"].add(name, *_split(site, site["value"], site["fn"].event_dim, None))
            else:
                groups["posterior"].add(name, *_split(site, site["value"], _event_dim(site, pdim), pdim, chunk.num_particles))
        log_p, log_q = chunk_log_densities(chunk)
        stats = groups["sample_stats"]
        for key, value in (("log_p", log_p), ("log_q", log_q), ("log_weight", log_p - log_q)):
            stats.add(key, value.cpu().numpy(), [])
        if data_plate is not None:
            log_p, log_q = chunk_log_densities(chunk, data_plate)
            datum_spec = [(_PLATE, data_plate)]
            for key, value in (("log_p_datum", log_p), ("log_q_datum", log_q), ("log_weight_datum", log_p - log_q)):
                stats.add(key, value.cpu().numpy(), datum_spec)
        if predictive is not None:
            for name, site in sample_sites(predictive).items():
                if is_observed(site) and not isinstance(site["fn"], pyro.distributions.Unit):
                    groups["posterior_predictive"].add(name, *_split(site, site["value"], site["fn"].event_dim, pdim, chunk.num_particles))

    if prior:
        step = total if chunk_size is None else chunk_size
        pdim = -(max_plate_nesting + 1)
        for start in range(0, total, step):
            n = min(step, total - start)
            with torch.no_grad(), poutine.block():
                if vectorize:
                    trace = poutine.trace(uncondition(vectorize_model(model, n, pdim))).get_trace(*args, **kwargs)
                else:
                    trace = stack_traces(
                        [poutine.trace(uncondition(model)).get_trace(*args, **kwargs) for _ in range(n)], max_plate_nesting
                    )
            for name, site in sample_sites(trace).items():
                if isinstance(site["fn"], pyro.distributions.Unit):
                    continue
                group = "prior_predictive" if is_observed(site) else "prior"
                groups[group].add(name, *_split(site, site["value"], _event_dim(site, pdim), pdim, n))

    return _assemble(groups, num_chains, dims, coords, data_plate, total)


def _dim_names(groups: dict[str, _Group], dims: dict) -> dict[str, dict[str, list[str]]]:
    """Dim names per group and variable: user dims first, then plate names, then ``<var>_dim_<i>``.
    A plate name that clashes with a variable (or with chain / draw) becomes ``<plate>_plate``."""
    taken = {"chain", "draw"} | {name for g in groups.values() for name in g.parts}
    out = {}
    for key, group in groups.items():
        out[key] = {}
        for name, specs in group.specs.items():
            names = []
            for i, (kind, plate) in enumerate(specs):
                if kind == _PLATE:
                    names.append(f"{plate}_plate" if plate in taken else plate)
                else:
                    names.append(f"{name}_dim_{i}")
            given = list(dims.get(name, ()))
            if len(given) > len(names) and key != "log_likelihood":
                raise ValueError(f"dims[{name!r}]: expected at most {len(names)} names (the dims after chain, draw), got {given}")
            names[: len(given)] = given[: len(names)]
            out[key][name] = names
    return out


def _assemble(groups: dict[str, _Group], num_chains: int, dims: dict, coords: dict, data_plate: str | None, total: int) -> az.InferenceData:
    names = _dim_names(groups, dims)
    datasets = {}
    for key, group in groups.items():
        if not group.parts:
            continue
        arrays = group.arrays(num_chains)
        datasets[key] = az.dict_to_dataset(
            arrays,
            library=pyro,
            coords=coords,
            dims=names[key],
            default_dims=["chain", "draw"] if group.with_draws else [],
        )
    stats = datasets["sample_stats"]
    if data_plate is not None:
        plate_dim = names["sample_stats"]["log_weight_datum"][0]
        lw = stats["log_weight_datum"].stack(__sample__=("chain", "draw")).transpose("__sample__", plate_dim).values
        stats["pareto_k"] = xr.DataArray(pareto_k_from_log_weights(lw, axis=0), dims=(plate_dim,))
        stats.attrs.update(data_plate=data_plate, data_plate_dim=plate_dim)
    else:
        stats["pareto_k"] = xr.DataArray(pareto_k_from_log_weights(stats["log_weight"].values.reshape(-1)))
    stats.attrs.update(
        num_importance_samples=total,
        pareto_k_bins="good < 0.5 <= ok < 0.7 <= bad < 1 <= very bad",
        pareto_k_thresholds=[K_GOOD, K_OK, K_VERY_BAD],
        pareto_k_good_k=good_k_threshold(total) if total > 10 else K_GOOD,
    )
    return az.InferenceData(**datasets)


def guide_report(idata: az.InferenceData) -> pd.DataFrame:
    r"""A table of the importance weights in ``idata.sample_stats`` (from :func:`to_inference_data`).

    One row (``joint``), or one per data point when the InferenceData has per-datum weights, with
    columns ``elbo`` (mean log weight), ``log_evidence`` (the IS estimate
    :math:`\operatorname{logsumexp}_s \log w_s - \log S`), ``ess`` (Kish's effective sample size
    :math:`(\sum_s w_s)^2 / \sum_s w_s^2`), ``ess_fraction`` (``ess / S``), ``pareto_k``, its
    90 % bootstrap interval ``pareto_k_low`` / ``pareto_k_high`` (:func:`pareto_k_interval`),
    ``k_category`` (the bin of the point estimate), ``k_verdict`` (the bin only when the whole
    interval lies in it, else the two bins it spans) and ``k_reliability`` (:func:`k_reliability`
    of the asymmetric bounds of :data:`RELIABILITY_TAILS`: ``"reliable"``, ``"unreliable"`` or
    ``"undecided"`` at these draws; :func:`pareto_k_reliability` draws until it is decided); see
    :mod:`pyroflows.diagnostics.psis`. ``df.attrs["good_k"]`` holds ArviZ's sample-size dependent
    bar.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def guide():
        ...     pyro.sample("z", dist.Normal(0.2, 1.1))
        >>> guide_report(to_inference_data(model, guide, num_samples=2000))[["pareto_k", "k_category"]].round(1)  # doctest: +SKIP
               pareto_k k_category
        joint       0.1       good
    """
    if not hasattr(idata, "sample_stats") or "log_weight" not in idata.sample_stats:
        raise ValueError("idata: expected a sample_stats group with log_weight (made by pyroflows.diagnostics.to_inference_data)")
    stats = idata.sample_stats
    per_datum = "log_weight_datum" in stats
    if per_datum:
        plate_dim = stats["log_weight_datum"].dims[-1]
        lw = stats["log_weight_datum"].stack(__sample__=("chain", "draw")).transpose("__sample__", plate_dim).values
        index = pd.Index(stats[plate_dim].values, name=plate_dim)
    else:
        lw = stats["log_weight"].values.reshape(-1, 1)
        index = pd.Index(["joint"])
    lw = lw.astype(float)
    s = lw.shape[0]
    lse = logsumexp(lw, axis=0)
    k = np.atleast_1d(stats["pareto_k"].values) if "pareto_k" in stats else np.atleast_1d(pareto_k_from_log_weights(lw, axis=0))
    low, high = (np.atleast_1d(bound) for bound in pareto_k_interval(lw, axis=0))
    lower, upper = pareto_k_interval(lw, axis=0, tails=RELIABILITY_TAILS)  # the same resamples (same seed)
    df = pd.DataFrame(
        {
            "elbo": lw.mean(0),
            "log_evidence": lse - math.log(s),
            "ess": np.exp(2 * lse - logsumexp(2 * lw, axis=0)),
            "pareto_k": k,
            "pareto_k_low": low,
            "pareto_k_high": high,
            "k_category": np.atleast_1d(k_category(k)),
            "k_verdict": np.atleast_1d(k_verdict(low, high)),
            "k_reliability": np.atleast_1d(k_reliability(lower, upper, s if s > 10 else None)),
        },
        index=index,
    )
    df.insert(3, "ess_fraction", df["ess"] / s)
    df.attrs["good_k"] = good_k_threshold(s) if s > 10 else K_GOOD
    df.attrs["draws"] = s
    return df
