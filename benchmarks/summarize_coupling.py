"""Summarise bench_coupling.py JSON results: pyroflows against the fastest peer and the torch floor.

    python benchmarks/summarize_coupling.py benchmarks/results/coupling_b1600.json [more.json ...]

The harness's own table (``common.markdown_table``) counts every implementation that is not the
torch reference as a peer, pyroflows included; here the "fastest peer" is the fastest of the peer
libraries only (not ``pyroflows_*``, not ``torch_reference``), the floor is the plain-torch
reference plugin, and every ratio is taken inside one run (the same interleaved rounds).
"""

from __future__ import annotations

import json
import sys

OURS = "pyroflows"
FLOOR = "torch_reference"


def _ms(s: float | None) -> str:
    if s is None:
        return "–"
    ms = s * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _peer(name: str) -> bool:
    return not name.startswith(OURS) and FLOOR not in name


def summarize(path: str) -> str:
    with open(path) as fh:
        data = json.load(fh)
    m = data["machine"]
    cfg = data["config"]
    lines = [
        f"## {path}",
        "",
        f"{m['cpu_model']}, {m['logical_cpus']} logical CPUs, torch threads {m['torch_threads']}, "
        f"load average at start {tuple(round(v, 2) for v in m['loadavg_start'] or ())}, at end "
        f"{tuple(round(v, 2) for v in data.get('loadavg_end') or ())}; versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if "not importable" not in str(v)),
        f"batch {cfg['batch']}, {cfg['repeats']} interleaved rounds (or fewer when the time budget ran out)",
        "",
    ]
    for variant, res in data["results"].items():
        cases = {n: c for n, c in res["cases"].items() if "step" in c}
        step = {n: c["step"]["median"] for n, c in cases.items()}
        samp = {n: c["sample"]["median"] for n, c in cases.items() if "sample" in c}
        peers = [n for n in step if _peer(n)]
        best_step = min(peers, key=step.get) if peers else None
        peers_s = [n for n in samp if _peer(n)]
        best_samp = min(peers_s, key=samp.get) if peers_s else None
        floor = next((n for n in step if FLOOR in n), None)
        mm = res.get("references", {}).get("torch.mm 2048x2048")
        lines.append(f"### {variant}: fastest peer step `{best_step}`, fastest peer sampling `{best_samp}`"
                     + (f"; torch.mm 2048² {mm['gflops_per_s']:.0f} GFLOP/s" if mm else ""))
        lines.append("")
        lines.append("| impl | step ms median (min–max) | step × fastest peer | step × floor | sample ms median (min–max) "
                     "| sample × fastest peer | sample × floor | GFLOP/step | peak MiB step | rounds |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for n in sorted(cases, key=step.get):
            c = cases[n]
            st, sa = c["step"], c.get("sample")
            fl = c.get("flops_step")
            mem = (c.get("mem_step") or {}).get("peak_bytes")
            row = [
                f"**`{n}`**" if n.startswith(OURS) else f"`{n}`",
                f"{_ms(st['median'])} ({_ms(st['min'])}–{_ms(st['max'])})",
                f"{st['median'] / step[best_step]:.2f}" if best_step else "–",
                f"{st['median'] / step[floor]:.2f}" if floor else "–",
                f"{_ms(sa['median'])} ({_ms(sa['min'])}–{_ms(sa['max'])})" if sa else "–",
                f"{sa['median'] / samp[best_samp]:.2f}" if (sa and best_samp) else "–",
                f"{sa['median'] / samp[floor]:.2f}" if (sa and floor in samp) else "–",
                f"{fl / 1e9:.3f}" if fl else "–",
                f"{mem / 2**20:.1f}" if mem else "–",
                str(st["n"]),
            ]
            lines.append("| " + " | ".join(row) + " |")
        for n, why in res.get("failed", {}).items():
            if n not in cases:
                lines.append(f"| `{n}` | {why} |" + " |" * 8)
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n".join(summarize(p) for p in sys.argv[1:]))
