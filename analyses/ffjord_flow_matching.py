r"""Flow matching against maximum likelihood for the FFJORD toy CNF.

For each toy, the CNF of :mod:`models.ffjord_toy` (concatsquash dynamics, exact trace) is fitted
twice from the same seed: by maximum likelihood (:func:`models.ffjord_toy.fit_flow`: RK4 solves
with the trace and the RNODE penalties in every step) and by flow matching
(:func:`models.ffjord_toy.fit_flow_matching`: no solve, ``--fm-steps`` steps, independent pairing
or, with ``--ot``, minibatch OT pairing, a peak learning rate ``--fm-lr-factor`` times the
likelihood fit's, logit-normal training times centred at ``--fm-time-loc``). Both are scored the
same way (:func:`models.ffjord_toy.evaluate`: held-out NLL with ``dopri5`` at 1e-5 and the exact
trace, its standard error, the NFE of that solve), and the training wall time and CPU time of each
fit are measured in the same process, one after the other (on a shared machine the CPU time is the
steadier measure of cost).

Output in ``--out`` (default ``results/ffjord_flow_matching``): ``comparison.csv``, one row per toy
and method, also printed, and ``densities.png``, the data and both fits' densities per toy. The
measured table is in ``docs/flow_matching.md``.

Run::

    python -m analyses.ffjord_flow_matching             # full ML settings, 8gaussians and checkerboard
    python -m analyses.ffjord_flow_matching --quick     # small settings (seconds)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from models import ffjord_toy
from models.common.data import toy2d
from models.common.results import run_label


def compare(
    toy: str,
    settings: ffjord_toy.Settings,
    fm_steps: int,
    ot: bool,
    seed: int = 0,
    progress: bool = False,
    fm_lr: float | None = None,
    fm_time_loc: float | None = None,
) -> tuple[list[dict], dict]:
    """Rows for the maximum-likelihood fit of one toy and its flow-matching fit (independent pairing,
    or minibatch OT pairing when ``ot``; peak learning rate ``fm_lr``, ``settings.lr`` when None;
    logit-normal training times centred at ``fm_time_loc``, uniform when None), and the two fitted
    flows by method."""
    rows, flows = [], {}
    fit_seed = ffjord_toy.toy_seed(seed, toy)  # as the experiment fits each toy, so its fit is reproduced
    fits = {
        "maximum likelihood": lambda: ffjord_toy.fit_flow(toy, settings, fit_seed, progress=progress),
        f"flow matching{' (OT)' if ot else ''}": lambda: ffjord_toy.fit_flow_matching(
            toy, settings, fit_seed, fm_steps, ot, progress, fm_lr, fm_time_loc
        ),
    }
    for method, run in fits.items():
        start, cpu = time.perf_counter(), time.process_time()
        flow, history = run()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        flows[method] = flow
        m = ffjord_toy.evaluate(flow, toy, settings, seed)
        steps = len(history) and int(history.step.iloc[-1]) + 1
        rows.append(
            {
                "toy": toy, "method": method, "steps": steps, "train_seconds": round(seconds, 1),
                "train_cpu_seconds": round(cpu, 1),
                "test_nll": round(m["nll"], 4), "nll_se": round(m["nll_se"], 4), "entropy": toy2d.ENTROPY[toy],
                "gaussian_nll": round(m["gaussian_nll"], 4),
                "nfe_test": m["nfe_test"], "time": m["time"][0],
            }
        )  # fmt: skip
    ml, fm = rows
    fm["time_ratio"] = round(fm["train_seconds"] / ml["train_seconds"], 3)
    fm["cpu_time_ratio"] = round(fm["train_cpu_seconds"] / ml["train_cpu_seconds"], 3)
    fm["nll_gap_to_ml"] = round(fm["test_nll"] - ml["test_nll"], 4)
    return rows, flows


#: flow matching's peak learning rate, as a multiple of the likelihood fit's (the same cosine decay to ``lr_final``)
FM_LR_FACTOR = 2.0
#: flow matching's training times: sigmoid(u), u ~ N(FM_TIME_LOC, 1), which favours the data end
FM_TIME_LOC = 0.5


def flow_matching_steps(toy: str, settings: ffjord_toy.Settings) -> int:
    """Default flow-matching steps: 3 times the maximum-likelihood steps of ``toy`` (a flow-matching
    step costs no solve, so the budget stays a small fraction of the likelihood fit's)."""
    return 3 * settings.steps_for(toy)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings")
    parser.add_argument("--toys", nargs="+", default=["8gaussians", "checkerboard"], choices=toy2d.NAMES)
    parser.add_argument("--fm-steps", type=int, default=None, help="flow-matching steps (default: 3x the toy's likelihood steps)")
    parser.add_argument("--ot", action="store_true", help="minibatch OT pairing (an exact assignment per step)")
    parser.add_argument(
        "--fm-lr-factor",
        type=float,
        default=FM_LR_FACTOR,
        help=f"flow matching's peak learning rate over maximum likelihood's (default {FM_LR_FACTOR:g})",
    )
    parser.add_argument(
        "--fm-time-loc", type=float, default=FM_TIME_LOC,
        help=f"mean of the logit of flow matching's training times, logit-normal with scale 1 (default {FM_TIME_LOC:g})",
    )  # fmt: skip
    parser.add_argument("--fm-uniform-time", dest="fm_time_loc", action="store_const", const=None, help="uniform training times")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/ffjord_flow_matching"))
    args = parser.parse_args(argv)
    settings = replace(ffjord_toy.QUICK if args.quick else ffjord_toy.FULL, checkpoint=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads or threads)
    rows, flows = [], {}
    try:
        for toy in args.toys:
            steps = args.fm_steps or flow_matching_steps(toy, settings)
            fm_lr = args.fm_lr_factor * settings.lr
            toy_rows, toy_flows = compare(toy, settings, steps, args.ot, args.seed, False, fm_lr, args.fm_time_loc)
            rows += toy_rows
            for method, flow in toy_flows.items():
                flows.setdefault(method, {})[toy] = flow
        table = pd.DataFrame(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "comparison.csv", index=False)
        print(table.to_string(index=False))
        full = replace(ffjord_toy.FULL, checkpoint=False)  # this comparison never checkpoints
        label = run_label(settings, ffjord_toy.QUICK, full, args.seed)
        ffjord_toy.plot_densities(
            {}, settings, args.out / "densities.png", args.seed, label=label, rows=flows,
            title="CNF densities by training objective\nrows: data, maximum likelihood, flow matching",
        )  # fmt: skip
        print(f"figure: {args.out / 'densities.png'}")
    finally:
        torch.set_num_threads(threads)
    return table


if __name__ == "__main__":
    main()
