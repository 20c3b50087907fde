"""Memory of a multi-scale 3-D Glow training step with and without per-step checkpointing.

Builds ``glow(shape, num_levels, num_steps, hidden_channels)`` twice with the same weights, once
with ``checkpoint=True``, and runs one step of ``-log_prob(x).mean()`` and its backward pass on
the same batch with each. Reported:

* **saved**: bytes of the tensors the autograd graph holds when the forward pass ends (the
  activations kept for the backward pass), measured with
  ``torch.autograd.graph.saved_tensors_hooks``: every tensor packed for backward is recorded by
  its storage, each storage counted once, the parameters' storages left out. Under checkpointing,
  what a checkpointed step stores internally is packed by the checkpoint's own hooks (and
  dropped); its saved inputs are packed by ours, so they are counted.
* **recompute**: the largest saved size of one checkpointed unit (a step or a split prior) run
  alone: the extra memory the backward pass of the checkpointed flow holds at once while it
  recomputes that unit.
* **peak** (CUDA only): ``torch.cuda.max_memory_allocated`` over forward and backward, less the
  memory allocated before the step (parameters, data).
* **time**: wall-clock seconds of forward + backward (median of ``--repeats``).
* the largest difference between the two runs' parameter gradients (they must agree).

Run (CPU, one thread; about a minute on a loaded 2-core machine)::

    OMP_NUM_THREADS=1 nice python benchmarks/glow_memory.py
    python benchmarks/glow_memory.py --device cuda --batch 4          # on a GPU: real peaks too

Writes ``benchmarks/results/glow_memory.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import pyroflows
from pyroflows.flows import glow


class SavedBytes:
    """Context manager: the bytes of the distinct non-parameter storages saved for backward."""

    def __init__(self, params):
        self.param_ptrs = {p.untyped_storage().data_ptr() for p in params}
        self.storages: dict[int, int] = {}

    def _pack(self, t):
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr not in self.param_ptrs:
            self.storages[ptr] = max(self.storages.get(ptr, 0), s.nbytes())
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _mib(n: float) -> float:
    return n / 2**20


def _unit_recompute_bytes(flow, x) -> int:
    """Largest saved size of one checkpointed unit (a step or a split prior), run alone on its input."""
    from pyroflows.transforms.squeeze import squeeze

    params = list(flow.parameters())
    edim, worst, v = flow._event_dim, 0, x
    with torch.no_grad():
        inputs = []
        for level in range(flow.num_levels):
            v = squeeze(v, edim)
            for step in flow.steps[level]:
                inputs.append((step, v))
                v = step.inverse_and_ladj(v)[0]
            if level < flow.num_levels - 1:
                prior = flow.priors[level]
                inputs.append((prior, v))
                v = prior.inverse_and_ladj(v)[0]
                v = v.split(flow.splits[level], dim=-edim)[0]
    for unit, u in inputs:
        with SavedBytes(params) as rec:
            out, ladj = unit.inverse_and_ladj(u)
        worst = max(worst, rec.total)
        del out, ladj
    return worst


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    pyroflows.set_validation(False)
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    )
    shape = tuple(args.shape)
    torch.manual_seed(0)
    flows = {}
    reference = glow(shape, args.levels, args.steps, args.hidden).to(device)
    x = torch.rand((args.batch,) + shape, device=device) - 0.5
    with torch.no_grad():  # ActNorm's data-dependent initialisation, shared by both copies
        reference.distribution().log_prob(x)
    for mode in (False, True):
        f = glow(shape, args.levels, args.steps, args.hidden, checkpoint=mode).to(device)
        f.load_state_dict(reference.state_dict())
        flows[mode] = f
    rows, grads = {}, {}
    for mode, f in flows.items():
        params = list(f.parameters())
        d = f.distribution()
        times, saved, peak = [], None, None
        for _ in range(args.repeats):
            f.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            with SavedBytes(params) as rec:
                loss = -d.log_prob(x.clone()).mean()  # a new tensor: no cached pair from the last repeat
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() - base
            times.append(time.perf_counter() - t0)
            saved = rec.total
        grads[mode] = [p.grad.detach().clone() for p in params]
        rows[mode] = {
            "saved_mib": _mib(saved),
            "time_s": statistics.median(times),
            "peak_mib": None if peak is None else _mib(peak),
            "loss": loss.item(),
        }
    rows[True]["recompute_mib"] = _mib(_unit_recompute_bytes(flows[True], x))
    max_grad_diff = max((a - b).abs().max().item() for a, b in zip(grads[False], grads[True], strict=True))
    config = {"shape": shape, "batch": args.batch, "levels": args.levels, "steps": args.steps, "hidden": args.hidden}
    config.update(device=str(device), threads=args.threads)
    return {
        "config": config,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "plain": rows[False],
        "checkpoint": rows[True],
        "saved_ratio": rows[False]["saved_mib"] / rows[True]["saved_mib"],
        "max_grad_diff": max_grad_diff,
        "num_parameters": sum(p.numel() for p in reference.parameters()),
    }


def table(r: dict) -> str:
    c, p, k = r["config"], r["plain"], r["checkpoint"]
    head = (
        f"`glow{tuple(c['shape'])}`, batch {c['batch']}, L={c['levels']}, K={c['steps']}, hidden {c['hidden']}, "
        f"{c['device']}, {c['threads']} thread(s)"
    )

    def peak(row: dict) -> str:
        return "n/a (CPU)" if row["peak_mib"] is None else f"{row['peak_mib']:.1f}"

    lines = [
        head,
        "",
        "| mode | saved activations (MiB) | + one unit recomputed (MiB) | CUDA peak (MiB) | fwd + bwd (s) |",
        "|---|---:|---:|---:|---:|",
        f"| plain | {p['saved_mib']:.1f} | - | {peak(p)} | {p['time_s']:.2f} |",
        f"| `checkpoint=True` | {k['saved_mib']:.1f} | {k['saved_mib'] + k['recompute_mib']:.1f} | {peak(k)} | {k['time_s']:.2f} |",
        "",
        f"saved activations {r['saved_ratio']:.1f}x smaller; largest gradient difference {r['max_grad_diff']:.2e}",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[1, 32, 32, 32], help="event shape (C, D, H, W) or (C, H, W)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "glow_memory.json"))
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return result


if __name__ == "__main__":
    main()
