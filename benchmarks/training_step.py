"""The two calls every pyroflows plugin hands the peer harness: a training step and a sampling call.

Imported by the ``plugin_*.py`` files (as ``benchmarks.training_step``, with the repository root on
``sys.path``), so that each plugin only says how its loss and its distribution are built.
"""

from __future__ import annotations

import torch


def training_step(opt: torch.optim.Optimizer, loss_fn):
    """The harness's training step: zero_grad (to None), ``loss_fn()``, backward, ``opt.step()``."""

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss

    return step


def sampling_call(d, n: int):
    """The harness's sampling call: ``n`` draws of ``d`` under ``no_grad``."""

    def sample():
        with torch.no_grad():
            return d.sample((n,))

    return sample
