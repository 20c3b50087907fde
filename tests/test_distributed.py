"""Data-parallel training: 2 gloo ranks at global batch B follow one process at batch B (a coupling
flow with a torch optimiser, a Pyro model with a flow guide under SVI), a checkpoint written by 2
ranks resumes on 1 rank and on 2 ranks to the same parameters, and the sharding and per-rank
random streams behave."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist

from pyroflows.infer import fit
from pyroflows.infer.distributed import ShardedBatches, average_gradients, init_distributed, rank_random

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker  # noqa: E402

WORKER = Path(__file__).parent / "distributed_worker.py"
TOLERANCE = 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The worker's runs on 2 gloo ranks (two processes with torchrun's environment)."""
    out = tmp_path_factory.mktemp("ddp")
    root = str(WORKER.parent.parent)
    common = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    common.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out)],
            env=dict(common, RANK=str(r), LOCAL_RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    return out


def _assert_close(a: dict, b: dict, what: str) -> None:
    assert a["params"].keys() == b["params"].keys() and a["params"], what
    for name in a["params"]:
        diff = (a["params"][name] - b["params"][name]).abs().max().item()
        assert diff < TOLERANCE, f"{what}: {name} differs by {diff}"
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6), what


@pytest.mark.parametrize("kind", distributed_worker.KINDS)
def test_two_ranks_follow_one_process_at_the_same_global_batch(kind, two_ranks, one_thread):
    single = distributed_worker.run(kind, 20)
    ddp = torch.load(two_ranks / f"{kind}.pt", weights_only=True)
    _assert_close(ddp, single, f"{kind}: 2 ranks vs 1 process")
    # the parameters moved: the comparison is not between two untrained flows
    fresh = distributed_worker.run(kind, 0)
    assert max((single["params"][k] - fresh["params"][k]).abs().max().item() for k in fresh["params"]) > 1e-2


@pytest.mark.parametrize("kind", distributed_worker.KINDS)
def test_a_two_rank_checkpoint_resumes_on_one_rank_and_on_two(kind, two_ranks, tmp_path, one_thread):
    single = distributed_worker.run(kind, 20)
    checkpoint = tmp_path / "run.pt"
    shutil.copy(two_ranks / f"{kind}_10.pt", checkpoint)
    resumed_on_one = distributed_worker.run(kind, 20, checkpoint)
    _assert_close(resumed_on_one, single, f"{kind}: step 10 on 2 ranks, resumed on 1")
    _assert_close(torch.load(two_ranks / f"{kind}_resumed.pt", weights_only=True), single, f"{kind}: resumed on 2 ranks")
    assert not list(two_ranks.glob("*.tmp")) and not list(two_ranks.glob("*.lock"))


def test_sharded_batches_split_the_global_batch_whatever_the_number_of_ranks():
    batches = ShardedBatches(num_examples=30, batch_size=12, seed=3)
    for step in (0, 1, 2, 7):
        whole = batches(step)
        assert len(whole) == 12 and len(set(whole.tolist())) == 12
        for world in (2, 3, 4):
            parts = [batches(step, rank=r, world_size=world) for r in range(world)]
            assert torch.equal(torch.cat(parts), whole)
    # an epoch (2 batches of 12 out of 30) visits distinct examples; epochs are reshuffled
    epoch = torch.cat([batches(0), batches(1)])
    assert len(set(epoch.tolist())) == 24
    assert not torch.equal(batches(0), batches(2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_examples": 0, "batch_size": 1}, "num_examples"),
        ({"num_examples": 5, "batch_size": 6}, "batch_size"),
        ({"num_examples": 5, "batch_size": 2, "seed": -1}, "seed"),
    ],
)
def test_sharded_batches_name_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShardedBatches(**kwargs)


def test_a_global_batch_that_the_ranks_cannot_share_is_refused():
    with pytest.raises(ValueError, match="batch_size: the global batch 10 must be divisible by the number of ranks, got 3"):
        ShardedBatches(20, 10)(0, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatches(20, 10)(0, rank=2, world_size=2)


def test_rank_random_is_repeatable_per_step_and_leaves_the_shared_stream_alone():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with rank_random(step=4, seed=1):
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with rank_random(step=4, seed=1):
        assert torch.equal(torch.rand(3), a)
    with rank_random(step=5, seed=1):
        assert not torch.equal(torch.rand(3), a)


def test_one_process_is_untouched_by_the_distributed_helpers():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    average_gradients([p])
    assert torch.equal(p.grad, torch.full((2,), 3.0))
    assert init_distributed("cpu") == torch.device("cpu") or dist.is_initialized()
    with pytest.raises(ValueError, match="distributed: True needs an initialised"):
        fit(lambda i: 0.0, 1, distributed=True, progress=False)
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda', got 'meta'"):
        init_distributed("meta")


def test_a_pyro_optimiser_in_the_plain_loop_is_refused_under_a_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match=r"state: the Pyro optimiser\(s\) \['optim'\]"):
            fit(lambda i: 0.0, 1, {"optim": pyro.optim.Adam({"lr": 0.1})}, progress=False)
    finally:
        dist.destroy_process_group()


def test_the_worker_leaves_the_default_dtype_as_it_found_it():
    before = torch.get_default_dtype()
    distributed_worker.run("coupling", 1)
    assert torch.get_default_dtype() == before
