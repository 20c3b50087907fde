r"""Hwang et al. (2019), Sec. 4.1 and Fig. 4: conditional moving digits with a label that switches midway.

Data (:func:`models.common.data.moving_digits.moving_digits`): sequences of ``T = 6`` frames of 20 x 20
pixels showing a scikit-learn 8x8 glyph of a 5 or a 9 bouncing around the frame, one label per
frame, constant along every training sequence (13 000 training sequences in the full run).

Three spaces for the flow (``Settings.space``):

* ``"glyph"`` (the default, :data:`FULL`): *where* and *what* per frame (:class:`GlyphSpace`): the
  glyph's intensity centroid (2 numbers) and a 22-d MLP autoencoder code of the 14 x 14 window
  centred on it (:func:`models.common.data.moving_digits.glyph_crops`), standardised, with smoothing
  noise 0.3 while training. No labels are used; the motion is two coordinates and the digit's
  identity is a nearly linear direction of the window code (logistic regression on the codes: 0.96).
* ``"latent"`` (:data:`LATENT`): each whole frame's 24-d latent from an MLP autoencoder
  (:class:`LatentSpace`, the Xiao et al. set-up of :mod:`models.xiao_digits`). Here the identity is
  entangled with the position (logistic regression on the codes: 0.54, an MLP 0.92), and the flows
  learn to generate by label only after many thousand steps.
* ``"pixels"`` (the paper's set-up, preset :data:`PIXELS`, ``--pixels``): the 400 pixels,
  dequantised and scaled, :math:`x = 2\,(16\,p + u)/17 - 1` with :math:`u \sim U(0, 1)` per pixel
  (the sklearn glyphs have 17 grey levels), plus Gaussian smoothing noise while training. On pixels
  the relaxed-label flow learns to *classify* frames (forward-pass accuracy 0.97) but its generated
  frames ignore the label: the share of label information in a 400-d likelihood is at most
  :math:`\log 2` nats per sequence, and the latent :math:`z` keeps the digit's identity (measured
  in ``docs/papers/crow.md``).

Models (:class:`~pyroflows.distributions.CRow`, ``x_dim = D``, ``y_dim = 2``, ``z_dim = D - 2``: no
padding, so densities are exact densities of the frames in the flow's space): ``crow_tcg``
(recurrent GRU subnetworks and temporal context gating), ``crow`` (no gating) and ``cinn`` (the same
blocks without recurrence, each frame alone: the paper's cINN baseline). Each maximises the relaxed
likelihood

.. math::

    \log p(x_{1:T} \mid y_{1:T}) = \sum_{t=1}^T \Big[\log \mathcal N(z_t; 0, I)
        + \log \mathcal N(c_t; y_t, \epsilon^2 I)
        + \log\left|\det \partial f_t(x_t) / \partial x_t\right|\Big], \qquad [z_t, c_t] = f_t(x_t),

by Adam on mini-batches (a plain torch loop with :func:`pyroflows.infer.fit`, checkpointed).

Generation runs forward in time, :math:`x_t = f_t^{-1}([\tau z_t, y_t + \epsilon n_t])` (``tau``
the sampling temperature), under label paths the training data never show:
``5,5,9,9,9,9`` and ``9,9,5,5,5,5`` (the switch at frame 3), and the constant paths as controls.
Each generated frame carries its density :math:`\log p(x_t \mid x_{<t}, y_{\le t})` (nats per
frame), printed above it in ``fig4_generation.png`` as in the paper's Fig. 4.

Measured (rows of :func:`run`):

* ``agreement_away``: an independent classifier (:class:`FrameClassifier`, logistic regression on
  the magnitude of each frame's 2-D Fourier transform, which a moving glyph leaves unchanged, fitted
  on real frames of held-out glyphs; ``classifier_accuracy`` on real frames of the training glyphs) names the
  conditioning label on this share of the generated frames of the switching paths, the switch frame
  excluded (target: >= 0.80); ``agreement_switch`` at the switch frame, ``agreement_constant`` on
  the constant paths.
* ``causality_max_diff``: the largest change of frames 1..2 when only the labels of frames >= 3
  change (same noise; target: < 1e-6).
* ``switch_density_drop``: mean over generated sequences of :math:`\log p` at the switch frame minus
  the mean of the frames before and after it (target: < 0, the density dips at the switch);
  ``switch_vs_constant``: the switch frame's density minus that of frame 3 of the constant path
  with the same new label.
* ``test_nll_frame1`` and ``test_nll_later``: :math:`-\log p(x_t \mid x_{<t}, y_{\le t})` of held-out
  real sequences (nats per frame) at the first frame and averaged over frames 2..6: the recurrent
  models predict a frame from the ones before it.

Run::

    python -m models.crow_moving_digits                  # full settings (where-and-what space)
    python -m models.crow_moving_digits --quick          # small settings (about a minute)
    python -m models.crow_moving_digits --space latent   # the whole-frame autoencoder's latent
    python -m models.crow_moving_digits --pixels         # the flow on the 400 pixels
    python -m models --only crow_moving_digits

Measured at full settings (seeds 0 / 1 / 2; ``docs/papers/crow.md`` has the table): causality
exact (0.0) for all three models. Judge agreement away from the switch: CRow + TCG 0.962 / 0.975 /
0.964, CRow 0.970 / 0.979 / 0.943, cINN 0.971 / 0.960 / 0.970 (target 0.80). The density at the
switch minus its neighbours' mean: CRow + TCG -0.60 / -0.30 / +0.09, CRow -0.29 / -0.46 / +0.18
(target < 0: met on seeds 0 and 1; with seeds 3 and 4 on 3 of 5 seeds, pooled -0.18 and -0.11).
The GRU state is 16 wide: with 64 the recurrent models also predict each frame's glyph from the
previous ones so well that the history out-votes a switched label on some seeds (CRow + TCG
0.874 / 0.648 / 0.776). About 2 CPU-minutes (autoencoder 20 s; each model's 1000 steps 17-42 s).

Paper: S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow: Conditional
Generation of Longitudinal Samples with Applications to Neuroimaging", ICCV 2019, Sec. 4.1, Fig. 4
(the paper shows the generated sequences as a figure only; the targets are this project's).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.common.data.moving_digits import MovingDigits, glyph_crops, moving_digits, paste_crops
from pyroflows.distributions import CRow
from pyroflows.infer import fit, save_checkpoint

from . import format_report, row, xiao_digits
from .common.results import run_label

PAPER = (
    'S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow: Conditional Generation of Longitudinal '
    'Samples with Applications to Neuroimaging", ICCV 2019, Sec. 4.1, Fig. 4'
)
EXPERIMENT = "crow_moving_digits"
#: model name -> CRow flags
MODELS = {
    "crow_tcg": {"recurrent": True, "gate": True},
    "crow": {"recurrent": True, "gate": False},
    "cinn": {"recurrent": False, "gate": False},
}
LABELS = {"crow_tcg": "CRow + TCG", "crow": "CRow", "cinn": "cINN"}
#: this project's targets (the paper shows Fig. 4 only)
BAR_AGREEMENT = 0.80
BAR_CAUSALITY = 1e-6


@dataclass(frozen=True)
class Settings:
    """Data, network, training and generation settings; :data:`FULL` and :data:`QUICK` are the presets."""

    digits: tuple[int, int] = (5, 9)
    n_train: int = 13_000
    n_test: int = 1_000
    frames: int = 6
    switch: int = 2  # 0-based index of the first frame with the new label (frame 3)
    models: tuple[str, ...] = ("crow_tcg", "crow", "cinn")
    space: str = "glyph"  # "glyph" (position and window code), "latent" (a whole-frame autoencoder's) or "pixels" (the paper's)
    latent_dim: int = 24
    crop: int = 14  # window side of the "glyph" space
    ae_frames: int = 30_000  # training frames for the autoencoder
    ae_epochs: int = 30
    num_blocks: int = 3
    hidden_size: int = 16  # GRU state; with 64 the state also memorises the glyph and out-votes a switched label
    hidden_features: int = 128
    res_blocks: int = 1
    eps: float = 0.1
    context: bool = False  # the labels also feed every subnetwork (CRow(..., context=True))
    x_noise: float = 0.3  # Gaussian smoothing noise on the training frames (in the flow's space)
    steps: int = 1000
    batch: int = 64
    lr: float = 1e-3
    lr_final: float = 1e-4  # cosine decay
    clip: float = 50.0  # gradient-norm clip
    n_generate: int = 200  # sequences per label path
    temperature: float = 0.8
    figure_samples: int = 2  # sequences per model in the figure
    checkpoint: bool = True

    def ae_tag(self) -> str:
        """Checkpoint name of the autoencoder: every setting that changes it."""
        return (
            f"{self.space}_n{self.n_train}_d{self.digits[0]}{self.digits[1]}_l{self.latent_dim}"
            f"{f'_c{self.crop}' if self.space == 'glyph' else ''}_f{self.ae_frames}_e{self.ae_epochs}"
        )

    def tag(self, name: str) -> str:
        """Checkpoint name: every setting that changes the fit of model ``name``."""
        return (
            f"{name}_{self.space}{self.latent_dim if self.space != 'pixels' else ''}{f'c{self.crop}' if self.space == 'glyph' else ''}"
            f"_n{self.n_train}_d{self.digits[0]}{self.digits[1]}_b{self.num_blocks}_h{self.hidden_size}"
            f"_f{self.hidden_features}x{self.res_blocks}_eps{self.eps:g}{'_ctx' if self.context else ''}_xn{self.x_noise:g}"
            f"_it{self.steps}_bs{self.batch}_lr{self.lr:g}-{self.lr_final:g}"
        )


FULL = Settings()
QUICK = Settings(n_train=2000, n_test=300, ae_frames=6000, ae_epochs=10, steps=400, n_generate=60, checkpoint=False)
#: the whole-frame autoencoder's latent (the default of earlier versions)
LATENT = Settings(space="latent", hidden_size=64)
#: the paper's set-up, the flow on the 400 pixels (far slower; see the module docstring)
PIXELS = Settings(space="pixels", hidden_size=64, hidden_features=256, x_noise=0.15, steps=1500)


# ----------------------------------------------------------------------------------------------
# data


def to_flow_space(frames: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pixels in ``[0, 1]`` (17 grey levels) to the flow's space: :math:`2\\,(16 p + u)/17 - 1`, ``u ~ U(0, 1)``
    (``generator`` None: ``u = 1/2``, the centre of each level's interval)."""
    p = torch.as_tensor(frames, dtype=torch.float32)
    u = torch.full_like(p, 0.5) if generator is None else torch.rand(p.shape, generator=generator)
    return 2.0 * (16.0 * p + u) / 17.0 - 1.0


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`to_flow_space` (up to the dequantisation noise), clipped to ``[0, 1]``."""
    return ((17.0 * (x + 1.0) / 2.0 - 0.5) / 16.0).clamp(0.0, 1.0).numpy()


class PixelSpace:
    """The paper's set-up: the flow on the 400 dequantised, scaled pixels (:func:`to_flow_space`)."""

    dim = 400

    def __call__(self, frames, generator: torch.Generator | None = None) -> torch.Tensor:
        return to_flow_space(frames, generator)

    def pixels(self, x: torch.Tensor) -> np.ndarray:
        return to_pixels(x)


class LatentSpace:
    """Xiao et al.'s latent-flow set-up per frame: an MLP autoencoder (:mod:`models.xiao_digits`'s,
    trained with binary cross-entropy and latent noise) maps each frame to ``latent_dim`` numbers,
    standardised with the training frames' mean and sd."""

    def __init__(self, frames: np.ndarray, settings: Settings, progress: bool = True, checkpoint: Path | None = None):
        cfg = replace(xiao_digits.Config(), latent_dim=settings.latent_dim, ae_epochs=settings.ae_epochs)
        x = torch.as_tensor(frames.reshape(-1, frames.shape[-1]))[: settings.ae_frames]
        if checkpoint is not None and checkpoint.exists():
            self.autoencoder = xiao_digits.MLPAutoencoder(x.shape[-1], cfg.latent_dim, cfg.ae_hidden)
            self.autoencoder.load_state_dict(torch.load(checkpoint, weights_only=True))
            self.autoencoder.eval()
        else:
            self.autoencoder = xiao_digits.train_autoencoder(x, cfg, progress, desc="autoencoder")
            if checkpoint is not None:
                save_checkpoint(checkpoint, self.autoencoder.state_dict())
        self.dim = settings.latent_dim
        with torch.no_grad():
            self.scaler = xiao_digits.Scaler(self.autoencoder.encode(x))

    @torch.no_grad()
    def __call__(self, frames, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.scaler.scale(self.autoencoder.encode(torch.as_tensor(frames)))

    @torch.no_grad()
    def pixels(self, x: torch.Tensor) -> np.ndarray:
        return self.autoencoder.decode(self.scaler.unscale(x)).numpy()


class GlyphSpace:
    """*Where* and *what* per frame (:func:`~models.common.data.moving_digits.glyph_crops`): the glyph's
    intensity centroid (2 numbers) and an MLP autoencoder's code of the ``crop x crop`` window around
    it (``latent_dim - 2`` numbers), standardised together with the training frames' mean and sd.
    Neither part uses labels; the moving glyph's motion is two coordinates and its identity is in
    the code of a centred window. Decoding pastes the decoded window at the rounded centroid."""

    def __init__(self, frames: np.ndarray, settings: Settings, progress: bool = True, checkpoint: Path | None = None):
        if settings.latent_dim < 3:
            raise ValueError(f"latent_dim: expected at least 3 (2 for the position, the rest for the window), got {settings.latent_dim}")
        self.size, self.crop, self.dim = int(round(frames.shape[-1] ** 0.5)), settings.crop, settings.latent_dim
        where, what = glyph_crops(frames.reshape(-1, frames.shape[-1])[: settings.ae_frames], self.size, self.crop)
        self.latent = LatentSpace(what, replace(settings, latent_dim=settings.latent_dim - 2), progress, checkpoint)
        self.scaler = xiao_digits.Scaler(torch.as_tensor(where, dtype=torch.float32))

    @torch.no_grad()
    def __call__(self, frames, generator: torch.Generator | None = None) -> torch.Tensor:
        where, what = glyph_crops(np.asarray(frames), self.size, self.crop)
        return torch.cat([self.scaler.scale(torch.as_tensor(where, dtype=torch.float32)), self.latent(what)], dim=-1)

    @torch.no_grad()
    def pixels(self, x: torch.Tensor) -> np.ndarray:
        where = self.scaler.unscale(x[..., :2]).numpy()
        return paste_crops(where, self.latent.pixels(x[..., 2:]), self.size)


SPACES = ("glyph", "latent", "pixels")


def frame_space(data: MovingDigits, settings: Settings, progress: bool = True, checkpoint: Path | None = None):
    """The space the flow models frames in, ``settings.space`` of :data:`SPACES` (an autoencoder is
    reloaded from ``checkpoint`` when that file exists, and saved there otherwise)."""
    if settings.space == "pixels":
        return PixelSpace()
    if settings.space == "latent":
        return LatentSpace(data.frames, settings, progress, checkpoint)
    if settings.space == "glyph":
        return GlyphSpace(data.frames, settings, progress, checkpoint)
    raise ValueError(f"space: expected one of {list(SPACES)}, got {settings.space!r}")


def label_path(first: int, second: int, switch: int, frames: int) -> torch.Tensor:
    """Label indices ``(frames,)``: ``first`` before frame index ``switch``, ``second`` from it on."""
    return torch.tensor([first] * switch + [second] * (frames - switch))


# ----------------------------------------------------------------------------------------------
# training


def make_model(name: str, settings: Settings, dim: int, seed: int) -> CRow:
    torch.manual_seed(seed)
    return CRow(
        dim, 2, z_dim=dim - 2, eps=settings.eps, num_blocks=settings.num_blocks, hidden_size=settings.hidden_size,
        hidden_features=settings.hidden_features, res_blocks=settings.res_blocks, seed=seed, context=settings.context, **MODELS[name],
    )  # fmt: skip


def train(
    model: CRow, data: MovingDigits, space, settings: Settings, seed: int, checkpoint: Path | None, progress: bool, desc: str
) -> pd.DataFrame:
    """Adam on the per-frame negative log-likelihood of fresh mini-batches of frames mapped to ``space``
    (fresh dequantisation and smoothing noise each step)."""
    frames = torch.from_numpy(data.frames)
    y = torch.from_numpy(data.onehot)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    g = torch.Generator().manual_seed(seed)
    floor = settings.lr_final / settings.lr
    model.train()

    def step(i: int):
        for group in opt.param_groups:
            group["lr"] = settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * i / settings.steps)))
        idx = torch.randint(len(frames), (settings.batch,), generator=g)
        x = space(frames[idx], g)
        x = x + settings.x_noise * torch.randn(x.shape, generator=g)
        loss = -model.condition(y[idx]).log_prob(x).mean() / settings.frames
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        opt.step()
        return loss

    return fit(step, settings.steps, {"model": model, "opt": opt}, checkpoint=checkpoint, log_every=20, progress=progress, desc=desc)


# ----------------------------------------------------------------------------------------------
# generation and read-outs


@torch.no_grad()
def generate(model: CRow, labels: torch.Tensor, n: int, temperature: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences under the label path ``labels`` ``(T,)``: frames ``(n, T, dim)`` in the flow's
    space and their per-frame log-densities ``(n, T)``. The same ``seed`` gives the same noise for
    any path, so paths that share a prefix can be compared frame by frame."""
    g = torch.Generator().manual_seed(seed)
    y = torch.eye(2)[labels].expand(n, -1, -1)
    z = temperature * torch.randn((n, len(labels), model.z_dim), generator=g)
    c = y + model.eps * torch.randn((n, len(labels), model.y_dim), generator=g)
    latent = torch.cat([z, c], dim=-1)
    x, logdet, _ = model.decode(latent, y=y)
    return x, model.relaxed_log_prob(latent, logdet, y)


def fourier_features(frames: np.ndarray) -> np.ndarray:
    r""":math:`|\mathrm{DFT}_2(x)|` of each 20 x 20 frame ``(..., 400)`` -> ``(..., 220)``: unchanged when the
    glyph moves on the black background (a shift only changes the phases)."""
    images = np.asarray(frames).reshape(-1, 20, 20)
    return np.abs(np.fft.rfft2(images)).reshape(np.shape(frames)[:-1] + (220,))


class FrameClassifier:
    """The independent judge of generated frames: logistic regression on :func:`fourier_features`,
    fitted on real frames of the *test* glyphs (glyphs no model was trained on)."""

    def __init__(self, settings: Settings, seed: int):
        from sklearn.linear_model import LogisticRegression

        data = moving_digits(2000, settings.digits, settings.frames, split="test", seed=10_000 + seed)
        self.model = LogisticRegression(max_iter=3000, C=1.0)
        self.model.fit(fourier_features(data.frames).reshape(-1, 220), data.labels.reshape(-1))
        check = moving_digits(1000, settings.digits, settings.frames, split="train", seed=20_000 + seed)
        #: accuracy on real frames of the training glyphs (which the classifier never saw)
        self.accuracy = float((self.predict(check.frames) == check.labels).mean())

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Label indices of pixel frames ``(..., 400)`` in ``[0, 1]``: shape ``(...)``."""
        features = fourier_features(frames)
        return self.model.predict(features.reshape(-1, 220)).reshape(features.shape[:-1])


@torch.no_grad()
def test_nll(model: CRow, data: MovingDigits, space) -> np.ndarray:
    """Mean :math:`-\\log p(x_t \\mid x_{<t}, y_{\\le t})` of real sequences per frame ``(T,)`` (pixels at their level centres)."""
    model.eval()
    steps = model.condition(torch.from_numpy(data.onehot)).step_log_prob(space(data.frames))
    return -steps.mean(0).numpy()


def evaluate(model: CRow, space, clf: FrameClassifier, settings: Settings, seed: int) -> tuple[dict, dict]:
    """The read-outs of the module docstring and, for the figure, the generated 5 -> 9 sequences."""
    model.eval()
    a, b, s, T, n = 0, 1, settings.switch, settings.frames, settings.n_generate
    runs = {}
    for name, path in {
        "a->b": label_path(a, b, s, T),
        "b->a": label_path(b, a, s, T),
        "a": label_path(a, a, s, T),
        "b": label_path(b, b, s, T),
    }.items():
        x, logp = generate(model, path, n, settings.temperature, seed)
        pixels = torch.from_numpy(space.pixels(x))
        runs[name] = (path, pixels, logp, torch.from_numpy(clf.predict(pixels.numpy())) == path)
    away = [t for t in range(T) if t != s]
    switching = ("a->b", "b->a")
    m = {
        "agreement_away": float(torch.cat([runs[k][3][:, away] for k in switching]).float().mean()),
        "agreement_switch": float(torch.cat([runs[k][3][:, s] for k in switching]).float().mean()),
        "agreement_constant": float(torch.cat([runs[k][3] for k in ("a", "b")]).float().mean()),
        # frames before the switch: same noise, labels differ only from frame index s on
        "causality_max_diff": max(float((runs[k][1][:, :s] - runs[c][1][:, :s]).abs().max()) for k, c in (("a->b", "a"), ("b->a", "b"))),
    }
    logp = torch.cat([runs[k][2] for k in switching])
    m["density_switch"] = float(logp[:, s].mean())
    m["density_neighbours"] = float(0.5 * (logp[:, s - 1] + logp[:, s + 1]).mean())
    m["switch_density_drop"] = m["density_switch"] - m["density_neighbours"]
    m["switch_vs_constant"] = float(0.5 * (runs["a->b"][2][:, s] - runs["b"][2][:, s] + runs["b->a"][2][:, s] - runs["a"][2][:, s]).mean())
    m["density_by_frame"] = logp.mean(0).tolist()
    return m, {"pixels": runs["a->b"][1][: settings.figure_samples].numpy(), "logp": runs["a->b"][2][: settings.figure_samples]}


def figure(shown: dict, settings: Settings, path: Path, label: str = "") -> None:
    """Generated 5 -> 9 sequences, one row per model and sample, each frame's log-density above it (Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, i) for name in shown for i in range(len(shown[name]["pixels"]))]
    T = settings.frames
    fig, axes = plt.subplots(len(rows), T, figsize=(1.3 * T + 1.2, 1.5 * len(rows) + 0.5), squeeze=False)
    a, b = settings.digits
    path_digits = [a if t < settings.switch else b for t in range(T)]
    for r, (name, i) in enumerate(rows):
        images = shown[name]["pixels"][i].reshape(T, 20, 20)
        for t in range(T):
            ax = axes[r, t]
            ax.imshow(images[t], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{float(shown[name]['logp'][i, t]):.0f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == len(rows) - 1:
                ax.set_xlabel(f"y={path_digits[t]}", fontsize=8)
        axes[r, 0].set_ylabel(LABELS[name], fontsize=8)
    fig.suptitle(
        f"CRow Fig. 4: sequences generated under labels {','.join(map(str, path_digits))}; "
        f"log p(x_t | x_<t, y_<=t) above each frame\n({label}, {settings.space} space, {settings.steps} steps)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# the experiment


def _row(setting: str, metric: str, value, **kw) -> dict:
    return row(EXPERIMENT, setting, metric, value, **kw)


#: why quick mode is not expected to meet a target, per metric (absent: expected to meet it); the
#: density dip at the switch depends on the seed even at full settings (met on 2 of 3 seeds)
QUICK_REASONS = {"switch_density_drop": "the dip depends on the seed, even at full settings"}


def reproduce(settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True) -> tuple[list[dict], dict]:
    """Train every model of ``settings``, evaluate, write ``fig4_generation.png``, ``density_by_frame.csv``
    and ``loss_history.csv`` under ``out_dir``. Returns the rows and ``model -> metrics``."""
    for name in settings.models:
        if name not in MODELS:
            raise ValueError(f"models: expected names from {sorted(MODELS)}, got {name!r}")
    if not 1 <= settings.switch < settings.frames - 1:
        raise ValueError(f"switch: expected a frame index in [1, {settings.frames - 2}], got {settings.switch}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = moving_digits(settings.n_train, settings.digits, settings.frames, seed=seed)
    test = moving_digits(settings.n_test, settings.digits, settings.frames, split="test", seed=30_000 + seed)
    clf = FrameClassifier(settings, seed)
    torch.manual_seed(seed)
    ae_checkpoint = out_dir / "checkpoints" / f"autoencoder_{settings.ae_tag()}_s{seed}.pt" if settings.checkpoint else None
    space = frame_space(data, settings, progress, ae_checkpoint)
    rows = [
        _row("classifier", "classifier_accuracy", clf.accuracy, note="logistic regression on |2-D DFT| of real frames, glyphs it never saw")
    ]
    results, shown, histories, densities = {}, {}, [], []
    for name in settings.models:
        k = list(MODELS).index(name)  # a model's fit does not depend on which others run
        model = make_model(name, settings, space.dim, seed)
        checkpoint = out_dir / "checkpoints" / f"{settings.tag(name)}_s{seed}.pt" if settings.checkpoint else None
        start = time.perf_counter()
        history = train(model, data, space, settings, 1_000 * seed + k, checkpoint, progress, desc=name)
        seconds = time.perf_counter() - start
        m, shown[name] = evaluate(model, space, clf, settings, seed)
        nll = test_nll(model, test, space)
        m.update(
            train_seconds=seconds,
            train_loss=float(history.loss.tail(10).mean()),
            test_nll_frame1=float(nll[0]),
            test_nll_later=float(nll[1:].mean()),
        )
        results[name] = m
        histories.append(history.assign(model=name))
        densities += [
            {"model": name, "frame": t + 1, "generated_log_density": v, "test_nll": nll[t]} for t, v in enumerate(m["density_by_frame"])
        ]
        path = (
            f"{settings.digits[0]}->{settings.digits[1]} and back, switch at frame {settings.switch + 1}, "
            f"{settings.n_generate} sequences each, tau {settings.temperature:g}"
        )

        def target(metric, value, kind):
            reason = QUICK_REASONS.get(metric)
            return {"target": value, "target_kind": kind, "quick_expected": reason is None, "quick_reason": reason, "headline": True,
                    "paper_source": "Fig. 4, no number"}  # fmt: skip

        rows += [
            _row(name, "agreement_away", m["agreement_away"], **target("agreement_away", BAR_AGREEMENT, ">="),
                 note=f"judge names the label; {path}; switch frame excluded"),
            _row(name, "agreement_switch", m["agreement_switch"], note="at the switch frame"),
            _row(name, "agreement_constant", m["agreement_constant"], note="constant label paths"),
            _row(name, "causality_max_diff", m["causality_max_diff"], **target("causality_max_diff", BAR_CAUSALITY, "<"),
                 note="max |change of frames 1..2| when the labels from frame 3 on change"),
            _row(name, "switch_density_drop", m["switch_density_drop"], **target("switch_density_drop", 0.0, "<"),
                 note="log p at the switch minus the mean of its neighbours, nats per frame"),
            _row(name, "switch_vs_constant", m["switch_vs_constant"],
                 note="log p at the switch minus frame 3 of the constant path with the new label"),
            _row(name, "test_nll_frame1", m["test_nll_frame1"], note=f"-log p(x_1 | y_1), {settings.n_test} held-out sequences, nats"),
            _row(name, "test_nll_later", m["test_nll_later"], note="-log p(x_t | x_<t, y_<=t) averaged over frames 2..6, nats"),
            _row(name, "train_seconds", seconds, note=f"{settings.steps} steps of batch {settings.batch}; reloaded checkpoints take less"),
        ]  # fmt: skip
    label = run_label(settings, QUICK, FULL, seed)
    figure(shown, settings, out_dir / "fig4_generation.png", label)
    pd.DataFrame(densities).to_csv(out_dir / "density_by_frame.csv", index=False)
    pd.concat(histories).to_csv(out_dir / "loss_history.csv", index=False)
    return rows, results


def run(quick: bool, out_dir: Path, seed: int = 0, progress: bool = True) -> list[dict]:
    """The registry entry point: :func:`reproduce` at :data:`QUICK` or :data:`FULL` settings, rows only."""
    return reproduce(QUICK if quick else FULL, out_dir, seed, progress)[0]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings (about a minute)")
    parser.add_argument("--pixels", action="store_true", help="the paper's set-up: the flow on the 400 pixels (PIXELS preset)")
    parser.add_argument("--space", choices=SPACES, default=None, help="override the space the flow models frames in")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument(
        "--models", nargs="*", choices=list(MODELS), default=None, help="a subset of the models (checkpoints are per model)"
    )
    parser.add_argument("--out", type=Path, default=Path("results") / EXPERIMENT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    settings = PIXELS if args.pixels else QUICK if args.quick else FULL
    if args.space:
        settings = replace(settings, space=args.space)
    if args.steps:
        settings = replace(settings, steps=args.steps)
    if args.models:
        settings = replace(settings, models=tuple(args.models))
    rows, _ = reproduce(settings, args.out, args.seed, not args.no_progress)
    print(format_report(rows, {EXPERIMENT: PAPER}, quick=settings == QUICK, all_rows=True))
    print(f"figure: {args.out}/fig4_generation.png; {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
