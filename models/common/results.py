"""Result rows of the experiments, their verdicts, the runner's printout and the figures' conventions.

Every experiment builds its rows with :func:`row`, so that each row says apart what kind of number
stands beside the measured value:

* ``paper`` and ``paper_source``: the paper's own number and where in the paper it is (a table, a
  figure or a section); ``paper`` is None where the paper shows the result as a figure only;
* ``target`` and ``target_kind``: this project's own bar for the value (``value <kind> target``);
* ``baseline``: the value of a baseline the row is compared with (named in the setting or the note);
* ``quick_expected``: whether the quick settings are expected to meet the target, and
  ``quick_reason``: why not, in a few words, where they are not;
* ``headline``: the row is one the paper reports or one that carries a target (the runner prints
  these; the other rows are diagnostics that go to the csv and json files);
* ``note``: a short remark in plain words;
* ``met``: whether the value meets the target (None without a target).

:func:`format_report` turns rows into the blocks ``python -m models`` prints, no line wider than
:data:`WIDTH` columns.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable, Mapping

#: the comparisons a target can ask for: ``value <kind> target``
TARGET_KINDS = ("<", "<=", ">", ">=")
#: the keys of a result row, in the order of the csv columns
ROW_KEYS = (
    "experiment",
    "setting",
    "metric",
    "value",
    "paper",
    "paper_source",
    "target",
    "target_kind",
    "baseline",
    "quick_expected",
    "quick_reason",
    "headline",
    "note",
    "met",
)
#: widest line of the printout (a terminal of 100 columns)
WIDTH = 100
#: the printed verdicts
MET, NOT_MET, NOT_EXPECTED, NO_TARGET = "met", "not met", "not expected in quick mode", "no target"

# words of the project's own bookkeeping that mean nothing to a reader of the results
_SHORTHAND = re.compile(r"\bissues?\b|\bbar of\b|\bproject bar\b|\bissue bar\b", re.IGNORECASE)


def plain(text: str | None, name: str = "text") -> str | None:
    """``text`` unchanged; raises ``ValueError`` if it speaks the project's internal shorthand."""
    if text is not None and _SHORTHAND.search(text):
        raise ValueError(f"{name}: expected plain words without internal shorthand, got {text!r}")
    return text


def meets(value, target, target_kind: str | None) -> bool | None:
    """Whether ``value <target_kind> target`` holds; None without a target or without a finite value."""
    if target is None or target_kind is None or value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return False
    return {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[target_kind]


def _number(x, name: str):
    if x is None:
        return None
    if isinstance(x, bool):
        raise TypeError(f"{name}: expected a number, got the bool {x!r}")
    if isinstance(x, int):
        return x
    return float(x)


def row(
    experiment: str,
    setting: str,
    metric: str,
    value,
    *,
    paper=None,
    paper_source: str | None = None,
    target=None,
    target_kind: str | None = None,
    baseline=None,
    quick_expected: bool | None = None,
    quick_reason: str | None = None,
    headline: bool = False,
    note: str | None = None,
) -> dict:
    """One result row with the keys of :data:`ROW_KEYS` (see the module docstring), ``met`` computed.

    Raises:
        ValueError: a target without its kind (or the reverse), an unknown kind, a target without
            ``quick_expected``, ``quick_expected=False`` without a reason, a paper value without
            its source, or internal shorthand in a text field.
    """
    if (target is None) != (target_kind is None):
        raise ValueError(f"target, target_kind: expected both or neither, got {target!r}, {target_kind!r}")
    if target_kind is not None and target_kind not in TARGET_KINDS:
        raise ValueError(f"target_kind: expected one of {TARGET_KINDS}, got {target_kind!r}")
    if target is None:
        if quick_expected is not None or quick_reason is not None:
            raise ValueError(f"quick_expected: expected None for a row without a target, got {quick_expected!r}")
    elif not isinstance(quick_expected, bool):
        raise ValueError(f"quick_expected: expected True or False for a row with a target, got {quick_expected!r}")
    elif not quick_expected and not quick_reason:
        raise ValueError("quick_reason: expected a few words on why quick mode is not expected to meet the target")
    if paper is not None and not paper_source:
        raise ValueError(f"paper_source: expected where in the paper {paper!r} comes from, got {paper_source!r}")
    for name, text in (
        ("setting", setting),
        ("metric", metric),
        ("paper_source", paper_source),
        ("quick_reason", quick_reason),
        ("note", note),
    ):
        plain(text, name)
    value, target = _number(value, "value"), _number(target, "target")
    return {
        "experiment": experiment,
        "setting": setting,
        "metric": metric,
        "value": value,
        "paper": _number(paper, "paper"),
        "paper_source": paper_source,
        "target": target,
        "target_kind": target_kind,
        "baseline": _number(baseline, "baseline"),
        "quick_expected": quick_expected if target is not None else None,
        "quick_reason": quick_reason if target is not None and not quick_expected else None,
        "headline": bool(headline),
        "note": note,
        "met": meets(value, target, target_kind),
    }


def verdict(r: Mapping, quick: bool) -> str:
    """The printed verdict of row ``r``: ``met``, ``not met``, ``not expected in quick mode`` or ``no target``."""
    if r.get("target") is None:
        return NO_TARGET
    if r.get("met"):
        return MET
    if quick and r.get("quick_expected") is False:
        return NOT_EXPECTED
    return NOT_MET


def fmt(x) -> str:
    """A number to 4 significant digits (``—`` for None)."""
    if x is None:
        return "—"
    if isinstance(x, int):
        return str(x)
    return f"{x:.4g}"


def _paper_cell(r: Mapping) -> str:
    if r.get("paper") is not None:
        return f"paper {fmt(r['paper'])} ({r['paper_source']})"
    if r.get("paper_source"):
        return f"paper: {r['paper_source']}"
    return ""


def _target_cell(r: Mapping) -> str:
    """The target, or where a row has none, the baseline it is compared with."""
    if r.get("target") is not None:
        return f"{r['target_kind']} {fmt(r['target'])}"
    if r.get("baseline") is not None:
        return f"baseline {fmt(r['baseline'])}"
    return ""


def _surname(author: str) -> str:
    return author.strip().split(" ")[-1]


def short_citation(paper: str, width: int) -> str:
    """``paper`` in at most ``width`` characters: authors as "Surname et al.", then the title shortened
    or dropped (several papers joined by "; ": each shortened)."""

    def parts(title_room: int | None) -> str:
        out = []
        for part in paper.split("; "):
            m = re.match(r"^(?P<authors>[^\"']*?),\s*(?P<q>[\"'])(?P<title>.*?)(?P=q)(?P<rest>.*)$", part.strip())
            if not m:
                out.append(part.strip())
                continue
            names = [_surname(a) for a in m["authors"].split(",") if a.strip()]
            who = names[0] if len(names) == 1 else f"{names[0]} & {names[1]}" if len(names) == 2 else f"{names[0]} et al."
            title = m["title"]
            if title_room is not None:
                title = "" if title_room < 24 else textwrap.shorten(title, title_room, placeholder="…")
            out.append(f"{who}, {m['q']}{title}{m['q']}{m['rest']}" if title else f"{who}{m['rest']}")
        return "; ".join(out)

    text = parts(None)
    for room in range(60, 23, -4):
        if len(text) <= width:
            break
        text = parts(room)
    if len(text) > width:
        text = parts(0)
    return text if len(text) <= width else textwrap.shorten(text, width, placeholder="…")


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=True) or [""]


def format_block(experiment: str, paper: str, rows: Iterable[Mapping], quick: bool, all_rows: bool = False) -> str:
    """The printout of one experiment: a header line (name, shortened citation, quick or full) and one
    line per headline row (every row if ``all_rows``): setting and metric, our value, the paper's value,
    the target and the verdict, with the reason under a target quick mode is not expected to meet."""
    rows = [r for r in rows if all_rows or r.get("headline")]
    mode = "quick run" if quick else "full run"
    head = f"{experiment} ({mode}): "
    lines = [head + short_citation(paper, WIDTH - len(head))]
    if not rows:
        lines.append("  (no headline results)")
        return "\n".join(lines)
    cells = [(f"{r['setting']}: {r['metric']}", fmt(r["value"]), _paper_cell(r), _target_cell(r), verdict(r, quick)) for r in rows]
    header = ("result", "ours", "paper", "target", "verdict")  # a baseline in the target column says so
    w_value = max(len(c[1]) for c in cells + [header])
    w_paper = max(len(c[2]) for c in cells + [header])
    w_target = max(len(c[3]) for c in cells + [header])
    w_verdict = max(len(c[4]) for c in cells + [header])
    indent = 2
    fixed = indent + 4 + w_value + w_paper + w_target + w_verdict  # four single spaces between five columns
    w_label = max(16, min(max(len(c[0]) for c in cells), WIDTH - fixed))
    if fixed + w_label > WIDTH:  # too wide even so: give the paper column what is left
        w_paper = max(len(header[2]), WIDTH - indent - 4 - w_label - w_value - w_target - w_verdict)
    pad = " " * indent

    def line(label, value, paper_, target, verdict_):
        return f"{pad}{label:<{w_label}} {value:>{w_value}} {paper_:<{w_paper}} {target:<{w_target}} {verdict_}".rstrip()

    lines.append(line(*header))
    for r, (label, value, paper_, target, verdict_) in zip(rows, cells, strict=True):
        labels = _wrap(label, w_label)
        papers = _wrap(paper_, w_paper) if paper_ else [""]
        lines.append(line(labels[0], value, papers[0], target, verdict_))
        for k in range(1, max(len(labels), len(papers))):
            lines.append(line(labels[k] if k < len(labels) else "", "", papers[k] if k < len(papers) else "", "", ""))
        if verdict_ == NOT_EXPECTED:
            reason_indent = indent + 2
            lines += [" " * reason_indent + part for part in _wrap(f"(quick mode: {r['quick_reason']})", WIDTH - reason_indent)]
    return "\n".join(lines)


def _target_name(r: Mapping) -> str:
    return f"{r['setting']}: {r['metric']}"


def summary(rows: Iterable[Mapping], quick: bool) -> str:
    """The paragraph before the blocks: in quick mode, which targets quick mode is expected to meet
    (per experiment), then how many targets this run met."""
    rows = list(rows)
    targets = [r for r in rows if r.get("target") is not None]
    met = [r for r in targets if r.get("met")]
    lines = []
    if quick:
        expected = [r for r in targets if r.get("quick_expected")]
        text = (
            "Quick mode runs every experiment at small settings, as a check that it works end to end; most "
            "targets need the full settings (python -m models without --quick; docs/papers/ has their results). "
            f"Quick mode is expected to meet {len(expected)} of the {len(targets)} targets below:"
        )
        lines += textwrap.wrap(text, WIDTH)
        for name in dict.fromkeys(r["experiment"] for r in rows):
            mine = [r for r in targets if r["experiment"] == name]
            if not mine:
                lines.append(f"  {name}: no targets (the paper's values and baselines only)")
                continue
            chosen = [_target_name(r) for r in mine if r.get("quick_expected")]
            text = f"{name}: {len(chosen)} of {len(mine)}" + (f" ({'; '.join(chosen)})" if chosen else "")
            lines += textwrap.wrap(text, WIDTH, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
        met_expected = [r for r in expected if r.get("met")]
        text = (
            f"This run met {len(met)} of the {len(targets)} targets"
            + (f", {len(met_expected)} of the {len(expected)} expected. " if expected else ". ")
            + "Each block lists the paper's headline results and this project's targets (or the baseline a result "
            "is compared with); a target quick mode is not expected to meet says why under its line. "
            "results/metrics.csv holds every row."
        )
    else:
        text = (
            f"This run met {len(met)} of the {len(targets)} targets. Each block lists the paper's headline results "
            "and this project's targets (or the baseline a result is compared with); results/metrics.csv holds "
            "every row."
        )
    lines += textwrap.wrap(text, WIDTH)
    return "\n".join(lines)


def format_report(rows: list[Mapping], papers: Mapping[str, str], quick: bool, all_rows: bool = False) -> str:
    """The runner's printout: :func:`summary`, then one :func:`format_block` per experiment (in the
    order of ``rows``); ``papers`` maps an experiment to its citation."""
    names = list(dict.fromkeys(r["experiment"] for r in rows))
    parts = [summary(rows, quick)]
    for name in names:
        parts.append(format_block(name, papers.get(name, ""), [r for r in rows if r["experiment"] == name], quick, all_rows))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------------
# figures

#: the Okabe–Ito palette (distinguishable with the common colour-vision deficiencies): orange, sky
#: blue, bluish green, yellow, blue, vermillion, reddish purple, black
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")


def pyplot():
    """matplotlib's pyplot on the Agg backend, with the Okabe–Ito colours as the default cycle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))
    return plt


def run_label(settings, quick, full, seed) -> str:
    """A figure's note of the run: "quick settings, seed 0" (or "full", or "custom" for other settings;
    ``seed`` may be a sequence of seeds)."""
    return describe_run("quick" if settings == quick else "full" if settings == full else "custom", seed)


def describe_run(kind: str, seed) -> str:
    """A run's settings and seeds in words: ``kind`` "quick" gives "quick settings, seed 0" (``seed``
    may be a sequence of seeds: "seeds 0, 1, 2")."""
    if isinstance(seed, (list, tuple)):
        seeds = f"seed {seed[0]}" if len(seed) == 1 else f"seeds {', '.join(map(str, seed))}"
    else:
        seeds = f"seed {seed}"
    return f"{kind} settings, {seeds}"
