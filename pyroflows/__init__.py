"""pyroflows: normalizing flows from five research papers as Pyro transforms, guides and likelihoods."""

from . import distributions, infer, nn, transforms
from .infer.compile import CompileFallbackWarning, compile_sampler, compile_step
from .validation import is_validation_enabled, set_validation, validation

__version__ = "0.2.0.dev0"

__all__ = [
    "distributions",
    "infer",
    "nn",
    "transforms",
    "compile_step",
    "compile_sampler",
    "CompileFallbackWarning",
    "set_validation",
    "is_validation_enabled",
    "validation",
    "__version__",
]
