"""One table over every benchmark configuration: pyroflows against the fastest peer of each.

    python benchmarks/summarize_all.py benchmarks/results [--suffix _quick] [--out benchmarks/results/all]

Reads the harness JSON files that ``run_all.sh`` (through ``run_coupling.sh`` and ``run_peers.sh``)
writes into one folder: ``coupling_b<batch><suffix>.json``, ``planar_sylvester<suffix>.json``,
``ffjord<suffix>.json``, ``glow<suffix>.json``, and, where present, the thread-CPU-time files
``cpu_time_<same name>.json``. For every pyroflows case of every group it gives the training-step
ratio to the fastest peer, the sampling ratio and the peak-step-memory ratio (to the peer with the
fastest step), all inside one run, with the peers chosen as in ``summarize.py``. Writes
``<out>.md``, ``<out>.csv`` and ``<out>.json``; files that are missing are left out of the table.
A file named with ``--suffix`` (``_quick``) is read in preference to the one without. ``--prefix
gpu_`` reads the files of a run on a device instead (``run_all.sh --device cuda``:
``gpu_coupling_b<batch>.json``, ...) and writes ``gpu_all<suffix>.*``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from summarize import OURS, peers_for  # noqa: E402 - benchmarks/ is not a package

TARGET_SPEED = 0.67
TARGET_MEMORY = 1.0
COLUMNS = [
    "benchmark",
    "group",
    "case",
    "step_peer",
    "step_ms",
    "step_ratio",
    "sample_peer",
    "sample_ratio",
    "memory_ratio",
    "cpu_step_ratio",
    "cpu_sample_ratio",
    "targets_met",
]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if (a is not None and b) else None


def _peak(case: dict) -> float | None:
    return (case.get("mem_step") or {}).get("peak_bytes")


def _ratios(cases: dict, name: str, step: dict, sample: dict) -> tuple:
    wanted = (cases[name].get("extra") or {}).get("peers") or cases[name].get("peers")
    ps = peers_for(name, step, wanted)
    pa = peers_for(name, sample, wanted)
    return ps, _ratio(step.get(name), step.get(ps)), pa, _ratio(sample.get(name), sample.get(pa))


def _harness_medians(res: dict, kind: str) -> dict:
    return {n: c[kind]["median"] for n, c in res["cases"].items() if kind in c}


def _cpu_medians(res: dict, kind: str) -> dict:
    return {n: statistics.median(c[kind]) for n, c in res["cases"].items() if c.get(kind)}


def rows_of(harness: dict, cpu_time: dict | None, benchmark: str) -> list[dict]:
    """One row per pyroflows case and group of a harness result (and its CPU-time companion)."""
    rows = []
    for group, res in harness["results"].items():
        cases = res["cases"]
        step, sample = _harness_medians(res, "step"), _harness_medians(res, "sample")
        cpu = (cpu_time or {}).get("results", {}).get(group)
        for name in sorted(n for n in step if n.startswith(OURS)):
            ps, step_ratio, pa, sample_ratio = _ratios(cases, name, step, sample)
            peak, peer_peak = _peak(cases[name]), _peak(cases[ps]) if ps else None
            row = {
                "benchmark": benchmark,
                "group": group,
                "case": name,
                "step_peer": ps,
                "step_ms": step[name] * 1e3,
                "step_ratio": step_ratio,
                "sample_peer": pa,
                "sample_ratio": sample_ratio,
                "memory_ratio": _ratio(peak, peer_peak),
                "cpu_step_ratio": None,
                "cpu_sample_ratio": None,
            }
            if cpu is not None and name in cpu["cases"]:
                _, row["cpu_step_ratio"], _, row["cpu_sample_ratio"] = _ratios(
                    cpu["cases"], name, _cpu_medians(cpu, "step"), _cpu_medians(cpu, "sample")
                )
            speed = [r for r in (row["cpu_step_ratio"] or step_ratio, row["cpu_sample_ratio"] or sample_ratio) if r is not None]
            known = ps is not None and speed and row["memory_ratio"] is not None
            row["targets_met"] = bool(known and max(speed) <= TARGET_SPEED and row["memory_ratio"] <= TARGET_MEMORY) if known else None
            rows.append(row)
    return rows


def _load(folder: str, stem: str, suffix: str) -> dict | None:
    """``<stem><suffix>.json`` in ``folder``, else ``<stem>.json`` (run_coupling.sh adds no suffix), else None."""
    for path in (os.path.join(folder, f"{stem}{suffix}.json"), os.path.join(folder, f"{stem}.json")):
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
    return None


def collect(folder: str, suffix: str = "", prefix: str = "") -> list[dict]:
    """The rows of every harness JSON named ``<prefix><name>`` in ``folder`` (``suffix`` preferred),
    in benchmark order."""
    start = f"{prefix}coupling_b"
    batches = {os.path.basename(p)[len(start) :].split("_")[0].split(".")[0] for p in glob.glob(os.path.join(folder, f"{start}*.json"))}
    names = [f"coupling_b{b}" for b in sorted((b for b in batches if b.isdigit()), key=lambda b: -int(b))]
    rows = []
    for name in names + ["planar_sylvester", "ffjord", "glow"]:
        harness = _load(folder, prefix + name, suffix)
        if harness is not None:
            rows += rows_of(harness, _load(folder, f"cpu_time_{prefix}{name}", suffix), name)
    return rows


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    head = [
        "benchmark",
        "group",
        "pyroflows case",
        "fastest peer (step)",
        "step ms",
        "**step ×**",
        "fastest peer (sample)",
        "sample ×",
        "peak step memory ×",
        "step × (CPU time)",
        "sample × (CPU time)",
        f"targets (≤ {TARGET_SPEED} step and sample, ≤ {TARGET_MEMORY:.0f} memory)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["benchmark"], r["group"], f"`{r['case']}`", f"`{r['step_peer']}`" if r["step_peer"] else "– (no peer ran)"]
        cells += [_fmt(r[k]) for k in COLUMNS[4:]]
        cells[6] = f"`{cells[6]}`" if r["sample_peer"] else cells[6]
        cells[5] = f"**{cells[5]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(rows: list[dict], out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(f"{out}.md", "w") as fh:
        fh.write(markdown(rows))
    with open(f"{out}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(f"{out}.json", "w") as fh:
        json.dump(rows, fh, indent=1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--suffix", default="", help="file-name suffix of the runs to read (run_all.sh --quick: _quick)")
    p.add_argument("--prefix", default="", help="file-name prefix of the runs to read (run_all.sh --device cuda: gpu_)")
    p.add_argument("--out", default=None, help="output path without extension (default: <folder>/<prefix>all<suffix>)")
    args = p.parse_args(argv)
    rows = collect(args.folder, args.suffix, args.prefix)
    if not rows:
        raise SystemExit(f"folder: no harness results with prefix {args.prefix!r} and suffix {args.suffix!r} in {args.folder}")
    out = args.out or os.path.join(args.folder, f"{args.prefix}all{args.suffix}")
    write(rows, out)
    print(markdown(rows))
    print(f"written: {out}.md, {out}.csv, {out}.json")


if __name__ == "__main__":
    main()
