"""Thread-CPU-time companion to the peer harness, for a machine shared with other jobs.

On a loaded machine the harness's wall-clock samples mostly measure the scheduler (and with two
OpenMP threads on an oversubscribed 2-core VM every parallel region waits for a descheduled
thread: steps ran 100x slower). This runner builds the same cases from the same registry as the
harness's script (the peers, the torch floor where there is one, pyroflows' plugin), runs them with
ONE torch thread, and times each sample with ``time.thread_time()``: CPU time of the calling
thread, which excludes the time it was preempted. Cache and memory-bandwidth contention from the
other jobs still inflates it a little, so the interleaved rounds are kept and only the ratios
inside one run are meant to be read. Peers and "vs" columns as in ``summarize.py``.

    python benchmarks/cpu_time.py coupling [--batch 1600] [--variants joint,cond] [--rounds 9]
    python benchmarks/cpu_time.py planar_sylvester [--groups main,amortized_sylvester]
    python benchmarks/cpu_time.py ffjord [--dims 2,16]
    python benchmarks/cpu_time.py glow [--shapes 1x16x16,3x32x32]
        [--only a,b] [--skip a,b] [--json benchmarks/results/cpu_time_<bench>.json]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get("BENCH_PEERS", os.path.join(os.path.dirname(ROOT), "shared", "bench-peers"))
sys.path.insert(0, PEERS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402 - the harness's helpers, importable only once PEERS is on sys.path
from summarize import OURS, fastest, is_peer, peers_for  # noqa: E402 - as above

# ----------------------------------------------------------------------------- the benchmarks' configurations
# Each returns [(label, cfg, names)]: the groups of cases timed together, with the harness's own
# configuration objects (built as its main() builds them).


def _coupling_groups(B, args):
    out = []
    for variant in _split(args.variants or "joint,cond"):
        cfg = B.make_cfg(B.C if variant == "cond" else 0, seed=args.seed, batch=args.batch or B.BATCH)
        out.append((variant, cfg, B.REGISTRY.select(args.only, args.skip)))
    return out


def _planar_groups(B, args):
    cfg = types.SimpleNamespace(
        D=B.D,
        batch=args.batch or B.BATCH,
        k_planar=B.K_PLANAR,
        k_sylv=B.K_SYLV,
        householder=B.HOUSEHOLDER,
        ortho_vecs=B.ORTHO_VECS,
        seed=args.seed,
        sylvester_dir=os.environ.get("SYLVESTER_DIR"),
    )
    selected = B.REGISTRY.select(args.only, args.skip)
    return [(g, cfg, [n for n in selected if B.group_of(n) == g]) for g in _split(args.groups or ",".join(B.GROUPS))]


def _ffjord_groups(B, args):
    out = []
    for dim in (int(d) for d in _split(args.dims or "2,16")):
        batch = args.batch or B.BATCH
        cfg = types.SimpleNamespace(
            dim=dim, batch=batch, seed=args.seed, x=B.make_data(batch, dim, args.seed), ffjord_dir=os.environ.get("FFJORD_DIR")
        )
        out.append((f"{dim}d", cfg, B.REGISTRY.select(args.only, args.skip)))
    return out


def _glow_groups(B, args):
    out = []
    for s in _split(args.shapes or "1x16x16,3x32x32"):
        shape = tuple(int(v) for v in s.split("x"))
        batch = args.batch or B.BATCH
        cfg = types.SimpleNamespace(
            shape=shape,
            levels=B.LEVELS.get(shape, 2),
            k=B.K_STEPS,
            hidden=B.HIDDEN,
            batch=batch,
            seed=args.seed,
            x=B.make_images(batch, shape, args.seed),
        )
        out.append((s, cfg, B.REGISTRY.select(args.only, args.skip)))
    return out


# bench name -> (harness module, plugins beside ours, groups)
BENCHES = {
    "coupling": ("bench_coupling", ["plugins/torch_reference_coupling.py"], _coupling_groups),
    "planar_sylvester": ("bench_planar_sylvester", [], _planar_groups),
    "ffjord": ("bench_ffjord", [], _ffjord_groups),
    "glow": ("bench_glow", [], _glow_groups),
}


def _split(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


# ----------------------------------------------------------------------------- timing


def _cpu(fn, number: int) -> float:
    t = time.thread_time()
    for _ in range(number):
        fn()
    return (time.thread_time() - t) / number


def run(registry, cfg, names, rounds: int, target_s: float) -> dict:
    cases, failed = common.build_cases(registry, names, cfg, verbose=False)
    for n in list(cases):
        try:
            for _ in range(2):
                cases[n].step()
                cases[n].sample()
        except Exception as e:  # noqa: BLE001
            failed[n] = f"run failed: {type(e).__name__}: {e}"
            del cases[n]
    number = {
        n: (max(1, int(target_s / max(_cpu(c.step, 1), 1e-6))), max(1, int(target_s / max(_cpu(c.sample, 1), 1e-6))))
        for n, c in cases.items()
    }
    order = list(cases)
    step = {n: [] for n in order}
    samp = {n: [] for n in order}
    for r in range(rounds):
        k = r % max(1, len(order))
        for n in order[k:] + order[:k]:
            gc.collect()
            step[n].append(_cpu(cases[n].step, number[n][0]))
            gc.collect()
            samp[n].append(_cpu(cases[n].sample, number[n][1]))
    out = {n: {"step": step[n], "sample": samp[n], "peers": (cases[n].extra or {}).get("peers")} for n in order}
    return {"cases": out, "failed": failed}


def table(res: dict) -> str:
    med = {n: (statistics.median(v["step"]), statistics.median(v["sample"])) for n, v in res["cases"].items()}
    step = {n: m[0] for n, m in med.items()}
    samp = {n: m[1] for n, m in med.items()}
    floor = next((n for n in med if "torch_reference" in n), None)
    lines = [
        "| impl | step CPU ms | vs (step) | × it | × floor | sample CPU ms | vs (sample) | × it | × floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sorted(med, key=step.get):
        ours = n.startswith(OURS)
        wanted = res["cases"][n].get("peers") if ours else None
        ps = peers_for(n, step, wanted) if ours else fastest(step, [m for m in step if is_peer(m)])
        pa = peers_for(n, samp, wanted) if ours else fastest(samp, [m for m in samp if is_peer(m)])

        def r(a, b):
            return f"{a / b:.2f}" if b else "–"

        lines.append(
            f"| {'**`' + n + '`**' if ours else '`' + n + '`'} | {step[n] * 1e3:.2f} | {'`' + ps + '`' if ps else '–'} | "
            f"{r(step[n], step.get(ps))} | {r(step[n], step.get(floor))} | {samp[n] * 1e3:.2f} | "
            f"{'`' + pa + '`' if pa else '–'} | {r(samp[n], samp.get(pa))} | {r(samp[n], samp.get(floor))} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", choices=sorted(BENCHES))
    p.add_argument("--batch", type=int, default=None, help="default: the harness's")
    p.add_argument("--variants", default=None, help="coupling: joint,cond")
    p.add_argument("--groups", default=None, help="planar_sylvester: main,amortized_sylvester")
    p.add_argument("--dims", default=None, help="ffjord: 2,16")
    p.add_argument("--shapes", default=None, help="glow: 1x16x16,3x32x32")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--target", type=float, default=0.05, help="CPU seconds per timing sample (calls are repeated to reach it)")
    p.add_argument("--only", default=None)
    p.add_argument("--skip", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    module, extra_plugins, groups = BENCHES[args.bench]
    common.setup_torch(1, args.seed)
    B = importlib.import_module(module)
    plugins = [os.path.join(PEERS, f) for f in extra_plugins] + [os.path.join(ROOT, "benchmarks", f"plugin_{args.bench}.py")]
    common.load_plugins(plugins, B.REGISTRY)
    out = {
        "machine": common.machine_info(),
        "bench": args.bench,
        "rounds": args.rounds,
        "batch": args.batch,
        "clock": "time.thread_time, 1 torch thread",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": {},
    }
    for label, cfg, names in groups(B, args):
        res = run(B.REGISTRY, cfg, names, args.rounds, args.target)
        out["results"][label] = res
        print(f"\n### {args.bench} {label}, {args.rounds} rounds, thread CPU time, 1 thread")
        print(table(res))
        for n, why in res["failed"].items():
            print(f"  {n}: {why}")
        sys.stdout.flush()
    out.update(common.end_info())
    print(f"\nload average at start {out['machine'].get('loadavg_start')}, at end {out.get('loadavg_end')}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
