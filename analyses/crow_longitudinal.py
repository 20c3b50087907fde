r"""Hwang et al. (2019), Sec. 4.2, Tables 1 and 2: group analyses of generated longitudinal amyloid PET.

Pipeline, once per covariate (diagnosis, ADAS13, MMSE) and model (cINN, CRow, CRow + TCG), on a
cohort of :func:`models.common.data.amyloid.simulate` (N = 276 subjects, T = 3 visits, 82 ROIs, a
known set of 22 affected ROIs) or, with ``--tadpole PATH``, on a real TADPOLE table:

1. **Training.** A :class:`~pyroflows.distributions.CRow` (``x_dim = 82``, ``y_dim`` 3 for the
   one-hot diagnosis or 1 for a standardised score, ``z_dim = 82 - y_dim``: no padding) is fitted as
   a Pyro likelihood by SVI with an empty guide, one sequence per subject::

       with pyro.plate("subjects", N, subsample_size=B) as idx:
           pyro.sample("x", crow.condition(y[idx]), obs=x[idx] + sigma * noise)

   (ROIs standardised with the cohort's mean and sd; ``sigma`` a smoothing noise of 0.5 sd against
   memorising 276 subjects; :math:`\epsilon = 1`). A share ``val_fraction`` (20 %) of the subjects is
   held out: scored every ``eval_every`` steps, it picks the parameters the fit ends with (early
   stopping). With smoothing noise 0.1 and :math:`\epsilon = 0.1` the fits memorised the cohort
   (the NLL of fresh subjects rose from 277 to 1500-1900 nats during training) and generated
   spurious shifts of every ROI. ``cinn`` is the same network without
   recurrence (each visit alone); ``crow`` adds the GRU subnetworks, ``crow_tcg`` the temporal
   context gating.
2. **Generation.** :math:`N_1 = N_2 = 100` (and 150) sequences under the covariate paths of the
   paper's Table 1 (:data:`PATHS`): Control (CN->CN->CN, ADAS13 10->10->10, MMSE 30->30->30) against
   Progression (CN->MCI->AD, 10->20->30, 30->26->22) and against Early progression (CN->MCI->MCI,
   10->13->16, 30->28->26).
3. **Group analysis.** Student's two-sample t-test per ROI at visit 3 between the Control and the
   (Early-)Progression samples, :math:`\alpha = 0.01`, without and with type-I error control
   (Bonferroni and Benjamini-Hochberg), via :mod:`models.common.group_tests`. The simulator
   knows which ROIs are affected, so each count comes with its precision and recall. The ``real``
   rows run the same tests on the training subjects whose covariate path matches (within
   :data:`TOLERANCE` per visit): as in the paper, there are too few of them.
4. **Fidelity (Table 2).** Cohen's d per ROI at visit 3 between 100 generated (Early-)Progression
   sequences and real sequences with that covariate path, averaged in absolute value over the ROIs.
   The real reference is the :data:`Settings.reference_k` subjects nearest to the path in a large
   fresh cohort from the same simulator (for TADPOLE data: in the table itself).

Outputs under ``--out`` (default ``results/crow_longitudinal``): ``table1_significant_rois.csv``
(long format: one row per covariate, contrast, group size, model), ``table1_paper_layout.csv``
(the paper's layout, "count (controlled count)"), ``table2_cohens_d.csv`` (with each fit's best
step, held-out and test NLL), ``roi_tests.csv`` (every ROI's d, t, p and flags), ``bars.csv``,
``learning_curves.csv`` (training loss and held-out NLL every ``eval_every`` steps) and
``roi_means.png`` (mean SUVR over the visits, affected and unaffected ROIs, per model and the real
reference, under CN->MCI->AD and CN->CN->CN).

Run::

    python -m analyses.crow_longitudinal            # full settings
    python -m analyses.crow_longitudinal --quick    # small settings (a minute or two)
    python -m analyses.crow_longitudinal --tadpole TADPOLE_D1_D2.csv   # real data, no truth

Measured (seed 0, full settings; the tables are in ``docs/papers/crow.md``): after Bonferroni or BH
control the precision of CRow + TCG is >= 0.8 in all 12 comparisons (3 covariates, 2 contrasts, 2
group sizes), but it finds more truly affected ROIs than the cINN in only 1 of them; its generated
groups are closer to the real sequences on the path than the cINN's (mean Cohen's d) in 4 of 6.
About 130 CPU-seconds per covariate (3 models x 2000 SVI steps at 0.02 s each, plus the held-out
scoring).

Paper: S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow: Conditional
Generation of Longitudinal Samples with Applications to Neuroimaging", ICCV 2019, Sec. 4.2,
Tables 1 and 2 (TADPOLE, N = 276, T = 3).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO

from models.common import group_tests
from models.common.data import amyloid
from pyroflows.distributions import CRow

PAPER = (
    'S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow: Conditional Generation of Longitudinal '
    'Samples with Applications to Neuroimaging", ICCV 2019, Sec. 4.2, Tables 1-2'
)
MODELS = {
    "cinn": {"recurrent": False, "gate": False},
    "crow": {"recurrent": True, "gate": False},
    "crow_tcg": {"recurrent": True, "gate": True},
}
LABELS = {"real": "real data", "cinn": "cINN", "crow": "CRow", "crow_tcg": "CRow + TCG"}
#: covariate -> contrast -> path over the three visits (diagnosis as indices into amyloid.DIAGNOSES)
PATHS = {
    "diagnosis": {"control": (0, 0, 0), "progression": (0, 1, 2), "early": (0, 1, 1)},
    "adas13": {"control": (10, 10, 10), "progression": (10, 20, 30), "early": (10, 13, 16)},
    "mmse": {"control": (30, 30, 30), "progression": (30, 26, 22), "early": (30, 28, 26)},
}
#: a real subject follows a path when every visit is within this much of it
TOLERANCE = {"diagnosis": 0, "adas13": 3, "mmse": 1}
#: the paper's Table 1, "count (type-I error controlled count)", and Table 2 (mean Cohen's d)
PAPER_TABLE1 = {
    ("progression", "cinn"): ("11 (4)", "5 (2)", "5 (0)"),
    ("progression", "crow"): ("25 (11)", "24 (12)", "19 (2)"),
    ("progression", "crow_tcg"): ("28 (12)", "32 (14)", "31 (2)"),
    ("early", "cinn"): ("2 (0)", "2 (2)", "2 (0)"),
    ("early", "crow"): ("6 (2)", "6 (4)", "11 (4)"),
    ("early", "crow_tcg"): ("6 (4)", "8 (5)", "12 (4)"),
}
PAPER_TABLE2 = {
    ("progression", "cinn"): (1.2551, 1.5968, 1.1498),
    ("progression", "crow"): (0.4193, 0.5562, 0.3485),
    ("progression", "crow_tcg"): (0.2828, 0.3915, 0.1679),
    ("early", "cinn"): (1.0656, 1.4985, 0.9482),
    ("early", "crow"): (0.3591, 0.5612, 0.2953),
    ("early", "crow_tcg"): (0.2341, 0.5248, 0.0902),
}
#: this project's precision bar after type-I error control
BAR_PRECISION = 0.8
#: subjects of the fresh simulated reference cohort that give the test NLL
TEST_SUBJECTS = 2000


@dataclass(frozen=True)
class Settings:
    """Cohort, network, training and analysis settings; :data:`FULL` and :data:`QUICK` are the presets."""

    n_subjects: int = 276
    covariates: tuple[str, ...] = amyloid.COVARIATES
    models: tuple[str, ...] = ("cinn", "crow", "crow_tcg")
    num_blocks: int = 3
    hidden_size: int = 32
    hidden_features: int = 64
    res_blocks: int = 1
    eps: float = 1.0  # sd of the relaxed covariate output (standardised units); 0.1 and 0.3 fit held-out subjects worse
    x_noise: float = 0.5  # smoothing noise on the standardised SUVR during training; at 0.1 the fits memorise the cohort
    steps: int = 2000
    batch: int = 64
    lr: float = 5e-4
    lr_final: float = 1e-4  # geometric decay
    clip: float = 10.0  # gradient-norm clip, per parameter tensor
    val_fraction: float = 0.2  # subjects held out for early stopping
    eval_every: int = 50  # steps between held-out evaluations
    sample_sizes: tuple[int, ...] = (100, 150)
    alpha: float = 0.01
    reference_pool: int = 20_000  # fresh simulated subjects to find real sequences on a path
    reference_k: int = 100  # real sequences per path for Cohen's d


FULL = Settings()
QUICK = Settings(covariates=("diagnosis",), steps=600, reference_pool=5000)


# ----------------------------------------------------------------------------------------------
# data


class Standardiser:
    """Affine map of SUVR to zero mean and unit sd per ROI (statistics of the training cohort) and of
    scores to zero mean and unit sd; diagnoses stay one-hot."""

    def __init__(self, cohort: amyloid.AmyloidCohort):
        self.mean = cohort.suvr.reshape(-1, cohort.suvr.shape[-1]).mean(0)
        self.sd = cohort.suvr.reshape(-1, cohort.suvr.shape[-1]).std(0)
        self.scores = {name: (getattr(cohort, name).mean(), getattr(cohort, name).std()) for name in ("adas13", "mmse")}

    def x(self, suvr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((suvr - self.mean) / self.sd).astype(np.float32))

    def suvr(self, x: torch.Tensor) -> np.ndarray:
        return x.numpy() * self.sd + self.mean

    def y(self, covariate: str, values: np.ndarray) -> torch.Tensor:
        """Covariate values ``(..., T)`` (diagnosis indices or raw scores) -> ``(..., T, K)``."""
        values = np.asarray(values)
        if covariate == "diagnosis":
            return torch.from_numpy(np.eye(3, dtype=np.float32)[values.astype(np.int64)])
        mean, sd = self.scores[covariate]
        return torch.from_numpy(((values - mean) / sd).astype(np.float32)[..., None])


def covariate_values(cohort: amyloid.AmyloidCohort, covariate: str) -> np.ndarray:
    """``(N, T)`` diagnosis indices or raw scores."""
    if covariate not in amyloid.COVARIATES:
        raise ValueError(f"covariate: expected one of {amyloid.COVARIATES}, got {covariate!r}")
    return getattr(cohort, covariate)


def on_path(cohort: amyloid.AmyloidCohort, covariate: str, path) -> np.ndarray:
    """``(N,)`` bool: subjects whose covariate is within :data:`TOLERANCE` of ``path`` at every visit."""
    return (np.abs(covariate_values(cohort, covariate) - np.asarray(path)) <= TOLERANCE[covariate]).all(1)


def validation_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """``(n,)`` bool mask of ``round(fraction * n)`` subjects held out, drawn with ``seed``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction: expected a share in [0, 1), got {fraction}")
    held_out = np.zeros(n, bool)
    held_out[np.random.default_rng(seed).permutation(n)[: round(fraction * n)]] = True
    return held_out


def nearest_to_path(cohort: amyloid.AmyloidCohort, covariate: str, path, k: int, scale: float = 1.0) -> np.ndarray:
    """Indices of the ``k`` subjects whose covariate path is nearest to ``path`` (sum over visits of
    the absolute difference; ties broken by subject order)."""
    distance = (np.abs(covariate_values(cohort, covariate) - np.asarray(path)) / scale).sum(1)
    return np.argsort(distance, kind="stable")[:k]


# ----------------------------------------------------------------------------------------------
# training and generation


def make_model(name: str, y_dim: int, settings: Settings, seed: int) -> CRow:
    torch.manual_seed(seed)
    return CRow(
        82, y_dim, z_dim=82 - y_dim, eps=settings.eps, num_blocks=settings.num_blocks, hidden_size=settings.hidden_size,
        hidden_features=settings.hidden_features, res_blocks=settings.res_blocks, seed=seed, **MODELS[name],
    )  # fmt: skip


def train(
    model: CRow,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Settings,
    seed: int,
    progress: bool = False,
    desc: str = "",
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> pd.DataFrame:
    """SVI with an empty guide on the relaxed likelihood (module docstring). Every
    ``settings.eval_every`` steps the held-out subjects ``validation = (x_val, y_val)`` are scored,
    and the model ends with the parameters of the best held-out NLL (early stopping; without
    ``validation``, the last ones). Returns the learning curve: ``step``, ``train_loss`` (mean
    negative log-likelihood per subject over the last ``eval_every`` steps) and ``val_nll``."""
    from tqdm.auto import tqdm

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    n = len(x)

    def likelihood(x, y):
        pyro.module("crow", model)
        with pyro.plate("subjects", n, subsample_size=min(settings.batch, n)) as idx:
            obs = x[idx] + settings.x_noise * torch.randn_like(x[idx])
            pyro.sample("x", model.condition(y[idx]), obs=obs)

    decay = (settings.lr_final / settings.lr) ** (1.0 / settings.steps)
    optim = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": settings.lr}, "gamma": decay}, clip_args={"clip_norm": settings.clip}
    )
    svi = SVI(likelihood, lambda x, y: None, optim, Trace_ELBO())
    curve, losses, best = [], [], (math.inf, None)
    for step in tqdm(range(1, settings.steps + 1), desc=desc, disable=None if progress else True, leave=False):
        model.train()
        losses.append(svi.step(x, y) / n)
        optim.step()
        if step % settings.eval_every == 0 or step == settings.steps:
            val_nll = held_out_nll(model, *validation) if validation is not None else math.nan
            curve.append({"step": step, "train_loss": float(np.mean(losses[-settings.eval_every :])), "val_nll": val_nll})
            if validation is not None and val_nll < best[0]:
                best = (val_nll, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    return pd.DataFrame(curve)


@torch.no_grad()
def held_out_nll(model: CRow, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood per sequence, -log p(x_{1:T} | y_{1:T}), in eval mode."""
    model.eval()
    return float(-model.condition(y).log_prob(x).mean())


@torch.no_grad()
def generate(model: CRow, y_path: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` sequences ``(n, T, 82)`` (standardised) under the covariate path ``y_path`` ``(T, K)``."""
    torch.manual_seed(seed)
    return model.condition(y_path.expand(n, -1, -1)).sample()


# ----------------------------------------------------------------------------------------------
# the analysis


def group_rows(a: np.ndarray, b: np.ndarray, truth: np.ndarray | None, alpha: float, names) -> tuple[dict, pd.DataFrame]:
    """Counts of significant ROIs (and precision/recall against ``truth``) between samples ``a`` and ``b`` at visit 3."""
    table = group_tests.group_difference(a, b, alpha, names)
    row = {}
    for correction in group_tests.CORRECTIONS:
        found = table[f"significant_{correction}"].to_numpy()
        row[f"significant_{correction}"] = int(found.sum())
        if truth is not None:
            row[f"true_{correction}"] = int((found & truth).sum())
            row[f"precision_{correction}"], row[f"recall_{correction}"] = group_tests.precision_recall(found, truth)
    return row, table


def analyse(cohort: amyloid.AmyloidCohort, reference: amyloid.AmyloidCohort, settings: Settings, seed: int = 0, progress: bool = True):
    """Train, generate and test for every covariate and model. Returns ``(table1, table2, roi_tests, means,
    curves)`` DataFrames; ``means`` holds the ROI means per visit for the figure, ``curves`` the learning
    curves. A share ``settings.val_fraction`` of the subjects is held out for early stopping; when
    ``reference`` is a fresh cohort (the simulator), its first :data:`TEST_SUBJECTS` subjects give a test NLL."""
    scaler = Standardiser(cohort)
    x = scaler.x(cohort.suvr)
    held_out = validation_split(len(x), settings.val_fraction, seed)
    x_test = scaler.x(reference.suvr[:TEST_SUBJECTS]) if reference is not cohort else None
    truth = None if cohort.effects is None else cohort.affected
    names = list(cohort.roi_names)
    table1, table2, roi_tables, means, curves = [], [], [], [], []
    for covariate in settings.covariates:
        paths = PATHS[covariate]
        y = scaler.y(covariate, covariate_values(cohort, covariate))
        y_test = None if x_test is None else scaler.y(covariate, covariate_values(reference, covariate)[:TEST_SUBJECTS])
        score_scale = 1.0 if covariate == "diagnosis" else scaler.scores[covariate][1]
        ref = {
            c: reference.suvr[nearest_to_path(reference, covariate, p, settings.reference_k, score_scale)] for c, p in paths.items()
        }  # fmt: skip
        for contrast in ("progression", "early"):  # the raw data, as far as they go
            a, b = (on_path(cohort, covariate, paths[c]) for c in ("control", contrast))
            row = {"covariate": covariate, "contrast": contrast, "model": "real", "n_control": int(a.sum()), "n_case": int(b.sum())}
            if a.sum() >= 2 and b.sum() >= 2:
                counts, _ = group_rows(cohort.suvr[a, 2], cohort.suvr[b, 2], truth, settings.alpha, names)
                row.update(counts)
            table1.append(row)
        for name in settings.models:
            k = list(MODELS).index(name)  # a model's seed does not depend on which others run
            model = make_model(name, y.shape[-1], settings, 100 * seed + k)
            start = time.perf_counter()
            curve = train(
                model, x[~held_out], y[~held_out], settings, 100 * seed + k, progress, f"{covariate}/{name}",
                validation=(x[held_out], y[held_out]) if held_out.any() else None,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            curves.append(curve.assign(covariate=covariate, model=name))
            best = curve.loc[curve.val_nll.idxmin()] if held_out.any() else curve.iloc[-1]
            fit = {"best_step": int(best.step), "train_loss": float(best.train_loss), "val_nll": float(best.val_nll),
                   "test_nll": math.nan if x_test is None else held_out_nll(model, x_test, y_test)}  # fmt: skip
            samples = {
                (c, n): scaler.suvr(generate(model, scaler.y(covariate, np.asarray(p)), n, 1_000 * seed + 10 * n + i))
                for n in settings.sample_sizes for i, (c, p) in enumerate(paths.items())
            }  # fmt: skip
            for contrast in ("progression", "early"):
                for n in settings.sample_sizes:
                    counts, table = group_rows(samples["control", n][:, 2], samples[contrast, n][:, 2], truth, settings.alpha, names)
                    table1.append(
                        dict(covariate=covariate, contrast=contrast, model=name, n_control=n, n_case=n, **counts, train_seconds=seconds)
                    )
                    roi_tables.append(
                        table.assign(covariate=covariate, contrast=contrast, model=name, n=n, affected=truth)
                        .rename_axis("roi")
                        .reset_index()
                    )
                n = min(settings.sample_sizes)
                d = group_tests.cohens_d(samples[contrast, n][:, 2], ref[contrast][:, 2])
                table2.append({'covariate': covariate, 'contrast': contrast, 'model': name, 'mean_abs_d': float(np.abs(d).mean()),
                                   'mean_abs_d_affected': float(np.abs(d[truth]).mean()) if truth is not None else np.nan,
                                   **fit})  # fmt: skip
            if covariate == "diagnosis":
                for c in ("control", "progression"):
                    means.append(_means(samples[c, min(settings.sample_sizes)], truth, name, c))
        if covariate == "diagnosis":
            for c in ("control", "progression"):
                means.append(_means(ref[c], truth, "real", c))
    roi_tests = pd.concat(roi_tables, ignore_index=True) if roi_tables else pd.DataFrame()
    means = pd.concat(means, ignore_index=True) if means else pd.DataFrame()
    return pd.DataFrame(table1), pd.DataFrame(table2), roi_tests, means, pd.concat(curves, ignore_index=True)


def _means(suvr: np.ndarray, truth: np.ndarray | None, model: str, contrast: str) -> pd.DataFrame:
    groups = {"all ROIs": np.ones(suvr.shape[-1], bool)} if truth is None else {"affected ROIs": truth, "unaffected ROIs": ~truth}
    rows = [
        {'model': model, 'path': contrast, 'rois': g, 'visit': t + 1, 'mean_suvr': float(suvr[:, t][:, mask].mean())}
        for g, mask in groups.items() for t in range(suvr.shape[1])
    ]  # fmt: skip
    return pd.DataFrame(rows)


def paper_layout(table1: pd.DataFrame, n: int) -> pd.DataFrame:
    """Table 1 as the paper prints it: rows (contrast, model), columns covariates, cells
    ``"count (controlled count)"`` at ``n`` per group (controlled: Bonferroni), the paper's cells beside them."""
    rows = []
    for (contrast, model), group in table1[(table1.n_control == n) & (table1.model != "real")].groupby(["contrast", "model"], sort=False):
        row = {"contrast": contrast, "model": LABELS[model]}
        for _, r in group.iterrows():
            row[r.covariate] = f"{int(r.significant_none)} ({int(r.significant_bonferroni)})"
            paper = PAPER_TABLE1.get((contrast, model))
            if paper is not None:
                row[f"{r.covariate} (paper)"] = paper[amyloid.COVARIATES.index(r.covariate)]
        rows.append(row)
    return pd.DataFrame(rows)


def bars(table1: pd.DataFrame, table2: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """This project's bars per covariate, contrast and group size: CRow + TCG finds more truly affected ROIs
    than cINN after control (Bonferroni and BH), with precision >= 0.8; and its mean |d| is below cINN's."""
    rows = []

    def bar(covariate, contrast, n, name, tcg, cinn, holds):
        rows.append(
            {"covariate": covariate, "contrast": contrast, "n": n, "bar": name, "crow_tcg": tcg, "cinn": cinn, "holds": bool(holds)}
        )

    if "true_bonferroni" not in table1:  # no truth (real data)
        return pd.DataFrame(rows)
    gen = table1[table1.model.isin(["cinn", "crow_tcg"])].set_index(["covariate", "contrast", "n_control", "model"])
    for (covariate, contrast, n), _ in gen.groupby(level=[0, 1, 2]):
        if (covariate, contrast, n, "cinn") not in gen.index or (covariate, contrast, n, "crow_tcg") not in gen.index:
            continue
        c, g = gen.loc[(covariate, contrast, n, "cinn")], gen.loc[(covariate, contrast, n, "crow_tcg")]
        for k in ("bonferroni", "bh"):
            hits, precision = f"true_{k}", f"precision_{k}"
            bar(covariate, contrast, n, f"more true ROIs than cINN ({k})", g[hits], c[hits], g[hits] > c[hits])
            bar(covariate, contrast, n, f"precision >= {BAR_PRECISION} ({k})", g[precision], c[precision], g[precision] >= BAR_PRECISION)
    d = table2.set_index(["covariate", "contrast", "model"])["mean_abs_d"]
    for covariate, contrast in {(r.covariate, r.contrast) for r in table2.itertuples()}:
        if (covariate, contrast, "cinn") in d.index and (covariate, contrast, "crow_tcg") in d.index:
            g, c = d[(covariate, contrast, "crow_tcg")], d[(covariate, contrast, "cinn")]
            bar(covariate, contrast, min(settings.sample_sizes), "Cohen's d below cINN's", g, c, g < c)
    table = pd.DataFrame(rows, columns=["covariate", "contrast", "n", "bar", "crow_tcg", "cinn", "holds"])
    return table.sort_values(["bar", "covariate", "contrast", "n"], ignore_index=True)


def figure(means: pd.DataFrame, path: Path) -> None:
    """Mean SUVR over the visits under CN->CN->CN (dashed) and CN->MCI->AD (solid), one panel per ROI group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(means.rois))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    colours = {"real": "black", "cinn": "tab:blue", "crow": "tab:orange", "crow_tcg": "tab:green"}
    for ax, g in zip(axes[0], groups, strict=True):
        for (model, contrast), part in means[means.rois == g].groupby(["model", "path"]):
            ax.plot(part.visit, part.mean_suvr, "-" if contrast == "progression" else "--", marker="o", color=colours.get(model, "grey"),
                    label=f"{LABELS.get(model, model)}, {'CN-MCI-AD' if contrast == 'progression' else 'CN-CN-CN'}")  # fmt: skip
        ax.set_title(g)
        ax.set_xlabel("visit")
        ax.set_xticks([1, 2, 3])
        ax.set_ylabel("mean AV45 SUVR")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce(settings: Settings, out_dir: Path, seed: int = 0, progress: bool = True, cohort: amyloid.AmyloidCohort | None = None) -> dict:
    """Run :func:`analyse` on ``cohort`` (default: the simulator's N = 276 cohort for ``seed``; its
    real reference comes from a fresh simulated pool, otherwise from ``cohort`` itself) and write
    the tables and the figure under ``out_dir``. Returns the DataFrames by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cohort is None:
        cohort = amyloid.simulate(settings.n_subjects, seed=seed)
        reference = amyloid.simulate(settings.reference_pool, seed=10_000 + seed)
    else:
        reference = cohort
    table1, table2, roi_tests, means, curves = analyse(cohort, reference, settings, seed, progress)
    out = {
        "table1_significant_rois": table1,
        "table2_cohens_d": table2,
        "roi_tests": roi_tests,
        "roi_means": means,
        "learning_curves": curves,
    }
    out["table1_paper_layout"] = paper_layout(table1, min(settings.sample_sizes))
    out["bars"] = bars(table1, table2, settings)
    for name, table in out.items():
        table.to_csv(out_dir / f"{name}.csv", index=False)
    if len(means):
        figure(means, out_dir / "roi_means.png")
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="diagnosis only, shorter training")
    parser.add_argument("--tadpole", type=Path, default=None, help="a TADPOLE-format CSV instead of the simulator")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument("--covariates", nargs="*", choices=amyloid.COVARIATES, default=None, help="a subset of the covariates")
    parser.add_argument("--out", type=Path, default=Path("results") / "crow_longitudinal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = QUICK if args.quick else FULL
    if args.steps:
        settings = replace(settings, steps=args.steps)
    if args.covariates:
        settings = replace(settings, covariates=tuple(args.covariates))
    cohort = amyloid.load_tadpole(args.tadpole) if args.tadpole else None
    start = time.perf_counter()
    out = reproduce(settings, args.out, args.seed, not args.no_progress, cohort)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 200):
        for name in ("table1_paper_layout", "table1_significant_rois", "table2_cohens_d", "bars"):
            print(f"\n{name}\n{out[name].to_string(index=False, float_format=lambda v: f'{v:.3g}')}")
    print(f"\ntables and roi_means.png in {args.out}; {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
