"""The result rows every experiment builds, their verdicts and the main job's printout."""

import json
import math
import re

import pandas as pd
import pytest

import models
from models import __main__ as runner
from models.common import results

SHORTHAND = re.compile(r"\bissues?\b|\bbar of\b|\bproject bar\b|\bissue bar\b", re.IGNORECASE)


def test_a_row_keeps_the_kinds_of_reference_apart_and_computes_met():
    r = models.row("x", "s", "m", 0.3, paper=0.25, paper_source="Table 2", target=0.5, target_kind="<=", quick_expected=True, headline=True)
    assert tuple(r) == models.ROW_KEYS
    assert (r["paper"], r["paper_source"], r["target"], r["target_kind"], r["met"]) == (0.25, "Table 2", 0.5, "<=", True)
    assert r["baseline"] is None and r["quick_reason"] is None
    plain = models.row("x", "s", "m", 1.0)
    assert plain["met"] is None and plain["quick_expected"] is None and not plain["headline"]


@pytest.mark.parametrize(
    ("value", "kind", "target", "expected"),
    [(1, "<", 2, True), (2, "<", 2, False), (2, "<=", 2, True), (3, ">", 2, True), (2, ">", 2, False), (2, ">=", 2, True)],
)
def test_met_follows_the_target_kind(value, kind, target, expected):
    assert results.meets(value, target, kind) is expected


def test_met_is_false_for_nan_and_none_without_a_target():
    assert results.meets(math.nan, 1.0, "<") is False
    assert results.meets(1.0, None, None) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": 1.0},  # no kind
        {"target": 1.0, "target_kind": "=="},  # unknown kind
        {"target": 1.0, "target_kind": "<"},  # quick_expected missing
        {"target": 1.0, "target_kind": "<", "quick_expected": False},  # no reason
        {"paper": 0.9},  # no source
        {"note": "the issue's bar"},
        {"quick_expected": True},  # no target
    ],
)
def test_a_row_rejects_incomplete_or_internal_fields(kwargs):
    with pytest.raises(ValueError):
        models.row("x", "s", "m", 0.5, **kwargs)


def test_verdicts():
    met = models.row("x", "s", "m", 0.1, target=0.2, target_kind="<", quick_expected=True)
    missed = models.row("x", "s", "m", 0.3, target=0.2, target_kind="<", quick_expected=True)
    unexpected = models.row("x", "s", "m", 0.3, target=0.2, target_kind="<", quick_expected=False, quick_reason="few steps")
    untargeted = models.row("x", "s", "m", 0.3)
    assert [results.verdict(r, quick=True) for r in (met, missed, unexpected, untargeted)] == [
        "met",
        "not met",
        "not expected in quick mode",
        "no target",
    ]
    assert results.verdict(unexpected, quick=False) == "not met"


def test_citations_are_shortened_to_fit():
    paper = 'D. J. Rezende, S. Mohamed, "Variational inference with normalizing flows", ICML 2015, Sec. 6.1, Table 1, Fig. 3'
    assert results.short_citation(paper, 100).startswith('Rezende & Mohamed, "Variational inference')
    short = results.short_citation(paper, 50)
    assert len(short) <= 50 and short.startswith("Rezende & Mohamed")
    for name in models.EXPERIMENTS:
        assert len(results.short_citation(models.load(name).PAPER, 60)) <= 60


def test_a_block_stays_within_100_columns_and_gives_the_reason():
    rows = [
        models.row("demo", "a rather long setting name/with a model", "a long metric name that has to wrap", 0.123456, paper=0.73,
                   paper_source="Table 2", headline=True),
        models.row("demo", "s", "m", 0.3, target=0.2, target_kind="<", quick_expected=False, quick_reason="150 steps; full: 1200",
                   headline=True),
        models.row("demo", "s", "diagnostic", 1.0),
    ]  # fmt: skip
    text = results.format_report(rows, {"demo": 'A. Author, B. Author, C. Author, "A title", Venue 2020, Sec. 1'}, quick=True)
    lines = text.splitlines()
    assert max(map(len, lines)) <= results.WIDTH
    assert "expected to meet 0 of the 1 targets" in text.replace("\n", " ")
    assert any(line.startswith("demo (quick run): Author et al.") for line in lines)
    assert any("paper 0.73 (Table 2)" in line for line in lines)
    assert any(line.rstrip().endswith("not expected in quick mode") for line in lines)
    assert any("(quick mode: 150 steps; full: 1200)" in line for line in lines)
    assert "diagnostic" not in text


#: three of the cheapest quick runs: targets quick mode is not expected to meet, the paper's values
#: beside targets, and the paper's values and baselines beside targets
FAST = ("ffjord_toy", "motionflow_segmentation", "motionflow_mocap")
VERDICTS = (results.MET, results.NOT_MET, results.NOT_EXPECTED, results.NO_TARGET)


@pytest.mark.experiment
def test_main_job_prints_readable_blocks_and_writes_every_row(tmp_path, capsys, one_thread):
    table = runner.main(["--quick", "--only", *FAST, "--out", str(tmp_path)])
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert max(map(len, lines)) <= results.WIDTH, max(lines, key=len)
    assert not SHORTHAND.search(text)
    assert "Quick mode runs every experiment at small settings" in text
    for name in FAST:
        assert sum(line.startswith(f"{name} (quick run): ") for line in lines) == 1
    # every headline row has its line: our value and, at its end, the verdict
    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert list(csv.columns) == list(models.ROW_KEYS) and "met" in csv
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert len(rows) == len(csv) == len(table)
    headline = [r for r in rows if r["headline"]]
    assert headline and any(r["target"] is not None for r in headline)
    for r in headline:
        verdict = results.verdict(r, quick=True)
        assert verdict in VERDICTS
        value = results.fmt(r["value"])
        assert any(f" {value} " in line and line.rstrip().endswith(verdict) for line in lines), (r, verdict)
    # one line per headline row ends with its verdict, and each target quick mode is not expected to
    # meet gives its reason before the next row's line (after the row's wrapped label, if any)
    verdict_lines = [k for k, line in enumerate(lines) if line.startswith("  ") and line.rstrip().endswith(VERDICTS)]
    assert len(verdict_lines) == len(headline)
    for k, end in zip(verdict_lines, [*verdict_lines[1:], len(lines)], strict=True):
        if lines[k].endswith(results.NOT_EXPECTED):
            assert any(line.lstrip().startswith("(quick mode: ") for line in lines[k + 1 : end]), lines[k:end]
    for r in rows:
        assert r["met"] == results.meets(r["value"], r["target"], r["target_kind"])
        for key in ("setting", "metric", "paper_source", "quick_reason", "note"):
            assert not SHORTHAND.search(r[key] or ""), r
    expected = sum(bool(r["quick_expected"]) for r in rows if r["target"] is not None)
    assert f"expected to meet {expected} of the {sum(r['target'] is not None for r in rows)} targets" in text.replace("\n", " ")
