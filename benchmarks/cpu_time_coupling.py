"""CPU-time companion to bench_coupling.py, for a machine shared with other jobs.

On a loaded machine the harness's wall-clock samples mostly measure the scheduler (and with two
OpenMP threads on an oversubscribed 2-core VM every parallel region waits for a descheduled
thread: steps ran 100x slower). This runner builds the same cases from the same registry (the
peers, the torch floor, pyroflows' plugin), runs them with ONE torch thread, and times each sample
with ``time.thread_time()``: CPU time of the calling thread, which excludes the time it was
preempted. Cache and memory-bandwidth contention from the other jobs still inflates it a little,
so the interleaved rounds are kept and only the ratios inside one run are meant to be read.

    python benchmarks/cpu_time_coupling.py [--batch 1600] [--variants joint,cond] [--rounds 9]
        [--only pyro,freia,torch_reference,pyroflows] [--json benchmarks/results/cpu_time_b1600.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get("BENCH_PEERS", os.path.join(os.path.dirname(ROOT), "shared", "bench-peers"))
sys.path.insert(0, PEERS)

import bench_coupling as B
import common


def _cpu(fn, number: int) -> float:
    t = time.thread_time()
    for _ in range(number):
        fn()
    return (time.thread_time() - t) / number


def run(variant: str, args) -> dict:
    cfg = B.make_cfg(B.C if variant == "cond" else 0, seed=args.seed, batch=args.batch)
    names = B.REGISTRY.select(args.only, args.skip)
    cases, failed = common.build_cases(B.REGISTRY, names, cfg, verbose=False)
    for n in list(cases):
        try:
            for _ in range(3):
                cases[n].step()
                cases[n].sample()
        except Exception as e:  # noqa: BLE001
            failed[n] = f"run failed: {type(e).__name__}: {e}"
            del cases[n]
    number = {n: (max(1, int(0.05 / max(_cpu(c.step, 1), 1e-6))), max(1, int(0.05 / max(_cpu(c.sample, 1), 1e-6))))
              for n, c in cases.items()}
    order = list(cases)
    step = {n: [] for n in order}
    samp = {n: [] for n in order}
    for r in range(args.rounds):
        k = r % len(order)
        for n in order[k:] + order[:k]:
            gc.collect()
            step[n].append(_cpu(cases[n].step, number[n][0]))
            gc.collect()
            samp[n].append(_cpu(cases[n].sample, number[n][1]))
    return {"cases": {n: {"step": step[n], "sample": samp[n]} for n in order}, "failed": failed}


def table(res: dict) -> str:
    med = {n: (statistics.median(v["step"]), statistics.median(v["sample"])) for n, v in res["cases"].items()}
    peers = [n for n in med if not n.startswith("pyroflows") and "torch_reference" not in n]
    floor = next((n for n in med if "torch_reference" in n), None)
    bs = min(peers, key=lambda n: med[n][0]) if peers else None
    bsa = min(peers, key=lambda n: med[n][1]) if peers else None
    lines = ["| impl | step CPU ms | × fastest peer | × floor | sample CPU ms | × fastest peer | × floor |", "|---|---|---|---|---|---|---|"]
    for n in sorted(med, key=lambda n: med[n][0]):
        s, sa = med[n]
        lines.append(
            f"| {'**`' + n + '`**' if n.startswith('pyroflows') else '`' + n + '`'} | {s * 1e3:.2f} | "
            f"{s / med[bs][0]:.2f} | {s / med[floor][0] if floor else float('nan'):.2f} | {sa * 1e3:.2f} | "
            f"{sa / med[bsa][1]:.2f} | {sa / med[floor][1] if floor else float('nan'):.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=B.BATCH)
    p.add_argument("--variants", default="joint,cond")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--only", default=None)
    p.add_argument("--skip", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    common.setup_torch(1, args.seed)
    common.load_plugins([os.path.join(PEERS, "plugins", "torch_reference_coupling.py"),
                         os.path.join(ROOT, "benchmarks", "plugin_coupling.py")], B.REGISTRY)
    out = {"machine": common.machine_info(), "batch": args.batch, "rounds": args.rounds, "clock": "time.thread_time, 1 torch thread",
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": {}}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        res = run(variant, args)
        out["results"][variant] = res
        print(f"\n### {variant}, batch {args.batch}, {args.rounds} rounds, thread CPU time, 1 thread")
        print(table(res))
        for n, why in res["failed"].items():
            print(f"  {n}: {why}")
    out.update(common.end_info())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
