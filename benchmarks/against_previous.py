"""This checkout's coupling flows against another checkout's, interleaved in one process.

Both packages are imported side by side: the other checkout's ``pyroflows`` folder is linked under
another package name (``pyroflows_previous``; the package imports itself only relatively), so each
round times the same cases of both versions one after the other, with thread CPU time at one torch
thread. Each case is ``coupling_flow(16, num_blocks=8, hidden=(256,), clamp=2.0)`` inside a
``TransformedDistribution``: one-sided with the benchmark's random permutations (``1s``) and the
two-sided default (``2s``), at batch 64 and 1600; ``step`` is an Adam training step on
``-log_prob(x).mean()``, ``sample`` a ``sample((batch,))`` without gradients. The ratio printed is
the median over rounds of this checkout's time over the other's, measured in the same round.
Run it twice with ``--previous-first`` flipped and take the geometric mean, since the second
version timed in a round gains slightly from the first one's warm caches.

Usage::

    git worktree add --detach ../previous abbf1c6
    python benchmarks/against_previous.py ../previous --rounds 15
    python benchmarks/against_previous.py ../previous --rounds 15 --current-first
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

D, BLOCKS, HIDDEN = 16, 8, (256,)


def cases(package: str) -> dict:
    """``{(layout, batch, what): (call, repetitions)}`` for the ``pyroflows`` importable as ``package``."""
    import pyro.distributions as dist

    importlib.import_module(package).set_validation(False)
    transforms = importlib.import_module(package + ".transforms")
    out = {}
    for layout in ("1s", "2s"):
        for batch in (64, 1600):
            torch.manual_seed(0)
            if layout == "1s":
                perms = [torch.randperm(D) for _ in range(BLOCKS)]
                flow = transforms.coupling_flow(D, num_blocks=BLOCKS, hidden=HIDDEN, clamp=2.0, two_sided=False, permutation=perms)
            else:
                flow = transforms.coupling_flow(D, num_blocks=BLOCKS, hidden=HIDDEN, clamp=2.0, seed=0)
            base = dist.Normal(torch.zeros(D), 1.0, validate_args=False).to_event(1)
            d = dist.TransformedDistribution(base, [flow], validate_args=False)
            x = torch.randn(batch, D)
            opt = torch.optim.Adam(flow.parameters(), 1e-3)

            def step(d=d, x=x, opt=opt) -> None:
                opt.zero_grad()
                (-d.log_prob(x).mean()).backward()
                opt.step()

            def sample(d=d, batch=batch) -> None:
                with torch.no_grad():
                    d.sample((batch,))

            n = 40 if batch == 64 else 6
            out[(layout, batch, "step")] = (step, n)
            out[(layout, batch, "sample")] = (sample, 2 * n)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("previous", type=Path, help="the other checkout (its root, holding pyroflows/)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--current-first", action="store_true", help="time this checkout first in each round")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    link_dir = Path(tempfile.mkdtemp())
    (link_dir / "pyroflows_previous").symlink_to((args.previous / "pyroflows").resolve(), target_is_directory=True)
    sys.path.insert(0, str(link_dir))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    order = ["pyroflows", "pyroflows_previous"] if args.current_first else ["pyroflows_previous", "pyroflows"]
    timed = {name: cases(name) for name in order}
    for calls in timed.values():
        for call, _ in calls.values():
            call()
    times = {(name, key): [] for name in order for key in timed[name]}
    for _ in range(args.rounds):
        for name in order:
            for key, (call, n) in timed[name].items():
                start = time.thread_time()
                for _ in range(n):
                    call()
                times[(name, key)].append((time.thread_time() - start) / n * 1e3)
    ratios = {}
    for key in timed["pyroflows"]:
        now, before = times[("pyroflows", key)], times[("pyroflows_previous", key)]
        ratios[key] = statistics.median(a / b for a, b in zip(now, before, strict=True))
        layout, batch, what = key
        print(f"{layout} batch {batch:5d} {what:6s}  previous {statistics.median(before):8.3f} ms  "
              f"this {statistics.median(now):8.3f} ms  this/previous {ratios[key]:.3f}")  # fmt: skip
    return ratios


if __name__ == "__main__":
    main()
