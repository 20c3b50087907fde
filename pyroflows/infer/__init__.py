"""Amortized flow posteriors, training losses beyond the ELBO (the INN baseline, flow matching for CNFs), a resumable fit
loop, and importance weights / importance-sampled likelihoods of any guide."""

from .amortized import POSTERIOR_KINDS, AmortizedFlowPosterior, amortized_posterior
from .compile import CompiledCall, CompileFallbackWarning, compile_sampler, compile_step
from .fit import atomic_write, fit, fit_svi, load_checkpoint, register_parameters, save_checkpoint
from .flow_matching import FlowMatching, ot_pairing
from .importance import ImportanceChunk, chunk_log_densities, importance_log_likelihood, log_importance_weights, vectorized_traces
from .inn import INNLoss, inverse_multiquadric_mmd

__all__ = [
    "POSTERIOR_KINDS",
    "AmortizedFlowPosterior",
    "amortized_posterior",
    "INNLoss",
    "CompiledCall",
    "CompileFallbackWarning",
    "compile_sampler",
    "compile_step",
    "atomic_write",
    "ImportanceChunk",
    "chunk_log_densities",
    "fit",
    "FlowMatching",
    "fit_svi",
    "load_checkpoint",
    "register_parameters",
    "importance_log_likelihood",
    "inverse_multiquadric_mmd",
    "log_importance_weights",
    "ot_pairing",
    "save_checkpoint",
    "vectorized_traces",
]
