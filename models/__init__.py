"""Paper reproductions: one runnable module per experiment, registered here.

Each module exposes ``PAPER`` (a citation string) and
``run(quick: bool, out_dir: pathlib.Path, seed: int = 0, progress: bool = True) -> list[dict]``,
returning result rows built by :func:`row` (the keys of :data:`ROW_KEYS`: the measured value apart
from the paper's number, this project's target and a baseline; :mod:`models.common.results`).
``python -m models --quick`` runs them all and prints :func:`format_report`.
"""

from __future__ import annotations

import importlib

from models.common.results import ROW_KEYS, format_report, row

__all__ = ["EXPERIMENTS", "ROW_KEYS", "format_report", "load", "row"]

#: experiment name -> module
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


def load(name: str):
    """The module of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise KeyError(f"name: expected one of {sorted(EXPERIMENTS)}, got {name!r}")
    return importlib.import_module(EXPERIMENTS[name])
