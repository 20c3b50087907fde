"""Training losses beyond the ELBO (the INN baseline) and a resumable fit loop."""

from .fit import fit, save_checkpoint
from .inn import INNLoss, inverse_multiquadric_mmd

__all__ = ["INNLoss", "fit", "inverse_multiquadric_mmd", "save_checkpoint"]
