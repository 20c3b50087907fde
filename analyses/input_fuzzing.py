"""Every transform configuration of the shared suite on a grid of unusual and bad inputs.

For each case of :func:`pyroflows.testing.transform_cases` and each combination of batch shape
(``()``, ``(0,)``, ``(1,)``, ``(3,)``, ``(2, 3)``), dtype (float64, float32, int64), memory layout
(contiguous, non-contiguous, expanded) and bad value (none, NaN, inf, a wrong event shape, a context
whose batch does not broadcast), the forward map, log-det and inverse run once and the call is
sorted into the outcome classes of :mod:`pyroflows.testing.fuzz`. The suite's property test draws
from the same space at random; this grid counts the whole of it.

    python -m analyses.input_fuzzing              # every case: counts by outcome class
    python -m analyses.input_fuzzing --cases planar conditional_planar

Writes ``outcomes.csv`` (one row per call) and ``counts.csv`` (calls per case and class) to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from pyroflows import testing as pt
from pyroflows.testing.fuzz import BAD_VALUES, LAYOUTS, OUTCOMES, FuzzInput, fuzz_outcome

BATCHES = ((), (0,), (1,), (3,), (2, 3))
DTYPES = (torch.float64, torch.float32, torch.int64)


def grid() -> list[FuzzInput]:
    """Every combination of batch shape, dtype, layout and bad value."""
    return [FuzzInput(*combo) for combo in itertools.product(BATCHES, DTYPES, LAYOUTS, BAD_VALUES)]


def run(names: list[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per case and input: the case, the input and its outcome class and message."""
    every = pt.transform_cases()
    unknown = set(names or ()) - {c.name for c in every}
    if unknown:
        raise ValueError(f"cases: unknown case names {sorted(unknown)}")
    cases = [c for c in every if names is None or c.name in names]
    rows = []
    for case in tqdm(cases, desc="cases", disable=None if progress else True):  # None: quiet off a terminal
        module = pt.instantiate(case, dtype=torch.float64)
        module = module.eval() if hasattr(module, "eval") else module
        for draw in grid():
            outcome = fuzz_outcome(case, module, draw)
            rows.append(
                {
                    "case": case.name, "batch": str(draw.batch), "dtype": str(draw.dtype).removeprefix("torch."),
                    "layout": draw.layout, "bad": draw.bad or "", "outcome": outcome.kind, "message": outcome.message[:200],
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def counts(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Calls per outcome class (columns, in the order of ``OUTCOMES``) and case (rows), with a total row."""
    table = pd.crosstab(outcomes["case"], outcomes["outcome"]).reindex(columns=list(OUTCOMES), fill_value=0)
    table.loc["all cases"] = table.sum()
    return table


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=None, help="case names (default: every case)")
    parser.add_argument("--out", type=Path, default=Path("results/input_fuzzing"))
    args = parser.parse_args(argv)
    outcomes = run(args.cases)
    table = counts(outcomes)
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes.to_csv(args.out / "outcomes.csv", index=False)
    table.to_csv(args.out / "counts.csv")
    total = table.loc["all cases"]
    print(f"{len(outcomes)} calls over {len(table) - 1} transform configurations")
    print(total.to_frame("calls").to_string())
    bad = outcomes[~outcomes["outcome"].isin(["result", "named error"])]
    if len(bad):
        print("\nnot acceptable:")
        print(bad[["case", "batch", "dtype", "layout", "bad", "outcome", "message"]].to_string(index=False, max_colwidth=60))
    return table


if __name__ == "__main__":
    main()
