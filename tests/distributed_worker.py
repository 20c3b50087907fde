"""Training runs that the data-parallel tests launch on several gloo ranks and repeat in one process.

``python tests/distributed_worker.py OUT_DIR`` (with torchrun's ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` in the environment) trains each problem of :data:`KINDS` for
20 steps, then for 10 steps with a checkpoint, then resumes that checkpoint to step 20 on the same
ranks; rank 0 writes the parameters of the 20-step runs to ``OUT_DIR/<kind>.pt`` and
``OUT_DIR/<kind>_resumed.pt``, and the 10-step checkpoint stays at ``OUT_DIR/<kind>_10.pt``.

Each rank seeds torch with its own seed: the runs match the single-process run only if ``fit``
starts every rank from rank 0's parameters and random stream.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO

from pyroflows.infer import fit, fit_svi
from pyroflows.infer.distributed import ShardedBatches, init_distributed, rank
from pyroflows.transforms import coupling_flow

KINDS = ("coupling", "pyro_flow_guide")
NUM_EXAMPLES, GLOBAL_BATCH = 64, 16


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100)
    x = torch.randn(NUM_EXAMPLES, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(NUM_EXAMPLES, generator=g, dtype=torch.float64)
    return x, y


def _regression(x, y, idx):
    w = pyro.sample("w", dist.Normal(torch.zeros(3, dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", NUM_EXAMPLES, subsample=idx):  # the rank's share, scaled to the data set
        pyro.sample("y", dist.Normal((x * w).sum(-1), 0.3), obs=y)


def run(kind: str, num_steps: int, checkpoint=None, seed: int = 0) -> dict:
    """Train ``kind`` in float64 from ``seed`` on this process's ranks (one without a process group);
    torch's default dtype is restored afterwards."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _run(kind, num_steps, checkpoint, seed)
    finally:
        torch.set_default_dtype(dtype)


def _run(kind: str, num_steps: int, checkpoint, seed: int) -> dict:
    torch.manual_seed(seed)
    pyro.clear_param_store()
    x, y = _data()
    batches = ShardedBatches(NUM_EXAMPLES, GLOBAL_BATCH, seed=1)
    flow = coupling_flow(3, num_blocks=2, hidden=(8,), seed=0)  # the structure; `seed` draws the weights
    opts = {"checkpoint": checkpoint, "checkpoint_every": 5, "log_every": 5, "progress": False}
    if kind == "coupling":
        base = dist.Normal(torch.zeros(3), 1.0).to_event(1)
        d = dist.TransformedDistribution(base, [flow])
        opt = torch.optim.Adam(flow.parameters(), lr=0.02)

        def step(i):
            opt.zero_grad()
            loss = -d.log_prob(x[batches(i)]).mean()
            loss.backward()
            opt.step()
            return loss.detach()

        history = fit(step, num_steps, {"flow": flow, "opt": opt}, **opts)
        params = {k: v.detach().clone() for k, v in flow.state_dict().items()}
    else:

        def guide(x, y, idx):
            pyro.module("w_flow", flow)
            loc = pyro.param("w_loc", torch.zeros(3))
            pyro.sample("w", dist.TransformedDistribution(dist.Normal(loc, 1.0).to_event(1), [flow]))

        svi = SVI(_regression, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())

        def data(i):
            idx = batches(i)
            return x[idx], y[idx], idx

        history = fit_svi(svi, num_steps, data=data, **opts)
        params = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    return {"params": params, "loss": history.loss.tolist()}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    init_distributed("cpu")
    seed = 1000 * rank()
    for kind in KINDS:
        full = run(kind, 20, seed=seed)
        run(kind, 10, out / f"{kind}_10.pt", seed=seed)
        if rank() == 0:  # the same checkpoint, resumed on the same ranks
            shutil.copy(out / f"{kind}_10.pt", out / f"{kind}_again.pt")
        torch.distributed.barrier()
        resumed = run(kind, 20, out / f"{kind}_again.pt", seed=seed)
        if rank() == 0:
            torch.save(full, out / f"{kind}.pt")
            torch.save(resumed, out / f"{kind}_resumed.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
