r"""Longitudinal amyloid PET (AV45 SUVR in 82 Desikan ROIs) with diagnosis, ADAS13 and MMSE per visit.

The setting of Hwang et al. (2019), Sec. 4.2 (TADPOLE / ADNI, N = 276 subjects, T = 3 visits),
which cannot be downloaded here: :func:`simulate` draws a cohort from a documented model with a
known truth, and :func:`load_tadpole` reads the real TADPOLE table into the same
:class:`AmyloidCohort`, so a user with ADNI access runs the same pipeline.

**The simulator.** Each subject :math:`i` has a latent disease stage that grows linearly over
visits, :math:`s_{it} = s_{i1} + \rho_i (t - 1)`, with :math:`s_{i1}` drawn by baseline group
(CN 40 %: :math:`U(0, 0.9)`; MCI 45 %: :math:`U(1, 1.9)`; AD 15 %: :math:`U(2, 2.8)`) and a
progression rate :math:`\rho_i = 0.05 + 0.9\,B_i`, :math:`B_i \sim \mathrm{Beta}(0.8, 3)`, per
visit (about two years). The covariates follow the stage:

.. math::

    \mathrm{DX}_{it} &= \text{CN if } s_{it} < 1, \text{ MCI if } 1 \le s_{it} < 2, \text{ AD otherwise}, \\
    \mathrm{ADAS13}_{it} &= \mathrm{clip}\big(\mathrm{round}(5 + 9 s_{it} + a_i + \varepsilon^{A}_{it}), 0, 85\big),
        \quad a_i \sim \mathcal N(0, 2^2),\ \varepsilon^{A} \sim \mathcal N(0, 2^2), \\
    \mathrm{MMSE}_{it} &= \mathrm{clip}\big(\mathrm{round}(29.6 - 0.4 s_{it} - 1.4 s_{it}^2 + m_i + \varepsilon^{M}_{it}), 0, 30\big),
        \quad m_i \sim \mathcal N(0, 0.7^2),\ \varepsilon^{M} \sim \mathcal N(0, 0.8^2),

so CN subjects score about 10 (ADAS13) and 29 (MMSE), MCI about 19 and 26, AD about 27 and 20.
Amyloid SUVR in ROI :math:`r` accumulates with the stage through a sigmoid load
:math:`A(s) = 1 / (1 + e^{-2.5 (s - 1.2)})`:

.. math::

    x_{itr} = \mu_r + b_i + u_{ir} + \beta_r\, A(s_{it} + \delta_i) + e_{itr}, \qquad
    b_i \sim \mathcal N(0, 0.08^2),\ u_{ir} \sim \mathcal N(0, 0.04^2),\ \delta_i \sim \mathcal N(0, 0.3^2),\
    e_{itr} \sim \mathcal N(0, 0.03^2),

with baseline levels :math:`\mu_r \in [1.0, 1.3]` (fixed, drawn once from ``seed=0``), a subject
random intercept :math:`b_i`, a subject-by-ROI deviation :math:`u_{ir}`, a subject shift of the
amyloid clock :math:`\delta_i` and visit noise :math:`e_{itr}`. The truth is :data:`EFFECTS`:
:math:`\beta_r = 0.25` in the 10 ROIs of the default-mode network where amyloid is known to
accumulate first (precuneus, posterior and isthmus cingulate, medial orbitofrontal, rostral anterior
cingulate, both hemispheres), :math:`\beta_r = 0.08` in 12 further association ROIs (superior and
rostral middle frontal, lateral orbitofrontal, inferior parietal, middle temporal, supramarginal),
and :math:`\beta_r = 0` in the other 60 (sensorimotor, occipital, medial temporal, subcortical).

Example::

    >>> cohort = simulate(seed=0)
    >>> cohort.suvr.shape, cohort.diagnosis.shape, int(cohort.affected.sum())
    ((276, 3, 82), (276, 3), 22)
    >>> cohort.covariate("diagnosis").shape, cohort.covariate("adas13").shape
    ((276, 3, 3), (276, 3, 1))

Reference: S. J. Hwang, Z. Tao, W. H. Kim, V. Singh, "Conditional Recurrent Flow", ICCV 2019,
Sec. 4.2; R. V. Marinescu et al., "TADPOLE challenge", arXiv:1805.03909 (the table format).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: Desikan-Killiany cortical parcels (34 per hemisphere)
CORTICAL = (
    "bankssts", "caudalanteriorcingulate", "caudalmiddlefrontal", "cuneus", "entorhinal", "fusiform",
    "inferiorparietal", "inferiortemporal", "isthmuscingulate", "lateraloccipital", "lateralorbitofrontal",
    "lingual", "medialorbitofrontal", "middletemporal", "parahippocampal", "paracentral", "parsopercularis",
    "parsorbitalis", "parstriangularis", "pericalcarine", "postcentral", "posteriorcingulate", "precentral",
    "precuneus", "rostralanteriorcingulate", "rostralmiddlefrontal", "superiorfrontal", "superiorparietal",
    "superiortemporal", "supramarginal", "frontalpole", "temporalpole", "transversetemporal", "insula",
)  # fmt: skip
#: subcortical structures (7 per hemisphere)
SUBCORTICAL = ("Thalamus", "Caudate", "Putamen", "Pallidum", "Hippocampus", "Amygdala", "Accumbens-area")
#: the 82 ROIs in FreeSurfer's naming: left cortex, left subcortex, right subcortex, right cortex
ROI_NAMES = (
    tuple(f"ctx-lh-{c}" for c in CORTICAL) + tuple(f"Left-{s}" for s in SUBCORTICAL)
    + tuple(f"Right-{s}" for s in SUBCORTICAL) + tuple(f"ctx-rh-{c}" for c in CORTICAL)
)  # fmt: skip
DIAGNOSES = ("CN", "MCI", "AD")
COVARIATES = ("diagnosis", "adas13", "mmse")
STRONG = ("precuneus", "posteriorcingulate", "isthmuscingulate", "medialorbitofrontal", "rostralanteriorcingulate")
WEAK = ("superiorfrontal", "rostralmiddlefrontal", "lateralorbitofrontal", "inferiorparietal", "middletemporal", "supramarginal")
STRONG_EFFECT, WEAK_EFFECT = 0.25, 0.08


def _effects() -> np.ndarray:
    beta = np.zeros(len(ROI_NAMES))
    for r, name in enumerate(ROI_NAMES):
        parcel = name.split("-")[-1]
        if name.startswith("ctx-") and parcel in STRONG:
            beta[r] = STRONG_EFFECT
        elif name.startswith("ctx-") and parcel in WEAK:
            beta[r] = WEAK_EFFECT
    return beta


#: the simulator's true effect :math:`\beta_r` of the amyloid load on each ROI (SUVR units)
EFFECTS = _effects()


@dataclass(frozen=True)
class AmyloidCohort:
    """Subjects with ``T`` visits each.

    Attributes:
        suvr: ``(N, T, R)`` AV45 SUVR per ROI.
        diagnosis: ``(N, T)`` int, index into :data:`DIAGNOSES`.
        adas13, mmse: ``(N, T)`` scores.
        roi_names: the ``R`` ROI names.
        subject: ``(N,)`` subject ids.
        effects: ``(R,)`` true effects (simulated cohorts; None for real data).
        stage: ``(N, T)`` latent disease stage (simulated cohorts; None for real data).
    """

    suvr: np.ndarray
    diagnosis: np.ndarray
    adas13: np.ndarray
    mmse: np.ndarray
    roi_names: tuple[str, ...]
    subject: np.ndarray
    effects: np.ndarray | None = None
    stage: np.ndarray | None = None

    @property
    def affected(self) -> np.ndarray:
        """``(R,)`` bool: the ROIs whose SUVR truly rises with the disease (simulated cohorts)."""
        if self.effects is None:
            raise ValueError("affected: a real cohort has no known truth")
        return self.effects > 0

    def covariate(self, name: str) -> np.ndarray:
        """``(N, T, K)`` ``float32``: one-hot diagnosis (``K = 3``) or the raw ``adas13`` / ``mmse`` score (``K = 1``)."""
        if name == "diagnosis":
            return np.eye(3, dtype=np.float32)[self.diagnosis]
        if name in ("adas13", "mmse"):
            return getattr(self, name)[..., None].astype(np.float32)
        raise ValueError(f"name: expected one of {COVARIATES}, got {name!r}")


def amyloid_load(stage: np.ndarray) -> np.ndarray:
    """:math:`A(s) = 1 / (1 + e^{-2.5 (s - 1.2)})`, the share of the plateau amyloid level reached at stage ``s``."""
    return 1.0 / (1.0 + np.exp(-2.5 * (stage - 1.2)))


def diagnosis_of(stage: np.ndarray) -> np.ndarray:
    """0 (CN) below stage 1, 1 (MCI) below 2, 2 (AD) from there."""
    return np.digitize(stage, [1.0, 2.0]).astype(np.int64)


def simulate(n: int = 276, visits: int = 3, seed: int = 0) -> AmyloidCohort:
    """A cohort of ``n`` subjects with ``visits`` visits from the model of the module docstring."""
    if n < 1 or visits < 1:
        raise ValueError(f"n, visits: expected positive counts, got n={n}, visits={visits}")
    mu = np.random.default_rng(0).uniform(1.0, 1.3, len(ROI_NAMES))  # fixed across cohorts
    rng = np.random.default_rng(seed)
    group = rng.choice(3, size=n, p=[0.40, 0.45, 0.15])
    start = np.array([0.0, 1.0, 2.0])[group] + np.array([0.9, 0.9, 0.8])[group] * rng.uniform(size=n)
    rate = 0.05 + 0.9 * rng.beta(0.8, 3.0, n)
    stage = start[:, None] + rate[:, None] * np.arange(visits)
    adas = 5.0 + 9.0 * stage + rng.normal(0, 2.0, (n, 1)) + rng.normal(0, 2.0, (n, visits))
    mmse = 29.6 - 0.4 * stage - 1.4 * stage**2 + rng.normal(0, 0.7, (n, 1)) + rng.normal(0, 0.8, (n, visits))
    R = len(ROI_NAMES)
    shift = rng.normal(0, 0.3, (n, 1))
    suvr = (
        mu + rng.normal(0, 0.08, (n, 1, 1)) + rng.normal(0, 0.04, (n, 1, R))
        + EFFECTS * amyloid_load(stage + shift)[..., None] + rng.normal(0, 0.03, (n, visits, R))
    )  # fmt: skip
    return AmyloidCohort(
        suvr.astype(np.float32), diagnosis_of(stage), np.clip(np.rint(adas), 0, 85), np.clip(np.rint(mmse), 0, 30),
        ROI_NAMES, np.arange(1, n + 1), EFFECTS.copy(), stage,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the TADPOLE table

#: suffix of the UC Berkeley AV45 ROI columns in ``TADPOLE_D1_D2.csv``
TADPOLE_SUFFIX = "_UCBERKELEYAV45_10_17_16"
#: TADPOLE's diagnosis strings (``DX``; also ``DX_bl``'s) -> index into :data:`DIAGNOSES`
TADPOLE_DX = {"NL": 0, "CN": 0, "SMC": 0, "MCI": 1, "EMCI": 1, "LMCI": 1, "DEMENTIA": 2, "AD": 2}


def tadpole_column(roi: str, suffix: str = TADPOLE_SUFFIX) -> str:
    """TADPOLE's column of a FreeSurfer ROI name: ``ctx-lh-precuneus`` -> ``CTX_LH_PRECUNEUS`` + suffix,
    ``Left-Accumbens-area`` -> ``LEFT_ACCUMBENS_AREA`` + suffix."""
    return roi.replace("-", "_").upper() + suffix


def _diagnosis_index(value) -> int:
    """``"MCI to Dementia"`` -> 2: a transition counts as the state it reached."""
    key = str(value).strip().split(" to ")[-1].strip().upper()
    if key not in TADPOLE_DX:
        raise ValueError(f"DX: unknown diagnosis {value!r}; expected one of {sorted(TADPOLE_DX)} or 'X to Y'")
    return TADPOLE_DX[key]


def load_tadpole(path: str | Path, visits: int = 3, roi_names: tuple[str, ...] = ROI_NAMES, suffix: str = TADPOLE_SUFFIX) -> AmyloidCohort:
    """Read a TADPOLE-format table (``TADPOLE_D1_D2.csv`` or any CSV with its columns).

    Columns used: ``RID`` (subject), ``M`` (months since baseline; visit order), ``DX`` (``NL``,
    ``MCI``, ``Dementia`` or a transition ``"NL to MCI"``), ``ADAS13``, ``MMSE`` and one AV45 SUVR
    column per ROI (:func:`tadpole_column`). Visits missing any of them (TADPOLE leaves blanks) are
    dropped; each subject with at least ``visits`` complete visits contributes its first ``visits``.
    """
    columns = {name: tadpole_column(name, suffix) for name in roi_names}
    table = pd.read_csv(path, low_memory=False)
    needed = ["RID", "M", "DX", "ADAS13", "MMSE", *columns.values()]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a TADPOLE table; missing columns {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    table = table[needed].replace(r"^\s*$", np.nan, regex=True).dropna()
    numeric = ["M", "ADAS13", "MMSE", *columns.values()]
    table[numeric] = table[numeric].astype(float)
    table = table.sort_values(["RID", "M"])
    table = table[table.groupby("RID").cumcount() < visits]
    counts = table.groupby("RID")["M"].transform("size")
    table = table[counts == visits]
    n = table["RID"].nunique()
    if n == 0:
        raise ValueError(f"{path}: no subject has {visits} complete visits")

    def block(cols) -> np.ndarray:
        return table[cols].to_numpy().reshape(n, visits, *([len(cols)] if isinstance(cols, list) else []))

    return AmyloidCohort(
        block(list(columns.values())).astype(np.float32), np.vectorize(_diagnosis_index)(block("DX")).astype(np.int64),
        block("ADAS13"), block("MMSE"), tuple(roi_names), table["RID"].to_numpy()[::visits],
    )  # fmt: skip


def to_tadpole(cohort: AmyloidCohort, path: str | Path, suffix: str = TADPOLE_SUFFIX) -> pd.DataFrame:
    """Write ``cohort`` as a TADPOLE-format CSV (visits 24 months apart) and return the table."""
    n, visits = cohort.diagnosis.shape
    dx_names = np.array(["NL", "MCI", "Dementia"])
    table = pd.DataFrame({
        "RID": np.repeat(cohort.subject, visits),
        "VISCODE": np.tile(["bl"] + [f"m{24 * t:02d}" for t in range(1, visits)], n),
        "M": np.tile(24 * np.arange(visits), n),
        "DX": dx_names[cohort.diagnosis.reshape(-1)],
        "ADAS13": cohort.adas13.reshape(-1),
        "MMSE": cohort.mmse.reshape(-1),
    })  # fmt: skip
    rois = pd.DataFrame(cohort.suvr.reshape(n * visits, -1), columns=[tadpole_column(r, suffix) for r in cohort.roi_names])
    table = pd.concat([table, rois], axis=1)
    table.to_csv(path, index=False)
    return table
