"""Run the registered paper reproductions and print their headline results.

    python -m models --quick            # every experiment in quick mode (minutes on 2 CPU cores)
    python -m models --only xiao_digits # one experiment at full settings

Prints one block per experiment: each headline result (the numbers the paper reports and this
project's targets) with the paper's value, the target and whether it is met. Writes every result
row to ``results/metrics.csv`` and ``results/metrics.json`` and each experiment's figures under
``results/<experiment>/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import EXPERIMENTS, ROW_KEYS, format_report, load


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings for a fast check (most targets need the full ones)")
    parser.add_argument("--all-rows", action="store_true", help="print every result row, not only the headline ones")
    parser.add_argument("--only", nargs="*", default=None, help="experiment names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = args.only or list(EXPERIMENTS)
    rows, papers = [], {}
    for name in tqdm(names, desc="experiments", disable=None):
        start = time.perf_counter()
        module = load(name)
        papers[name] = module.PAPER
        out_rows = module.run(quick=args.quick, out_dir=args.out / name, seed=args.seed, progress=True)
        rows += out_rows
        tqdm.write(f"{name}: {len(out_rows)} results in {time.perf_counter() - start:.0f} s")
    table = pd.DataFrame(rows, columns=list(ROW_KEYS))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "metrics.csv", index=False)
    (args.out / "metrics.json").write_text(json.dumps(rows, indent=2, default=float))
    print(format_report(rows, papers, quick=args.quick, all_rows=args.all_rows))
    print(f"\nevery result row:\n  {args.out / 'metrics.csv'}\n  {args.out / 'metrics.json'}")
    print(f"figures:\n  {args.out}/<experiment>/*.png")
    return table


if __name__ == "__main__":
    main()
