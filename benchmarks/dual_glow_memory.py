"""Peak memory of a 3-D DUAL-GLOW training step with and without the memory-efficient mode.

Builds the phantom experiment's model (``models.dual_glow_phantom.FULL``: two 3-level Glows on
32^3 volumes, relation networks, side discriminators) with ``checkpoint=False`` and with
``checkpoint=True`` (every Glow step and split prior recomputed in the backward pass), and runs
the objective of eq. (16) and its backward pass on the same batch. Each mode runs in a fresh
process, so its **peak resident memory** (``ru_maxrss``) is its own; a third process that builds
the model and data and runs only the no-gradient initialisation (on two volumes) gives the baseline, and the table
reports the peak above it. Also reported: the bytes the autograd graph saves for the backward
pass (``benchmarks/glow_memory.py``'s ``SavedBytes``), the time of forward + backward and the
largest difference between the two modes' gradients.

Run (CPU, one thread; a few minutes on a loaded 2-core machine)::

    OMP_NUM_THREADS=1 nice python benchmarks/dual_glow_memory.py
    OMP_NUM_THREADS=1 python benchmarks/dual_glow_memory.py --batch 4 --size 16

Writes ``benchmarks/results/dual_glow_memory.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def child(args) -> dict:
    """One mode in this process: ``{"peak_mib", "saved_mib", "time_s", "grad"}``."""
    from dataclasses import replace

    from glow_memory import SavedBytes

    import pyroflows
    from models.common.data.brain_phantom import brain_phantoms
    from models.dual_glow_phantom import FULL, make_dual
    from models.dual_glow_transfer import dequantized

    torch.set_num_threads(1)
    pyroflows.set_validation(False)
    settings = replace(FULL, size=args.size, checkpoint=args.mode == "checkpoint")
    ph = brain_phantoms(args.batch, args.size, seed=0)
    g = torch.Generator().manual_seed(0)
    x_m, x_p, age = dequantized(ph.mri, g), dequantized(ph.pet, g), ph.age.unsqueeze(-1)
    torch.manual_seed(0)
    dual = make_dual(settings)
    with torch.no_grad():
        dual.objective(x_m[:2], x_p[:2], age[:2])  # ActNorm's initialisation, on a small batch to keep the baseline low
    out = {}
    if args.mode != "baseline":
        t0 = time.perf_counter()
        with SavedBytes(list(dual.parameters())) as rec:
            loss = -dual.objective(x_m.clone(), x_p.clone(), age).mean()
        loss.backward()
        out["time_s"] = time.perf_counter() - t0
        out["saved_mib"] = rec.total / 2**20
        out["grad"] = [float(p.grad.abs().sum()) for p in dual.parameters() if p.grad is not None]
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mode", choices=["baseline", "plain", "checkpoint"], default=None, help="(internal) run one mode in this process")
    parser.add_argument("--out", default=str(HERE / "results" / "dual_glow_memory.json"))
    args = parser.parse_args(argv)
    if args.mode is not None:
        print(json.dumps(child(args)))
        return {}
    runs = {}
    for mode in ("baseline", "plain", "checkpoint"):
        cmd = [sys.executable, __file__, "--mode", mode, "--size", str(args.size), "--batch", str(args.batch)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    base = runs["baseline"]["peak_mib"]
    diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(runs["plain"].pop("grad"), runs["checkpoint"].pop("grad"), strict=True))
    result = {
        "config": {"size": args.size, "batch": args.batch, "threads": 1, "torch": torch.__version__},
        "baseline_peak_mib": base,
        "plain": runs["plain"],
        "checkpoint": runs["checkpoint"],
        "peak_above_baseline_ratio": (runs["plain"]["peak_mib"] - base) / max(runs["checkpoint"]["peak_mib"] - base, 1e-9),
        "max_relative_grad_diff": diff,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    p, c = runs["plain"], runs["checkpoint"]
    print(f"DUAL-GLOW {args.size}^3, batch {args.batch}, 1 thread (baseline peak {base:.0f} MiB: model, data, initialisation)\n")
    print("| mode | peak RSS above baseline (MiB) | saved activations (MiB) | fwd + bwd (s) |")
    print("|---|---:|---:|---:|")
    print(f"| plain | {p['peak_mib'] - base:.0f} | {p['saved_mib']:.0f} | {p['time_s']:.1f} |")
    print(f"| `checkpoint=True` | {c['peak_mib'] - base:.0f} | {c['saved_mib']:.0f} | {c['time_s']:.1f} |")
    print(f"\npeak above baseline {result['peak_above_baseline_ratio']:.1f}x lower; largest relative gradient difference {diff:.1e}")
    return result


if __name__ == "__main__":
    main()
