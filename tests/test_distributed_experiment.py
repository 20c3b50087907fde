"""The data-parallel entry point runs as the docs write it: ``torchrun --nproc_per_node=2 -m
models.distributed --quick`` on 2 gloo ranks prints a line per logged step and writes a checkpoint,
which one process then resumes; every ``--flow`` trains."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import distributed
from pyroflows.infer import load_checkpoint

pytestmark = pytest.mark.experiment

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^step +(\d+)  ranks (\d+)  global batch (\d+)  loss (\S+) nats/dim$", re.M)


def test_torchrun_two_ranks_then_one_process_resumes(tmp_path, capsys, one_thread):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "models.distributed", "--quick"]
    run = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = LINE.findall(run.stdout)
    assert [int(s) for s, *_ in lines] == [5, 10, 15, 20]  # rank 0 alone prints
    assert all(r == "2" and b == str(distributed.QUICK.batch) and math.isfinite(float(v)) for _, r, b, v in lines)
    assert load_checkpoint(tmp_path / "glow.pt")["step"] == 20

    history = distributed.main(["--quick", "--steps", "30", "--out", str(tmp_path)])
    assert [s for s, _ in history][-2:] == [24, 29]  # the 2-rank history, continued
    resumed = LINE.findall(capsys.readouterr().out)
    assert [(int(s), r) for s, r, *_ in resumed] == [(25, "1"), (30, "1")]
    assert load_checkpoint(tmp_path / "glow.pt")["step"] == 30


@pytest.mark.parametrize("flow", [f for f in distributed.FLOWS if f != "glow"])
def test_every_flow_trains_in_one_process(flow, tmp_path, one_thread):
    history = distributed.main(["--quick", "--flow", flow, "--steps", "10", "--out", str(tmp_path)])
    losses = torch.tensor([v for _, v in history])
    assert torch.isfinite(losses).all() and losses[-1] < losses[0]
    assert load_checkpoint(tmp_path / f"{flow}.pt")["step"] == 10
