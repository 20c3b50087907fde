"""Paper reproductions: one runnable module per experiment, registered here.

Each module exposes ``PAPER`` (a citation string) and
``run(quick: bool, out_dir: pathlib.Path, seed: int = 0, progress: bool = True) -> list[dict]``,
returning result rows with the keys of :data:`ROW_KEYS`. ``python -m models --quick`` runs them all.
"""

from __future__ import annotations

import importlib

#: experiment name -> module; later issues add their experiments here.
EXPERIMENTS = {
    "xiao_gaussian_mixture": "models.xiao_gaussian_mixture",
    "xiao_digits": "models.xiao_digits",
    "planar_energies": "models.planar_energies",
    "sylvester_vae": "models.sylvester_vae",
    "ffjord_toy": "models.ffjord_toy",
    "dual_glow_transfer": "models.dual_glow_transfer",
    "dual_glow_phantom": "models.dual_glow_phantom",
    "crow_moving_digits": "models.crow_moving_digits",
    "motionflow_particles": "models.motionflow_particles",
    "motionflow_forecasting": "models.motionflow_forecasting",
    "motionflow_mocap": "models.motionflow_mocap",
    "motionflow_segmentation": "models.motionflow_segmentation",
}

#: columns of a result row: ``reference`` is the paper's (or the issue's target) value, or None.
ROW_KEYS = ("experiment", "setting", "metric", "value", "reference", "source")


def format_rows(rows: list[dict], with_experiment: bool = True) -> str:
    """Result rows as one aligned table (numbers to 4 significant digits), as the runner prints them."""
    import pandas as pd

    columns = list(ROW_KEYS) if with_experiment else list(ROW_KEYS[1:])
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70):
        return pd.DataFrame(rows, columns=list(ROW_KEYS))[columns].to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")


def load(name: str):
    """The module of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise KeyError(f"name: expected one of {sorted(EXPERIMENTS)}, got {name!r}")
    return importlib.import_module(EXPERIMENTS[name])
