"""Training runs that the kill-and-resume tests interrupt with SIGKILL and resume.

``python tests/resume_worker.py KIND NUM_STEPS CHECKPOINT OUT [KILL_AT]`` trains one of the problems
below for ``NUM_STEPS`` steps with ``CHECKPOINT`` (resuming it when it exists), sends itself SIGKILL
when step ``KILL_AT`` starts, and otherwise writes the final parameters to ``OUT``.
"""

from __future__ import annotations

import os
import random
import signal
import sys

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyroflows.infer import fit, fit_svi
from pyroflows.transforms import coupling_flow

KINDS = ("torch", "pyro_module_guide", "pyro_module_in_state", "autoguide")


def _data():
    g = torch.Generator().manual_seed(100)
    x = torch.randn(40, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(40, generator=g)
    return x, y


def _regression(x, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal((x * w).sum(-1), sigma), obs=y)


def _kill_at(kill_at: int | None, step, calls: list):
    """``step`` that kills the process when step ``kill_at`` starts (``fit_svi`` asks for step 0's
    data once more before training, so ``kill_at`` is at least 1), and appends each step it runs to
    ``calls``."""

    def wrapped(i):
        if i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(i)
        return step(i)

    return wrapped


def run(kind: str, num_steps: int, checkpoint=None, kill_at: int | None = None) -> dict:
    """Train ``kind`` from seed 0 and return its final parameters, the loss history and the steps
    this call ran (fewer than ``num_steps`` when it resumed a checkpoint)."""
    calls: list[int] = []
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    pyro.clear_param_store()
    x, y = _data()
    opts = {"checkpoint": checkpoint, "checkpoint_every": 3, "log_every": 1, "progress": False}
    if kind == "torch":
        net = torch.nn.Linear(3, 1)
        opt = torch.optim.Adam(net.parameters(), lr=0.05)

        def step(i):
            opt.zero_grad()
            noise = 0.01 * torch.randn(40) + 0.01 * float(np.random.randn()) + 0.01 * random.random()
            loss = ((net(x).squeeze(-1) - y - noise) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        history = fit(_kill_at(kill_at, step, calls), num_steps, {"net": net, "opt": opt}, **opts)
        return {"params": {k: v.detach().clone() for k, v in net.state_dict().items()}, "loss": history.loss.tolist(), "steps_run": calls}

    optim = pyro.optim.Adam({"lr": 0.02})
    if kind == "autoguide":
        guide = AutoNormal(_regression)
        svi = SVI(_regression, guide, optim, Trace_ELBO())
        history = fit_svi(svi, num_steps, data=_kill_at(kill_at, lambda i: (x, y), calls), **opts)
    else:
        flow = coupling_flow(3, num_blocks=2, hidden=(8,))

        def guide(x, y=None):
            pyro.module("w_flow", flow)
            loc = pyro.param("w_loc", torch.zeros(3))
            pyro.sample("w", dist.TransformedDistribution(dist.Normal(loc, 1.0).to_event(1), [flow]))
            scale = pyro.param("s_scale", torch.tensor(0.2), constraint=dist.constraints.positive)
            pyro.sample("sigma", dist.LogNormal(pyro.param("s_loc", torch.tensor(-1.0)), scale))

        svi = SVI(_regression, guide, optim, Trace_ELBO())
        if kind == "pyro_module_guide":
            history = fit_svi(svi, num_steps, data=_kill_at(kill_at, lambda i: (x, y), calls), **opts)
        else:  # the plain loop, the flow named in the state beside the param store
            step = _kill_at(kill_at, lambda i: svi.step(x, y), calls)
            history = fit(step, num_steps, {"params": pyro.get_param_store(), "optim": optim, "flow": flow}, **opts)
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    return {"params": params, "loss": history.loss.tolist(), "steps_run": calls}


if __name__ == "__main__":
    torch.set_num_threads(1)
    kind, num_steps, checkpoint, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    kill_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
    torch.save(run(kind, num_steps, checkpoint, kill_at), out)
