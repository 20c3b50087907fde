"""The fit loop: exact resume after SIGKILL (plain torch, Pyro SVI with pyro.module flows and
autoguides), checkpoints that cannot run code and refuse damage, blow-ups that never replace the
last good checkpoint, one writer per path, and argument checks."""

import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pyroflows.infer import fit, fit_svi, load_checkpoint, save_checkpoint
from pyroflows.infer.fit import rng_state, set_rng_state

sys.path.insert(0, str(Path(__file__).parent))
import resume_worker  # noqa: E402

WORKER = Path(__file__).parent / "resume_worker.py"


def _child(kind, num_steps, checkpoint, out):
    args = [sys.executable, str(WORKER), kind, str(num_steps), str(checkpoint), str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def _forked_run(kind, num_steps, checkpoint, kill_at=None, out=None):
    """Exit code of a forked copy of this process that trains ``kind`` with ``checkpoint`` (and,
    with ``kill_at``, sends itself SIGKILL when that step starts; else saves the result to ``out``).
    A fork skips the import of torch that a fresh interpreter pays."""

    def target():
        torch.set_num_threads(1)
        result = resume_worker.run(kind, num_steps, checkpoint, kill_at)
        torch.save(result, out)

    child = multiprocessing.get_context("fork").Process(target=target)
    child.start()
    child.join(timeout=120)
    return child.exitcode


@pytest.mark.parametrize("kind", resume_worker.KINDS)
def test_sigkill_and_resume_reproduce_the_uninterrupted_run_bit_for_bit(kind, tmp_path, one_thread):
    num_steps = 14
    # kill points between checkpoints (every 3 steps) and on one; the first kind is killed twice, so
    # that a resumed run is itself killed and resumed. Its final resume is a fresh interpreter, so
    # that nothing but the checkpoint can carry over; the other kinds resume in a fork, which
    # clears the param store and reseeds before it reads the checkpoint, as the fresh one does.
    kills = [(4, 10), (6,), (11,), (12,)][resume_worker.KINDS.index(kind) % 4]
    a = resume_worker.run(kind, num_steps)  # uninterrupted, in this process (one thread, as the children)
    ckpt = tmp_path / "run.pt"
    for k in kills:
        assert _forked_run(kind, num_steps, ckpt, kill_at=k) == -9  # SIGKILL
    start = load_checkpoint(ckpt)["step"]
    assert 0 < start < num_steps
    if kind == resume_worker.KINDS[0]:
        resumed = _child(kind, num_steps, ckpt, tmp_path / "resumed.out")
        assert resumed.returncode == 0, resumed.stderr
    else:
        assert _forked_run(kind, num_steps, ckpt, out=tmp_path / "resumed.out") == 0
    b = torch.load(tmp_path / "resumed.out", weights_only=True)
    assert a["params"].keys() == b["params"].keys() and a["params"]
    for name in a["params"]:
        assert torch.equal(a["params"][name], b["params"][name]), f"{kind}: {name} differs after resuming"
    assert a["loss"] == b["loss"]
    # the resumed run took up where the checkpoint left off (a run from scratch would match too);
    # fit_svi asks for step 0's data once before training
    assert b["steps_run"] in (list(range(start, num_steps)), [0, *range(start, num_steps)]), b["steps_run"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.lock"))


def test_resumed_svi_trains_the_pyro_module_flow(tmp_path, one_thread):
    # restoring the param store once put copies of the flow's parameters in it: the optimiser
    # stepped the copies while the flow computed with its own, which never moved again
    ckpt = tmp_path / "run.pt"
    resume_worker.run("pyro_module_guide", 6, ckpt)
    before = {k: v.clone() for k, v in pyro.get_param_store().named_parameters() if "$$$" in k}
    resume_worker.run("pyro_module_guide", 12, ckpt)
    after = dict(pyro.get_param_store().named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) == len(before) > 0


def test_a_module_parameter_without_its_module_is_refused_before_training_is_lost(tmp_path):
    flow = torch.nn.Linear(2, 2)
    pyro.clear_param_store()

    def step(i):
        pyro.module("flow", flow)
        return 0.0

    with pytest.raises(ValueError, match=r"pyro.module parameters \['flow\$\$\$weight'.*pass the module in `state`"):
        fit(step, 4, {"params": pyro.get_param_store()}, checkpoint=tmp_path / "c.pt", checkpoint_every=2, progress=False)


def _blowing_up(blow_at):
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(i):
        opt.zero_grad()
        loss = net(torch.ones(4, 2)).pow(2).mean()
        loss.backward()
        opt.step()
        if i == blow_at:  # the update of this step makes a parameter infinite; its loss was finite
            with torch.no_grad():
                net.weight.fill_(-float("inf"))
        return loss

    return net, opt, step


def test_a_blow_up_never_replaces_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    net, opt, step = _blowing_up(blow_at=19)  # the update of the last step before the save at 20
    with pytest.raises(FloatingPointError, match=r"after step 19, non-finite values in \[\"state\['net'\]\['weight'\]\"") as err:
        fit(step, 40, {"net": net, "opt": opt}, checkpoint=ckpt, checkpoint_every=10, log_every=10, progress=False)
    assert "keeps the last finite state" in str(err.value)
    payload = load_checkpoint(ckpt)
    assert payload["step"] == 10 and torch.isfinite(payload["state"]["net"]["weight"]).all()


def test_non_finite_optimiser_state_is_caught_before_a_save(tmp_path):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)

    def step(i):
        opt.zero_grad()
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
        if i == 3:
            next(iter(opt.state.values()))["exp_avg_sq"].fill_(float("inf"))
        return 0.0

    with pytest.raises(FloatingPointError, match=r"state\['opt'\]\['state'\]\[0\]\['exp_avg_sq'\]"):
        fit(step, 10, {"net": net, "opt": opt}, checkpoint=tmp_path / "c.pt", checkpoint_every=2, progress=False)
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 2


def test_a_nan_loss_names_its_own_step_and_the_non_finite_parameters():
    net = torch.nn.Linear(2, 1)

    def step(i):
        if i == 4:
            with torch.no_grad():
                net.weight.fill_(float("nan"))
        return net(torch.ones(1, 2)).sum()

    with pytest.raises(FloatingPointError, match=r"loss became nan at step 4; non-finite values in \[\"state\['net'\]\['weight'\]\"\]"):
        fit(step, 10, {"net": net}, progress=False, log_every=8)  # step 4 is read back with step 7


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PYROFLOWS_MARKER"]),))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("PYROFLOWS_MARKER", str(marker))
    ckpt = tmp_path / "c.pt"
    with open(ckpt, "wb") as f:
        pickle.dump({"format": ["pyroflows.fit", 2], "payload": _Payload()}, f)
    torch.save({"format": ["pyroflows.fit", 2], "checksum": "", "payload": {"x": _Payload()}}, ckpt)
    net = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt}: cannot be read"):
        fit(lambda i: 0.0, 3, {"net": net}, checkpoint=ckpt, progress=False)
    assert not marker.exists()


def _finished(tmp_path, steps=4):
    ckpt = tmp_path / "c.pt"
    net, opt, step = _blowing_up(blow_at=None)
    fit(step, steps, {"net": net, "opt": opt}, checkpoint=ckpt, progress=False)
    return ckpt, net, opt, step


def test_a_damaged_checkpoint_is_refused_with_its_path(tmp_path):
    ckpt, net, opt, step = _finished(tmp_path)
    data = bytearray(ckpt.read_bytes())
    w = net.weight.detach().clone().reshape(-1).view(torch.uint8).numpy().tobytes()
    at = bytes(data).find(w)
    assert at > 0  # flip 8 bytes inside the saved weight tensor
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt}: its content does not match its checksum"):
        fit(step, 8, {"net": net, "opt": opt}, checkpoint=ckpt, progress=False)
    ckpt.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt}: cannot be read"):
        fit(step, 8, {"net": net, "opt": opt}, checkpoint=ckpt, progress=False)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt, net, opt, step = _finished(tmp_path)
    with pytest.raises(ValueError, match=r"written by a different run \(state entry 'net'"):
        fit(step, 8, {"net": torch.nn.Linear(3, 1), "opt": opt}, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"written by a different run \(config \{'lr': 0.2\} \(checkpoint\)"):
        fit(step, 8, {"net": net, "opt": opt}, checkpoint=tmp_path / "d.pt", progress=False, config={"lr": 0.2})
        fit(step, 9, {"net": net, "opt": opt}, checkpoint=tmp_path / "d.pt", progress=False, config={"lr": 0.3})
    with pytest.raises(ValueError, match=r"at step 4, beyond num_steps=3"):
        fit(step, 3, {"net": net, "opt": opt}, checkpoint=ckpt, progress=False)


def test_a_second_writer_is_refused_and_orphan_temporary_files_are_removed(tmp_path):
    ckpt = tmp_path / "c.pt"
    (tmp_path / "c.pt.abc123.tmp").write_bytes(b"left by a killed writer")
    (tmp_path / "other.pt.abc123.tmp").write_bytes(b"not ours")
    seen = []

    def step(i):
        if i == 1:
            with pytest.raises(RuntimeError, match=rf"another process is writing {ckpt}"):
                fit(lambda j: 0.0, 2, {}, checkpoint=ckpt, progress=False)
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return 0.0

    fit(step, 3, {}, checkpoint=ckpt, progress=False)
    assert seen == [["c.pt.lock", "other.pt.abc123.tmp"]]  # the orphan is gone, the lock held
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "other.pt.abc123.tmp"]


def test_checkpoints_load_with_weights_only_and_hold_the_random_states(tmp_path):
    ckpt, *_ = _finished(tmp_path)
    blob = torch.load(ckpt, weights_only=True)
    assert blob["payload"]["step"] == 4
    state = rng_state()
    a = torch.rand(3)
    set_rng_state(state)
    assert torch.equal(a, torch.rand(3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": -1}, r"num_steps: expected an integer >= 0, got -1"),
        ({"checkpoint_every": 0}, r"checkpoint_every: expected an integer >= 1, got 0"),
        ({"log_every": 2.5}, r"log_every: expected an integer >= 1, got 2.5"),
        ({"step": 3}, r"step: expected a callable"),
        ({"config": {"f": len}}, r"config\['f'\]: checkpoints hold tensors and plain data"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"step": lambda i: 0.0, "num_steps": 3, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        fit(progress=False, **args)


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_fit_svi_rejects_what_is_not_svi():
    with pytest.raises(TypeError, match=r"svi: expected a pyro.infer.SVI, got function"):
        fit_svi(lambda: None, 3)
