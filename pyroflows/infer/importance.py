r"""Importance weights of a guide and the importance-sampled marginal likelihood.

A guide :math:`q(z)` (any Pyro guide: a flow, an autoguide, a hand-written or amortized one) is a
proposal for the model's posterior. With :math:`z_s \sim q` the log importance weights are

.. math::

    \log w_s = \log p(x, z_s) - \log q(z_s), \qquad s = 1, \dots, S,

their mean is a Monte Carlo ELBO, and

.. math::

    \log \hat p(x) = \log \frac{1}{S} \sum_{s=1}^{S} w_s
      = \operatorname{logsumexp}_s(\log w_s) - \log S

is the importance-sampling (IS) estimate of the evidence: consistent as :math:`S \to \infty`, and,
by Jensen's inequality, biased low for finite :math:`S` (:math:`\mathbb E \log \hat p(x) \le \log p(x)`),
with equality for every :math:`S` when :math:`q` is the exact posterior.

When every latent and observed site sits in one data plate (local latents, an amortized guide
:math:`q(z_n \mid x_n)`), the weights factorise over the data,
:math:`\log w_s = \sum_n \log w_{s,n}` with
:math:`\log w_{s,n} = \log p(x_n, z_{s,n}) - \log q(z_{s,n} \mid x_n)`, and ``data_plate`` returns one
weight (and one evidence estimate :math:`\log \hat p(x_n)`) per data point.

The draws are vectorised: model and guide run once per chunk under an outer ``pyro.plate`` over
particles at dim ``-(max_plate_nesting + 1)``, so the model must broadcast like a model for
``Trace_ELBO(vectorize_particles=True)`` (plates for batch dims, ``.to_event`` for event dims).
``vectorize=False`` traces one draw at a time instead (slower; for models that do not broadcast)
and stacks the traces into the same layout. Conventions, those of Pyro's ELBO:

- log densities include each site's ``scale`` and ``mask`` (``poutine.scale``, ``poutine.mask``);
  plates must not subsample (the weights need the whole data);
- :math:`\log q` sums every guide site, auxiliary ones (``infer={"is_auxiliary": True}``) included,
  so an autoguide's joint density is counted once;
- a model latent the guide leaves out is drawn from its prior during the replay; its prior density
  then cancels from :math:`\log w` and is left out of both terms;
- ``pyro.deterministic`` sites carry no density.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.runtime import Message
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from ..validation import check_size

PARTICLE_PLATE = "_pyroflows_particles"


class ImportanceChunk(NamedTuple):
    """One chunk of vectorised draws: the guide's trace and the model's trace replayed on it.

    Both traces hold ``log_prob`` for every sample site (computed under ``torch.no_grad()``);
    every value and log density has the particles at dim ``particle_dim`` (counted from the right
    of the batch shape).
    """

    guide_trace: poutine.Trace
    model_trace: poutine.Trace
    num_particles: int
    particle_dim: int


def is_deterministic(site: dict) -> bool:
    """Whether a trace site comes from ``pyro.deterministic``."""
    return bool((site.get("infer") or {}).get("_deterministic", False))


def is_observed(site: dict) -> bool:
    """Whether a model site is observed data (not a ``pyro.deterministic`` site); also true for a
    site made latent by ``poutine.uncondition``."""
    if is_deterministic(site):
        return False
    return bool(site["is_observed"] or (site.get("infer") or {}).get("was_observed", False))


def sample_sites(trace: poutine.Trace) -> dict[str, dict]:
    """The trace's sample sites without plate (subsample) sites, in execution order."""
    return {name: site for name, site in prune_subsample_sites(trace).nodes.items() if site["type"] == "sample"}


def vectorize(fn: Callable, num_particles: int, particle_dim: int) -> Callable:
    """``fn`` run under ``pyro.plate`` over ``num_particles`` particles at ``particle_dim``."""

    def vectorized(*args: Any, **kwargs: Any) -> object:
        with pyro.plate(PARTICLE_PLATE, num_particles, dim=particle_dim):
            return fn(*args, **kwargs)

    return vectorized


class _Uncondition(poutine.messenger.Messenger):
    """``poutine.uncondition`` that leaves ``pyro.deterministic`` sites as computed."""

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"] and not is_deterministic(msg):
            msg["is_observed"] = False
            msg["infer"] = dict(msg["infer"] or {}, was_observed=True, obs=msg["value"])
            msg["value"] = None
            msg["done"] = False


def uncondition(fn: Callable) -> Callable:
    """``fn`` with its observed sites drawn from their distributions (``pyro.deterministic`` sites
    keep their computed values)."""
    return _Uncondition()(fn)


def check_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict, max_plate_nesting: int | None) -> int:
    """``max_plate_nesting`` checked, or guessed by :func:`guess_max_plate_nesting` when None."""
    if max_plate_nesting is None:
        return guess_max_plate_nesting(model, guide, *args, **kwargs)
    if isinstance(max_plate_nesting, bool) or not isinstance(max_plate_nesting, int) or max_plate_nesting < 0:
        raise ValueError(f"max_plate_nesting: expected a non-negative integer or None, got {max_plate_nesting!r}")
    return max_plate_nesting


def guess_max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """How many batch dims the model and guide use: traces both once (no particles) and takes the
    deepest plate dim and the longest log-density batch shape."""
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    nesting = 0
    for trace in (guide_trace, model_trace):
        trace.compute_log_prob()
        for site in sample_sites(trace).values():
            dims = [-f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None]
            nesting = max([nesting, site["log_prob"].dim(), *dims])
    return nesting


def _check_full_plates(trace: poutine.Trace) -> None:
    for name, site in trace.nodes.items():
        if site_is_subsample(site) and name != PARTICLE_PLATE:
            size, sub = site["fn"].size, site["fn"].subsample_size
            if sub is not None and sub < size:
                raise ValueError(
                    f"plate {name!r}: subsampled ({sub} of {size}); importance weights need the whole data, "
                    "so call the model and guide without subsample_size"
                )


def _pad_batch(x: torch.Tensor, event_dim: int, nesting: int) -> torch.Tensor:
    missing = nesting - (x.dim() - event_dim)
    return x.reshape((1,) * missing + tuple(x.shape)) if missing > 0 else x


def stack_traces(traces: list[poutine.Trace], max_plate_nesting: int) -> poutine.Trace:
    """Traces of single draws stacked into the layout of a vectorised trace: values and log
    densities get the draws at dim ``-(max_plate_nesting + 1)`` of their batch shape (observed
    values stay as they are)."""
    stacked = poutine.Trace()
    for name, site in traces[0].nodes.items():
        site = dict(site)
        if site["type"] == "sample" and not site_is_subsample(site):
            for key in ("value", "log_prob", "unscaled_log_prob"):
                if key not in site or (key == "value" and site["is_observed"] and not is_deterministic(site)):
                    continue
                parts = [t.nodes[name][key] for t in traces]
                if key != "value":
                    event_dim = 0
                elif is_deterministic(site):  # pyro.deterministic declares every dim an event dim
                    event_dim = max(parts[0].dim() - max_plate_nesting, 0)
                else:
                    event_dim = site["fn"].event_dim
                site[key] = torch.stack([_pad_batch(x, event_dim, max_plate_nesting) for x in parts], 0)
            if "log_prob" in site:
                site["log_prob_sum"] = site["log_prob"].sum()
        stacked.add_node(name, **site)
    return stacked


def _draw(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, n: int, nesting: int, vectorized: bool, predictive: bool
) -> tuple[poutine.Trace, poutine.Trace, poutine.Trace | None]:
    """``(guide trace, model trace, posterior-predictive trace or None)`` of ``n`` draws."""
    particle_dim = -(nesting + 1)

    def one(m: Callable, g: Callable) -> tuple[poutine.Trace, poutine.Trace, poutine.Trace | None]:
        guide_trace = poutine.trace(g).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(m, trace=guide_trace)).get_trace(*args, **kwargs)
        guide_trace.compute_log_prob()
        model_trace.compute_log_prob()
        pred = poutine.trace(uncondition(poutine.replay(m, trace=guide_trace))).get_trace(*args, **kwargs) if predictive else None
        return guide_trace, model_trace, pred

    with torch.no_grad(), poutine.block():
        if vectorized:
            out = one(vectorize(model, n, particle_dim), vectorize(guide, n, particle_dim))
        else:
            draws = [one(model, guide) for _ in range(n)]
            out = tuple(None if draws[0][i] is None else stack_traces([d[i] for d in draws], nesting) for i in range(3))
    _check_full_plates(out[0])
    _check_full_plates(out[1])
    if pyro.infer.util.is_validation_enabled():
        _warn_unmatched_guide_sites(out[1], out[0])
    return out


def _warn_unmatched_guide_sites(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    """Warn, as Pyro's ELBOs do, about guide sample sites the model does not have (a typo in a site
    name would otherwise score the guide against the prior alone). Model latents missing from the
    guide are drawn from their prior by design here, so they do not warn."""
    model_sites = {name for name, site in model_trace.nodes.items() if site["type"] == "sample"}
    extra = sorted(
        name
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site["infer"].get("is_auxiliary") and name not in model_sites
    )
    if extra:
        warnings.warn(
            f"Found non-auxiliary vars in guide but not model, consider marking these infer={{'is_auxiliary': True}}: {set(extra)}",
            stacklevel=4,
        )


def _select_particle(trace: poutine.Trace, index: int, particle_dim: int, like: poutine.Trace, into: poutine.Trace) -> None:
    """Add to ``into`` the unobserved sample sites of a vectorised ``trace`` for one particle, each
    value shaped like the same site of the single-draw trace ``like``; raises ``ValueError`` where
    a site does not carry the particles at ``particle_dim``."""
    for name, site in sample_sites(trace).items():
        if is_observed(site) or is_deterministic(site) or name not in like.nodes or name in into.nodes:
            continue
        value = site["value"]
        position = value.dim() - site["fn"].event_dim + particle_dim
        if position < 0:
            raise ValueError(f"site {name!r} has no particle dim")
        part = value.select(position, index)
        target = like.nodes[name]["value"].shape
        if part.numel() != target.numel():
            raise ValueError(f"site {name!r}: one particle has {part.numel()} entries, one draw {target.numel()}")
        into.add_node(name, type="sample", value=part.reshape(target), is_observed=False, infer=dict(site["infer"] or {}))


def resolve_vectorize(model: Callable, guide: Callable, args: tuple, kwargs: dict, max_plate_nesting: int, vectorize: bool | None) -> bool:
    """Whether to draw particles vectorised: ``vectorize`` itself when it is a bool; for None, a
    probe of two vectorised particles whose log densities must equal those of the same values
    traced one draw at a time. A model that does not broadcast over the extra batch dim (a shape
    error, or shapes that broadcast by accident and mix particles) falls back to one draw at a
    time, with one warning."""
    if vectorize is not None:
        if not isinstance(vectorize, bool):
            raise TypeError(f"vectorize: expected True, False or None (decide by a probe), got {vectorize!r}")
        return vectorize
    probe = 2
    particle_dim = -(max_plate_nesting + 1)
    # one draw first, outside the probe: errors that are not about broadcasting surface as they are
    single_guide, single_model, _ = _draw(model, guide, args, kwargs, 1, max_plate_nesting, False, False)
    try:
        guide_trace, model_trace, _ = _draw(model, guide, args, kwargs, probe, max_plate_nesting, True, False)
        vectorized = ImportanceChunk(guide_trace, model_trace, probe, particle_dim)
        log_p, log_q = chunk_log_densities(vectorized)
        for i in range(probe):
            fixed = poutine.Trace()
            _select_particle(guide_trace, i, particle_dim, single_guide, fixed)
            _select_particle(model_trace, i, particle_dim, single_model, fixed)
            fixed_model, fixed_guide = poutine.replay(model, trace=fixed), poutine.replay(guide, trace=fixed)
            one_guide, one_model, _ = _draw(fixed_model, fixed_guide, args, kwargs, 1, max_plate_nesting, False, False)
            want_p, want_q = chunk_log_densities(ImportanceChunk(one_guide, one_model, 1, particle_dim))
            for got, want in ((log_p[i], want_p[0]), (log_q[i], want_q[0])):
                if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * (1.0 + want.abs().item())):
                    raise ValueError(f"particle {i}: vectorised log density {got.item():.6g}, one draw {want.item():.6g}")
    except (RuntimeError, ValueError) as err:
        warnings.warn(
            f"model and guide do not broadcast over an extra batch dim at {particle_dim} ({err}); drawing one particle "
            "at a time, which is slower. Pass vectorize=False to skip this check, or add a pyro.plate for every batch "
            "dim and .to_event for event dims to draw in one pass.",
            stacklevel=3,
        )
        return False
    return True


def draw_chunks(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_samples: int,
    chunk_size: int | None,
    max_plate_nesting: int | None,
    vectorized: bool | None,
    predictive: bool = False,
) -> Iterator[tuple[ImportanceChunk, poutine.Trace | None]]:
    """``num_samples`` guide draws replayed through the model, in chunks of at most ``chunk_size``:
    yields ``(ImportanceChunk, posterior predictive trace or None)`` per chunk. ``vectorized=None``
    decides by :func:`resolve_vectorize`."""
    num_samples = check_size("num_samples", num_samples)
    chunk_size = num_samples if chunk_size is None else check_size("chunk_size", chunk_size)
    max_plate_nesting = check_plate_nesting(model, guide, args, kwargs, max_plate_nesting)
    particle_dim = -(max_plate_nesting + 1)
    vectorized = resolve_vectorize(model, guide, args, kwargs, max_plate_nesting, vectorized)
    done = 0
    while done < num_samples:
        n = min(chunk_size, num_samples - done)
        try:
            guide_trace, model_trace, pred = _draw(model, guide, args, kwargs, n, max_plate_nesting, vectorized, predictive)
        except (RuntimeError, ValueError) as err:
            if vectorized and hasattr(err, "add_note"):  # Python >= 3.11
                err.add_note(
                    f"(pyroflows: raised while drawing {n} particles in a plate at dim {particle_dim}. If it is a shape error: "
                    "model and guide must broadcast over that plate, with a pyro.plate for every batch dim and .to_event for "
                    "event dims, and max_plate_nesting must cover every plate of the model; or pass vectorize=False)"
                )
            raise
        yield ImportanceChunk(guide_trace, model_trace, n, particle_dim), pred
        done += n


def vectorized_traces(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    chunk_size: int | None = None,
    max_plate_nesting: int | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> Iterator[ImportanceChunk]:
    """Draw ``num_samples`` from the guide in chunks of ``chunk_size`` (all at once when None) and
    yield, per chunk, the guide's trace and the model's trace replayed on it, both with log densities.

    Runs under ``torch.no_grad()`` and ``poutine.block()`` (nothing leaks into an enclosing trace).
    ``max_plate_nesting`` is guessed by tracing model and guide once when None. With
    ``vectorize=False`` the draws are traced one at a time (slow; for a model that does not
    broadcast over an extra batch dim) and stacked into the same layout (:func:`stack_traces`);
    with None (the default) a two-particle probe decides (:func:`resolve_vectorize`).
    Plates must not subsample: a ``ValueError`` names a plate that does.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> def guide():
        ...     pyro.sample("z", dist.Normal(0.5, 1.0))
        >>> [tuple(c.model_trace.nodes["z"]["value"].shape) for c in vectorized_traces(model, guide, num_samples=5, chunk_size=2)]
        [(2,), (2,), (1,)]
    """
    for chunk, _ in draw_chunks(model, guide, args, kwargs, num_samples, chunk_size, max_plate_nesting, vectorize):
        yield chunk


def _plate_dim(site: dict, plate: str) -> int | None:
    for frame in site["cond_indep_stack"]:
        if frame.name == plate and frame.vectorized:
            return frame.dim
    return None


def _reduce(log_prob: torch.Tensor, num: int, particle_dim: int, keep_dim: int | None = None) -> torch.Tensor:
    """Sum a site's log density to shape ``(num,)``, or ``(num, N)`` keeping ``keep_dim``."""
    if log_prob.dim() < -particle_dim:
        log_prob = log_prob.reshape((1,) * (-particle_dim - log_prob.dim()) + tuple(log_prob.shape))
    p = log_prob.dim() + particle_dim
    keep = [p] if keep_dim is None else [p, log_prob.dim() + keep_dim]
    summed = [d for d in range(log_prob.dim()) if d not in keep]
    out = log_prob.sum(summed) if summed else log_prob
    return out.expand(num) if keep_dim is None else out.expand(num, out.shape[-1])


def chunk_log_densities(chunk: ImportanceChunk, data_plate: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(log p(x, z), log q(z))`` of a chunk's draws, shape ``(num_particles,)``, or
    ``(num_particles, N)`` per data point of ``data_plate``.

    With ``data_plate`` every site that carries a density (latent, auxiliary or observed) must be
    inside that plate, otherwise a ``ValueError`` names the first that is not.
    """
    guide_sites = sample_sites(chunk.guide_trace)
    model_sites = sample_sites(chunk.model_trace)
    terms = []  # (sign, role, name, site)
    for name, site in model_sites.items():
        if is_deterministic(site):
            continue
        if is_observed(site):
            terms.append((1.0, "observed", name, site))
        elif name in guide_sites:
            terms.append((1.0, "latent", name, site))
        # a latent the guide leaves out was drawn from its prior: its density cancels
    for name, site in guide_sites.items():
        aux = (site.get("infer") or {}).get("is_auxiliary", False)
        terms.append((-1.0, "auxiliary guide" if aux else "guide", name, site))

    keep_dim = None
    if data_plate is not None:
        for _, role, name, site in terms:
            dim = _plate_dim(site, data_plate)
            if dim is None:
                where = [f.name for f in site["cond_indep_stack"] if f.name != PARTICLE_PLATE]
                raise ValueError(
                    f"data_plate={data_plate!r}: per-datum weights need every latent and observed site inside that plate "
                    f"(local latents, an amortized guide); the {role} site {name!r} is in plates {where}"
                )
            if keep_dim is not None and dim != keep_dim:
                raise ValueError(f"data_plate={data_plate!r}: the plate has dim {keep_dim} at one site and {dim} at {name!r}")
            keep_dim = dim
        if keep_dim is None:
            raise ValueError(f"data_plate={data_plate!r}: no sample site is inside a plate of that name")

    n, pdim = chunk.num_particles, chunk.particle_dim
    log_p = log_q = None
    for sign, _, _, site in terms:
        term = _reduce(site["log_prob"], n, pdim, keep_dim)
        if sign > 0:
            log_p = term if log_p is None else log_p + term
        else:
            log_q = term if log_q is None else log_q + term
    reference = log_p if log_p is not None else log_q
    if reference is None:
        raise ValueError("model, guide: no sample site carries a density (nothing to weight)")
    zeros = torch.zeros_like(reference)
    return (zeros if log_p is None else log_p), (zeros if log_q is None else log_q)


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    chunk_size: int | None = None,
    data_plate: str | None = None,
    max_plate_nesting: int | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    r"""Log importance weights :math:`\log p(x, z_s) - \log q(z_s)` of ``num_samples`` guide draws.

    Args:
        model, guide: a Pyro model and guide; ``*args`` and ``**kwargs`` are passed to both.
        num_samples: number of draws :math:`S`.
        chunk_size: draws per vectorised pass (all at once when None).
        data_plate: name of a plate holding every latent and observed site: one weight per data point.
        max_plate_nesting: batch dims the model uses; guessed when None.
        vectorize: draw all particles of a chunk in one pass (True), one draw at a time (False:
            for models that do not broadcast over an extra batch dim), or decide by a
            two-particle probe (None; see :func:`resolve_vectorize`).

    Returns:
        shape ``(num_samples,)``, or ``(num_samples, N)`` with ``data_plate`` (then the row sums are
        the joint weights of the same draws).

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> x = torch.tensor([0.3, -1.2, 0.8])
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2)
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
        >>> lw = log_importance_weights(model, guide, x, num_samples=4, data_plate="data")
        >>> lw.shape
        torch.Size([4, 3])
        >>> torch.allclose(lw, dist.Normal(0.0, 2**0.5).log_prob(x).expand(4, 3), atol=1e-5)
        True
    """
    if data_plate is not None and not isinstance(data_plate, str):
        raise TypeError(f"data_plate: expected a plate name (str) or None, got {type(data_plate).__name__}")
    parts = []
    for chunk, _ in draw_chunks(model, guide, args, kwargs, num_samples, chunk_size, max_plate_nesting, vectorize):
        log_p, log_q = chunk_log_densities(chunk, data_plate)
        parts.append(log_p - log_q)
    return torch.cat(parts, 0)


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 5000,
    chunk_size: int | None = 500,
    data_plate: str | None = None,
    max_plate_nesting: int | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    r"""Importance-sampled evidence :math:`\log \hat p(x) = \operatorname{logsumexp}_s \log w_s - \log S`.

    The guide is the proposal; the estimate is exact for the exact posterior and biased low
    otherwise (by Jensen), the bias vanishing as ``num_samples`` grows. Chunks are folded into a
    running logsumexp (in float64), so memory is bounded by ``chunk_size`` whatever ``num_samples``.

    Arguments as in :func:`log_importance_weights`.

    Returns:
        a scalar, or shape ``(N,)`` (one :math:`\log \hat p(x_n)` per data point) with ``data_plate``,
        in the dtype of the model's densities.

    Example::

        >>> import pyro, pyro.distributions as dist
        >>> def model(x):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> def guide(x):  # a deliberately wide proposal
        ...     pyro.sample("mu", dist.Normal(0.0, 2.0))
        >>> x = torch.tensor([0.5, 1.5])
        >>> exact = dist.MultivariateNormal(torch.zeros(2), torch.eye(2) + 1).log_prob(x)
        >>> estimate = importance_log_likelihood(model, guide, x, num_samples=20000, chunk_size=5000)
        >>> bool(abs(estimate - exact) < 0.02)
        True
    """
    if data_plate is not None and not isinstance(data_plate, str):
        raise TypeError(f"data_plate: expected a plate name (str) or None, got {type(data_plate).__name__}")
    total, dtype = None, None
    for chunk, _ in draw_chunks(model, guide, args, kwargs, num_samples, chunk_size, max_plate_nesting, vectorize):
        log_p, log_q = chunk_log_densities(chunk, data_plate)
        dtype = log_p.dtype
        part = torch.logsumexp((log_p - log_q).double(), 0)
        total = part if total is None else torch.logaddexp(total, part)
    return (total - math.log(num_samples)).to(dtype)
