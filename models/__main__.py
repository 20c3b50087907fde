"""Run the registered paper reproductions and print one results table.

    python -m models --quick            # every experiment in quick mode (minutes on 2 CPU cores)
    python -m models --only xiao_digits # one experiment at full settings

Writes ``results/metrics.csv``, ``results/metrics.json`` and each experiment's figures under
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

from . import EXPERIMENTS, ROW_KEYS, format_rows, load


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings for a fast check")
    parser.add_argument("--only", nargs="*", default=None, help="experiment names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = args.only or list(EXPERIMENTS)
    rows = []
    for name in tqdm(names, desc="experiments", disable=None):
        start = time.perf_counter()
        out_rows = load(name).run(quick=args.quick, out_dir=args.out / name, seed=args.seed, progress=True)
        rows += out_rows
        tqdm.write(f"{name}: {len(out_rows)} results in {time.perf_counter() - start:.0f} s")
    table = pd.DataFrame(rows, columns=list(ROW_KEYS))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "metrics.csv", index=False)
    (args.out / "metrics.json").write_text(json.dumps(rows, indent=2, default=float))
    print(format_rows(rows))
    print(f"\nmetrics: {args.out / 'metrics.csv'}; figures: {args.out}/<experiment>/*.png")
    return table


if __name__ == "__main__":
    main()
