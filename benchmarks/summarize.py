"""Summarise the peer harness's JSON results: pyroflows against the fastest peer (and the floor).

    python benchmarks/summarize.py benchmarks/results/glow.json [more.json ...]

Works on the JSON of any of the harness's benchmarks (coupling, ffjord, planar_sylvester, glow):
one table per group of cases timed in the same interleaved rounds (a coupling variant, an FFJORD
dimension, a planar / Sylvester group, a Glow shape). The harness's own table counts every
implementation but the torch reference as a peer, pyroflows included; here a *peer* is a third-party
library's case (not ``pyroflows_*``, not the ``torch_reference`` floor, not an in-round
``(ref)`` repeat). A pyroflows case that names its peers in ``extra["peers"]`` (the same
configuration: Sylvester against Sylvester, not against planar) is compared with the fastest of
those; otherwise, or when none of them ran, with the fastest peer of the group (the "vs" column says
which). Every ratio is taken inside one run.
"""

from __future__ import annotations

import json
import sys

OURS = "pyroflows"
FLOOR = "torch_reference"


def is_peer(name: str) -> bool:
    return not name.startswith(OURS) and FLOOR not in name and "(ref)" not in name


def fastest(times: dict, candidates) -> str | None:
    """The name with the smallest time among ``candidates`` that have one."""
    have = [n for n in candidates if n in times]
    return min(have, key=times.get) if have else None


def peers_for(name: str, times: dict, wanted=None) -> str | None:
    """The fastest peer to compare ``name`` with: of ``wanted`` if one of them ran, else of all peers."""
    return fastest(times, wanted or ()) or fastest(times, [n for n in times if is_peer(n)])


def _ms(s: float | None) -> str:
    if s is None:
        return "–"
    ms = s * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if (a is not None and b) else "–"


def _mib(case: dict, kind: str):
    mem = (case.get(f"mem_{kind}") or {}).get("peak_bytes")
    return None if mem is None else mem / 2**20


def _nfe(case: dict) -> str:
    c = case.get("counters_step") or {}
    return f"{c['nfe_fwd']}/{c['nfe_bwd']}" if "nfe_fwd" in c else "–"


def group_table(res: dict) -> list[str]:
    cases = {n: c for n, c in res["cases"].items() if "step" in c}
    step = {n: c["step"]["median"] for n, c in cases.items()}
    samp = {n: c["sample"]["median"] for n, c in cases.items() if "sample" in c}
    floor = next((n for n in step if FLOOR in n), None)
    nfe = any("counters_step" in c for c in cases.values())
    head = [
        "impl",
        "step ms median (min–max)",
        "vs (fastest peer, step)",
        "step × it",
        "step × floor",
        "sample ms median (min–max)",
        "vs (sample)",
        "sample × it",
        "peak MiB step / sample",
        "× its step peak",
        "GFLOP/step",
        "rounds",
    ] + (["NFE fwd/bwd"] if nfe else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sorted(cases, key=step.get):
        c = cases[n]
        st, sa = c["step"], c.get("sample")
        wanted = (c.get("extra") or {}).get("peers") if n.startswith(OURS) else None
        ps = peers_for(n, step, wanted) if n.startswith(OURS) else fastest(step, [m for m in step if is_peer(m)])
        pa = peers_for(n, samp, wanted) if n.startswith(OURS) else fastest(samp, [m for m in samp if is_peer(m)])
        m_step, m_samp = _mib(c, "step"), _mib(c, "sample")
        m_peer = _mib(cases[ps], "step") if ps else None
        fl = c.get("flops_step")
        row = [
            f"**`{n}`**" if n.startswith(OURS) else f"`{n}`",
            f"{_ms(st['median'])} ({_ms(st['min'])}–{_ms(st['max'])})",
            f"`{ps}`" if ps else "–",
            _ratio(st["median"], step.get(ps)),
            _ratio(st["median"], step.get(floor)),
            f"{_ms(sa['median'])} ({_ms(sa['min'])}–{_ms(sa['max'])})" if sa else "–",
            f"`{pa}`" if pa else "–",
            _ratio(sa["median"] if sa else None, samp.get(pa)),
            f"{m_step:.1f} / {m_samp:.1f}" if (m_step is not None and m_samp is not None) else "–",
            _ratio(m_step, m_peer),
            f"{fl / 1e9:.3f}" if fl else "–",
            str(st["n"]),
        ] + ([_nfe(c)] if nfe else [])
        lines.append("| " + " | ".join(row) + " |")
    for n, why in res.get("failed", {}).items():
        if n not in cases:
            lines.append(f"| `{n}` | {why} |" + " |" * (len(head) - 2))
    return lines


def summarize(path: str) -> str:
    with open(path) as fh:
        data = json.load(fh)
    m = data["machine"]
    cfg = data.get("config", {})
    lines = [
        f"## {path}",
        "",
        f"{m['cpu_model']}, {m['logical_cpus']} logical CPUs, torch threads {m['torch_threads']}, "
        f"load average at start {tuple(round(v, 2) for v in m['loadavg_start'] or ())}, at end "
        f"{tuple(round(v, 2) for v in data.get('loadavg_end') or ())}; versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if "not importable" not in str(v)),
        "config: " + ", ".join(f"{k} {v}" for k, v in cfg.items() if not isinstance(v, (list, dict))),
        "",
    ]
    for group, res in data["results"].items():
        mm = res.get("references", {}).get("torch.mm 2048x2048")
        lines.append(f"### {group}" + (f" (torch.mm 2048² {mm['gflops_per_s']:.0f} GFLOP/s)" if mm else ""))
        lines.append("")
        lines += group_table(res)
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n".join(summarize(p) for p in sys.argv[1:]))
