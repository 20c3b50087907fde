"""Peak memory per sample of a 3-D DUAL-GLOW training step, with and without recomputation.

Builds a DUAL-GLOW of the phantom experiment's sizes (``models.dual_glow_phantom.FULL``: two
3-level Glows of 2 steps, width 16, relation networks of width 16, one side feature; ``--hidden``
changes both widths) on volumes of each requested shape, with ``checkpoint=False`` and ``checkpoint=True`` (every Glow step and split prior
recomputed in the backward pass), and runs the objective of eq. (16) and its backward pass at the
requested batch. The data are dequantised uniform noise: memory does not depend on the values.

**What is measured.** On CPU, each (shape, mode) runs in a fresh process and reports its **peak
resident memory** (``resource.getrusage(RUSAGE_SELF).ru_maxrss``); a third process per shape
builds the model and data and runs only the no-gradient initialisation (ActNorm, on one pair), and
the table reports the peak above that baseline, divided by the batch: the memory one more sample
costs. (``tracemalloc`` does not see torch's allocations.) On CUDA (``--device cuda``) it is
``torch.cuda.max_memory_allocated`` during forward + backward, minus the allocation before it.
Also reported: the bytes the autograd graph saves for the backward pass (``glow_memory.py``'s
``SavedBytes``), the time of forward + backward, the largest relative difference between the two
modes' gradients, and the largest batch that fits an 80 GB GPU by linear extrapolation,
``floor((80e9 - 4 x parameter bytes) / per-sample bytes)`` (parameters, gradients and Adam's two
moments).

Run (CPU, one thread)::

    OMP_NUM_THREADS=1 nice python benchmarks/dual_glow_memory.py
    OMP_NUM_THREADS=1 python benchmarks/dual_glow_memory.py --shapes 16 --batch 2 --hidden 8

``--shapes`` takes cubes (``32``) or ``DxHxW`` (``64x96x64``, the paper's registered PET/MRI
volumes). Writes ``benchmarks/results/dual_glow_memory.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

GPU_BYTES = 80e9


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or any(p <= 0 or p % 8 for p in parts):
        raise ValueError(f"--shapes: expected a size or DxHxW with every side a positive multiple of 8, got {text!r}")
    return tuple(parts)


def child(args) -> dict:
    """One mode in this process: ``{"peak_mib", "saved_mib", "time_s", "grad", "param_bytes"}``."""
    from glow_memory import SavedBytes

    import pyroflows
    from pyroflows.distributions.dual_glow import DualGlow

    torch.set_num_threads(1)
    pyroflows.set_validation(False)
    device = torch.device(args.device)
    shape = (1,) + parse_shape(args.shape)
    g = torch.Generator().manual_seed(0)
    x_m = (torch.rand((args.batch,) + shape, generator=g) - 0.5).to(device)
    x_p = (torch.rand((args.batch,) + shape, generator=g) - 0.5).to(device)
    age = torch.rand(args.batch, 1, generator=g).to(device)
    torch.manual_seed(0)
    dual = DualGlow(shape, num_levels=3, num_steps=2, hidden_channels=args.hidden, relation_hidden=args.hidden,
                    side_features=1, checkpoint=args.mode == "checkpoint").to(device)  # fmt: skip
    with torch.no_grad():
        dual.objective(x_m[:1], x_p[:1], age[:1])  # ActNorm's initialisation, on one pair to keep the baseline low
    out = {"param_bytes": sum(p.numel() * p.element_size() for p in dual.parameters())}
    cuda = device.type == "cuda"
    if args.mode != "baseline":
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        with SavedBytes(list(dual.parameters())) as rec:
            loss = -dual.objective(x_m.clone(), x_p.clone(), age).mean()
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
            out["cuda_peak_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20
        out["time_s"] = time.perf_counter() - t0
        out["saved_mib"] = rec.total / 2**20
        out["grad"] = [float(p.grad.abs().sum()) for p in dual.parameters() if p.grad is not None]
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_shape(args, shape: str) -> dict:
    runs = {}
    for mode in ("baseline", "plain", "checkpoint"):
        cmd = [sys.executable, __file__, "--mode", mode, "--shape", shape, "--batch", str(args.batch),
               "--hidden", str(args.hidden), "--device", args.device]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    base = runs["baseline"]["peak_mib"]
    grads = runs["plain"].pop("grad"), runs["checkpoint"].pop("grad")
    diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(*grads, strict=True))
    row = {"shape": shape, "baseline_peak_mib": base, "max_relative_grad_diff": diff, "param_bytes": runs["baseline"]["param_bytes"]}
    for mode in ("plain", "checkpoint"):
        r = runs[mode]
        per_sample = (r["cuda_peak_mib"] if "cuda_peak_mib" in r else r["peak_mib"] - base) / args.batch
        fits = math.floor((GPU_BYTES - 4 * row["param_bytes"]) / max(per_sample * 2**20, 1.0))
        row[mode] = dict(r, per_sample_mib=per_sample, batch_80gb=fits)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["32", "64", "64x96x64"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=16, help="width of the Glow and relation networks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", choices=["baseline", "plain", "checkpoint"], default=None, help="(internal) one mode in this process")
    parser.add_argument("--shape", default=None, help="(internal) the shape of that mode")
    parser.add_argument("--out", default=str(HERE / "results" / "dual_glow_memory.json"))
    args = parser.parse_args(argv)
    if args.mode is not None:
        print(json.dumps(child(args)))
        return {}
    for s in args.shapes:
        parse_shape(s)
    rows = [run_shape(args, s) for s in args.shapes]
    measure = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "peak RSS (ru_maxrss) above the baseline"
    result = {"config": {"batch": args.batch, "hidden": args.hidden, "device": args.device, "threads": 1, "measure": measure,
                         "torch": torch.__version__}, "rows": rows}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"DUAL-GLOW (3 levels x 2 steps, width {args.hidden}), batch {args.batch}, {args.device}, 1 thread; memory: {measure}\n")
    print("| volume | mode | per sample (MiB) | saved activations (MiB) | fwd + bwd (s) | batch in 80 GB | max rel. grad diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        for mode, label in (("plain", "plain"), ("checkpoint", "`checkpoint=True`")):
            r = row[mode]
            diff = f"{row['max_relative_grad_diff']:.1e}" if mode == "checkpoint" else ""
            cells = [row["shape"], label, f"{r['per_sample_mib']:.0f}", f"{r['saved_mib']:.0f}", f"{r['time_s']:.1f}"]
            cells += [str(r["batch_80gb"]), diff]
            print("| " + " | ".join(cells) + " |")
    return result


if __name__ == "__main__":
    main()
