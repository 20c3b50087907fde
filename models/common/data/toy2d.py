r"""The eight 2-D toy distributions of FFJORD (Grathwohl et al., 2019, Fig. 2), with their densities.

:func:`sample` draws from the generators of the FFJORD code's toy data (same shapes, scales and
noise levels, written here in torch with a :class:`torch.Generator`); :func:`log_density` is the
exact density of each generator (closed form, or a 1-D quadrature along the generating curve);
:data:`ENTROPY` holds their differential entropies :math:`H = -\mathbb E[\log p(x)]` in nats,
the lower bound of any model's expected negative log-likelihood on fresh samples
(:math:`\mathbb E[-\log q] = H + \mathrm{KL}(p \,\|\, q)`).

The generators (with :math:`u \sim U(0, 1)`, :math:`\varepsilon \sim \mathcal N(0, 1)`, all
independent):

``8gaussians``
    An equal mixture of 8 Gaussians with centres :math:`\frac{4}{1.414}(\cos\frac{k\pi}{4}, \sin\frac{k\pi}{4})`
    (radius 2.829) and standard deviation :math:`0.5 / 1.414 = 0.354` per coordinate (FFJORD draws
    at scale 4 with noise 0.5, then divides by 1.414).
``checkerboard``
    :math:`x_1 = 4u - 2`, :math:`x_2 = u' - 2b + (\lfloor x_1 \rfloor \bmod 2)` with
    :math:`b \in \{0, 1\}` a fair coin, then both times 2: uniform on the 8 black squares (side 2)
    of a 4 x 4 board on :math:`[-4, 4]^2`, area 32.
``2spirals``
    :math:`m = 3\pi\sqrt{u}` (540 degrees of turn), the point
    :math:`\pm\frac13\left(-m\cos m + \tfrac12 u_1,\ m\sin m + \tfrac12 u_2\right) + 0.1\,\varepsilon`,
    half of the points on each sign (each spiral's uniform jitter turns with it).
``pinwheel``
    5 arms: with :math:`f = (1 + 0.3\varepsilon_1,\ 0.1\varepsilon_2)` and arm :math:`k`, the point
    :math:`2 R(-a) f`, rotated clockwise by :math:`a = 2\pi k / 5 + 0.25 e^{f_1}`; arms take
    turns (counts differ by at most one) and the points are shuffled.
``rings``
    4 concentric circles of radii 3, 2.25, 1.5, 0.75 (a quarter of the points each, the remainder
    on the innermost), plus :math:`0.08\,\varepsilon` per coordinate.
``moons``
    scikit-learn's two moons with noise 0.1, times 2 and shifted by :math:`(-1, -0.2)`: the arcs
    :math:`2(\cos t, \sin t) + (-1, -0.2)` and :math:`(1 - 2\cos t,\ 0.8 - 2\sin t)`,
    :math:`t \in [0, \pi]`, half of the points each, plus :math:`0.2\,\varepsilon`.
``circles``
    scikit-learn's circles (factor 0.5, noise 0.08) times 3: circles of radii 3 and 1.5, half of the
    points each, plus :math:`0.24\,\varepsilon`.
``swissroll``
    scikit-learn's Swiss roll with noise 1, its first and third coordinates divided by 5:
    :math:`\frac15(t\cos t + \varepsilon_1,\ t\sin t + \varepsilon_2)`, :math:`t = 1.5\pi(1 + 2u)`.

Two departures from the FFJORD code, both to make a batch an honest sample of the density: the
points on the circles and arcs of ``rings``, ``moons`` and ``circles`` are evenly spaced in angle
as scikit-learn and FFJORD place them, but every batch turns each circle's grid by a random
phase (so each point, on its own, is uniform in angle, and :func:`log_density` is its density);
and every generator returns exactly ``n`` points (FFJORD's ``2spirals`` and ``pinwheel`` return
``2 * (n // 2)`` and ``5 * (n // 5)``).

**Entropies.** ``checkerboard`` is uniform on area 32, so :math:`H = \log 32 = 3.4657` exactly.
For the others :data:`ENTROPY` is :math:`-\int p \log p` by the trapezoidal rule on
:math:`[-6, 6]^2` with spacing 0.05 (241 x 241 points; a grid of spacing 0.075 gives the same
values to 1e-4, and Monte Carlo averages of :math:`-\log p(x)` over fresh samples,
:func:`entropy_estimate`, agree within their standard errors), using the exact density: closed
form for ``8gaussians`` (:math:`\log 8` plus the entropy of one component,
:math:`1 + \log 2\pi + 2\log 0.3536 = 0.7588`, less 0.006 nats for the slight overlap of
neighbouring components: 2.8319), a Bessel function for the circles of ``rings`` and ``circles``
(the average of a Gaussian over a circle of radius :math:`r` is
:math:`\frac{1}{2\pi\sigma^2} e^{-(\rho - r)^2 / 2\sigma^2}\,\tilde I_0(\rho r / \sigma^2)`,
:math:`\tilde I_0` the exponentially scaled Bessel function, :math:`\rho = \lVert x\rVert`),
a midpoint quadrature along the curve for ``moons``, ``2spirals`` and ``swissroll`` (2000 nodes;
the curve's step is a fraction of the noise's width; for ``2spirals`` each coordinate's noise is
the uniform jitter plus the Gaussian, a difference of normal CDFs), and for ``pinwheel`` a root
search for the preimages of each arm's map (a grid of 256 angles refined by Newton's method) with
the Jacobian :math:`4\,(1 + 0.25 e^{f_1} \rho \sin\varphi)` of the map in polar coordinates.
Every density integrates to 1 within 1e-5 on that grid.

Example::

    >>> x = sample("8gaussians", 1000, generator=0)
    >>> x.shape, x.dtype
    (torch.Size([1000, 2]), torch.float32)
    >>> torch.equal(x, sample("8gaussians", 1000, generator=0))  # a seed fixes the draw
    True
    >>> round(float(-log_density("checkerboard", torch.tensor([[1.0, 1.0]]))), 4), round(math.log(32), 4)
    (3.4657, 3.4657)

Reference: W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud, "FFJORD:
free-form continuous dynamics for scalable reversible generative models", ICLR 2019, Fig. 2
(the toy data of its code, ``lib/toy_data.py``).
"""

from __future__ import annotations

import math

import torch

from pyroflows.validation import check_tensor

#: names of the toy distributions, in the order of the experiment's figure
NAMES = ("8gaussians", "checkerboard", "2spirals", "pinwheel", "rings", "moons", "circles", "swissroll")

#: differential entropy of each generator in nats (see the module docstring for how each is computed)
ENTROPY = {
    "8gaussians": 2.8319,
    "checkerboard": round(math.log(32.0), 4),
    "2spirals": 2.6455,
    "pinwheel": 2.3178,
    "rings": 2.6232,
    "moons": 2.3939,
    "circles": 3.2681,
    "swissroll": 2.6696,
}

#: half-width of a square that holds practically all of every toy's mass (the figure's window)
LIMIT = 4.5

_GAUSS_SCALE = 4.0 / 1.414  # 8gaussians: radius of the centres
_GAUSS_STD = 0.5 / 1.414  # 8gaussians: standard deviation per coordinate
_SPIRAL_TURN = 3.0 * math.pi  # 2spirals: 540 degrees
_SPIRAL_JITTER = 0.5 / 3.0  # 2spirals: width of the uniform jitter, after dividing by 3
_SPIRAL_NOISE = 0.1
_PIN_ARMS, _PIN_RADIAL, _PIN_TANGENTIAL, _PIN_RATE = 5, 0.3, 0.1, 0.25
_RINGS = (3.0, 2.25, 1.5, 0.75)
_RINGS_NOISE = 0.08
_CIRCLES = (3.0, 1.5)
_CIRCLES_NOISE = 0.24  # 0.08 before scikit-learn's points are scaled by 3
_MOONS_NOISE = 0.2  # 0.1 before scaling by 2
_SWISS_NOISE = 0.2  # 1 before dividing by 5
_QUADRATURE = 2000  # nodes along the curve of moons, 2spirals and swissroll
_PIN_GRID = 256  # angles searched for the preimages of a pinwheel arm


def _check_name(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"name: expected one of {NAMES}, got {name!r}")
    return name


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    return n


def _generator(generator) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(0)
    if isinstance(generator, bool):
        raise TypeError("generator: expected None, an int seed or a torch.Generator, got a bool")
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    if isinstance(generator, torch.Generator):
        if generator.device.type != "cpu":
            raise ValueError(f"generator: expected a CPU torch.Generator, got one on {generator.device}")
        return generator
    raise TypeError(f"generator: expected None, an int seed or a torch.Generator, got {type(generator).__name__}")


# ----------------------------------------------------------------------------------------------
# generators (float64 on the CPU; sample() converts)


def _shuffle(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x[torch.randperm(len(x), generator=g)]


def _even_angles(count: int, g: torch.Generator, span: float = 2 * math.pi) -> torch.Tensor:
    """``count`` angles evenly spaced over ``span`` (a full turn or an arc), turned by a random phase."""
    return span * (torch.arange(count, dtype=torch.float64) + torch.rand((), generator=g, dtype=torch.float64)) / count


def _split(n: int, parts: int) -> list[int]:
    """Counts of ``n`` points on ``parts`` pieces: ``n // parts`` each, the remainder on the last."""
    counts = [n // parts] * parts
    counts[-1] += n - sum(counts)
    return counts


def _gauss_centres() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    return _GAUSS_SCALE * torch.stack([angles.cos(), angles.sin()], -1)


def _eight_gaussians(n, g):
    idx = torch.randint(0, 8, (n,), generator=g)
    return _gauss_centres()[idx] + _GAUSS_STD * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _checkerboard(n, g):
    x1 = 4 * torch.rand(n, generator=g, dtype=torch.float64) - 2
    x2 = torch.rand(n, generator=g, dtype=torch.float64) - 2 * torch.randint(0, 2, (n,), generator=g) + torch.floor(x1) % 2
    return 2 * torch.stack([x1, x2], -1)


def _spiral_curve(m: torch.Tensor) -> torch.Tensor:
    return torch.stack([-m * m.cos(), m * m.sin()], -1) / 3


def _two_spirals(n, g):
    half = n // 2
    m = _SPIRAL_TURN * torch.rand(n, generator=g, dtype=torch.float64).sqrt()
    point = _spiral_curve(m) + _SPIRAL_JITTER * torch.rand(n, 2, generator=g, dtype=torch.float64)
    sign = torch.ones(n, 1, dtype=torch.float64)
    sign[half:] = -1  # FFJORD: the second spiral is the first one negated
    x = sign * point + _SPIRAL_NOISE * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return _shuffle(x, g)


def _pinwheel(n, g):
    arm = torch.arange(n) % _PIN_ARMS
    f = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([_PIN_RADIAL, _PIN_TANGENTIAL], dtype=torch.float64)
    f[:, 0] += 1.0
    a = 2 * math.pi * arm / _PIN_ARMS + _PIN_RATE * f[:, 0].exp()
    c, s = a.cos(), a.sin()
    x = 2 * torch.stack([c * f[:, 0] + s * f[:, 1], -s * f[:, 0] + c * f[:, 1]], -1)  # 2 R(-a) f
    return _shuffle(x, g)


def _on_circles(n, g, radii, noise):
    points = []
    for r, count in zip(radii, _split(n, len(radii)), strict=True):
        t = _even_angles(count, g)
        points.append(r * torch.stack([t.cos(), t.sin()], -1))
    x = torch.cat(points)
    return _shuffle(x, g) + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _moon_arcs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    upper = torch.stack([2 * t.cos() - 1, 2 * t.sin() - 0.2], -1)
    lower = torch.stack([1 - 2 * t.cos(), 0.8 - 2 * t.sin()], -1)
    return upper, lower


def _moons(n, g):
    n_upper = n // 2
    upper, _ = _moon_arcs(_even_angles(n_upper, g, math.pi))
    _, lower = _moon_arcs(_even_angles(n - n_upper, g, math.pi))
    x = torch.cat([upper, lower])
    return _shuffle(x, g) + _MOONS_NOISE * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _swiss_curve(t: torch.Tensor) -> torch.Tensor:
    return torch.stack([t * t.cos(), t * t.sin()], -1) / 5


def _swissroll(n, g):
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    return _swiss_curve(t) + _SWISS_NOISE * torch.randn(n, 2, generator=g, dtype=torch.float64)


_GENERATORS = {
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "2spirals": _two_spirals,
    "pinwheel": _pinwheel,
    "rings": lambda n, g: _on_circles(n, g, _RINGS, _RINGS_NOISE),
    "moons": _moons,
    "circles": lambda n, g: _on_circles(n, g, _CIRCLES, _CIRCLES_NOISE),
    "swissroll": _swissroll,
}


def sample(name: str, n: int, generator: torch.Generator | int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` points of the toy distribution ``name``, a tensor of shape ``(n, 2)``.

    Args:
        name: one of :data:`NAMES`.
        n: number of points (a positive int).
        generator: ``None`` (the fixed seed 0: every call returns the same points), an int seed,
            or a CPU :class:`torch.Generator`, which the draw advances (pass one to a training loop
            for a fresh batch per step).
        dtype: floating-point dtype of the result (the points are drawn in float64).
    """
    _check_name(name)
    n = _check_n(n)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
    return _GENERATORS[name](n, _generator(generator)).to(dtype)


# ----------------------------------------------------------------------------------------------
# densities (float64)


def _normal_log_pdf_2d(d: torch.Tensor, std: float) -> torch.Tensor:
    return -0.5 * (d / std).pow(2).sum(-1) - math.log(2 * math.pi * std * std)


def _curve_log_density(x: torch.Tensor, nodes: torch.Tensor, log_weights: torch.Tensor, std: float) -> torch.Tensor:
    """:math:`\\log \\sum_j w_j \\mathcal N(x; c_j, \\sigma^2 I)` for curve nodes ``c_j`` and quadrature weights."""
    out = []
    node_sq = nodes.pow(2).sum(-1)
    for chunk in x.split(2048):
        sq = (chunk.pow(2).sum(-1, keepdim=True) + node_sq - 2 * chunk @ nodes.T).clamp_min(0.0)  # squared distances
        out.append(torch.logsumexp(log_weights - 0.5 * sq / std**2, -1) - math.log(2 * math.pi * std * std))
    return torch.cat(out)


def _midpoints(low: float, high: float, count: int = _QUADRATURE) -> tuple[torch.Tensor, float]:
    step = (high - low) / count
    return low + step * (torch.arange(count, dtype=torch.float64) + 0.5), step


def _log_eight_gaussians(x):
    d = x[:, None, :] - _gauss_centres()[None]
    return torch.logsumexp(_normal_log_pdf_2d(d, _GAUSS_STD), -1) - math.log(8)


def _log_checkerboard(x):
    inside = (x.abs() < 4).all(-1)
    # black squares: the column index floor(x1 / 2) and the row index floor(x2 / 2) have the same parity
    black = (torch.floor(x[:, 0] / 2) + torch.floor(x[:, 1] / 2)) % 2 == 0
    return torch.where(inside & black, -math.log(32.0), -math.inf)


def _log_circles(x, radii, std):
    rho = x.norm(dim=-1, keepdim=True)
    r = torch.tensor(radii, dtype=torch.float64)
    log_ring = -0.5 * ((rho - r) / std) ** 2 + torch.special.i0e(rho * r / std**2).log() - math.log(2 * math.pi * std * std)
    return torch.logsumexp(log_ring, -1) - math.log(len(radii))


def _log_moons(x):
    t, step = _midpoints(0.0, math.pi)
    upper, lower = _moon_arcs(t)
    log_w = torch.full((2 * len(t),), math.log(0.5 * step / math.pi), dtype=torch.float64)
    return _curve_log_density(x, torch.cat([upper, lower]), log_w, _MOONS_NOISE)


def _log_swissroll(x):
    t, step = _midpoints(1.5 * math.pi, 4.5 * math.pi)
    log_w = torch.full((len(t),), math.log(step / (3 * math.pi)), dtype=torch.float64)
    return _curve_log_density(x, _swiss_curve(t), log_w, _SWISS_NOISE)


def _jitter_terms(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with the density of ``U(0, h) + N(0, s^2)`` at ``w`` equal to ``(Phi(a) - Phi(b)) / h``,
    ``b = a - h / s`` and ``a <= h / 2s`` (``w`` mirrored about ``h / 2``, where the density is symmetric,
    so both CDFs stay away from 1 and their difference loses no digits)."""
    s, h = _SPIRAL_NOISE, _SPIRAL_JITTER
    v = torch.where(w > h / 2, h - w, w)
    return v / s, (v - h) / s


def _two_spirals_sum(chunk: torch.Tensor, nodes: torch.Tensor, weights: torch.Tensor, log: bool) -> torch.Tensor:
    """The spirals' mixture at the points ``chunk``: a probability (fast) or, with ``log``, in log space."""
    total = []
    for sign in (1.0, -1.0):
        a, b = _jitter_terms(sign * chunk[:, None, :] - nodes[None])  # the jitter turns with the spiral: flip the point
        if log:
            la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
            total.append((la + torch.log1p(-torch.exp(lb - la))).sum(-1) + weights.log())
        else:
            total.append((torch.special.ndtr(a) - torch.special.ndtr(b)).prod(-1) @ weights)
    if log:
        return torch.logsumexp(torch.cat(total, -1), -1) - 2 * math.log(_SPIRAL_JITTER) - math.log(2)
    return (total[0] + total[1]) / (2 * _SPIRAL_JITTER**2)


def _log_two_spirals(x):
    m, step = _midpoints(0.0, _SPIRAL_TURN)
    nodes = _spiral_curve(m)
    weights = 2 * m / _SPIRAL_TURN**2 * step  # m = 3 pi sqrt(u) has density 2 m / (3 pi)^2
    out = []
    for chunk in x.split(1024):
        value = _two_spirals_sum(chunk, nodes, weights, log=False).log()
        far = value < -600  # underflow of the fast sum (points many noise widths off the curve): redo in log space
        if far.any():
            value[far] = _two_spirals_sum(chunk[far], nodes, weights, log=True)
        out.append(value)
    return torch.cat(out)


def _log_pinwheel(x):
    y = x / 2
    rho = y.norm(dim=-1)
    psi = torch.atan2(y[:, 1], y[:, 0])
    phi = -math.pi + 2 * math.pi * torch.arange(_PIN_GRID + 1, dtype=torch.float64) / _PIN_GRID  # closed grid
    out = []
    for r, p in zip(rho.split(256), psi.split(256), strict=True):
        r, p = r[:, None, None], p[:, None, None]
        arm = (2 * math.pi / _PIN_ARMS) * torch.arange(_PIN_ARMS, dtype=torch.float64)[None, :, None]

        def h(angle, r=r, arm=arm, p=p):  # wrapped residual of angle(y) = phi - a(phi) for arm k
            return torch.remainder(angle - _PIN_RATE * torch.exp(r * angle.cos()) - arm - p + math.pi, 2 * math.pi) - math.pi

        values = h(phi)
        left, right = values[..., :-1], values[..., 1:]
        bracket = (left * right <= 0) & ((right - left).abs() < math.pi) & ~((right == 0) & (left != 0))
        lo = phi[:-1].expand_as(left)
        # linear interpolation inside the bracket, then Newton steps on the smooth residual
        guess = lo - left * (2 * math.pi / _PIN_GRID) / torch.where(right - left == 0, torch.ones_like(left), right - left)
        root = torch.where(bracket, guess, torch.zeros_like(guess))
        for _ in range(3):
            slope = 1 + _PIN_RATE * torch.exp(r * root.cos()) * r * root.sin()
            root = root - h(root) / slope
        slope = (1 + _PIN_RATE * torch.exp(r * root.cos()) * r * root.sin()).abs()
        f0, f1 = r * root.cos(), r * root.sin()
        log_f = (
            -0.5 * ((f0 - 1) / _PIN_RADIAL) ** 2 - 0.5 * (f1 / _PIN_TANGENTIAL) ** 2 - math.log(2 * math.pi * _PIN_RADIAL * _PIN_TANGENTIAL)
        )
        terms = torch.where(bracket, log_f - slope.log(), -math.inf)
        out.append(torch.logsumexp(terms.flatten(1), -1))
    # p_x(x) = p_y(x / 2) / 4, averaged over the arms; p_y in polar form: p_f / (dpsi/dphi)
    return torch.cat(out) - math.log(4.0) - math.log(_PIN_ARMS)


_LOG_DENSITIES = {
    "8gaussians": _log_eight_gaussians,
    "checkerboard": _log_checkerboard,
    "2spirals": _log_two_spirals,
    "pinwheel": _log_pinwheel,
    "rings": lambda x: _log_circles(x, _RINGS, _RINGS_NOISE),
    "moons": _log_moons,
    "circles": lambda x: _log_circles(x, _CIRCLES, _CIRCLES_NOISE),
    "swissroll": _log_swissroll,
}


def log_density(name: str, x: torch.Tensor) -> torch.Tensor:
    """Log density of the generator ``name`` at the points ``x`` (shape ``batch + (2,)``), in float64.

    ``-inf`` off the support (``checkerboard``). See the module docstring for how each density is
    computed; the quadratures are accurate to well under 1e-3 nats where the mass is.
    """
    _check_name(name)
    check_tensor("x", x, (2,))
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    flat = x.detach().to(torch.float64).reshape(-1, 2).cpu()
    return _LOG_DENSITIES[name](flat).reshape(x.shape[:-1])


def entropy_estimate(name: str, n: int = 100_000, generator: torch.Generator | int | None = 1) -> tuple[float, float]:
    """Monte Carlo estimate of the differential entropy of ``name`` and its standard error:
    the mean and standard error of :math:`-\\log p(x)` over ``n`` fresh samples (float64)."""
    _check_name(name)
    n = _check_n(n)
    if n < 2:
        raise ValueError(f"n: expected at least 2 samples for a standard error, got {n}")
    values = -log_density(name, sample(name, n, generator, torch.float64))
    return float(values.mean()), float(values.std() / math.sqrt(n))
