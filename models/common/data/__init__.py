"""Simulators and loaders with fixed seeds; nothing here downloads at run time.

Import the submodule you need, e.g. ``from models.common.data.gaussian_mixture import octagon_mixture``.
"""

from . import (
    energies,  # noqa: F401  (Rezende & Mohamed 2015, Table 1)
    toy2d,  # noqa: F401  (FFJORD's 2-D toy distributions)
)
