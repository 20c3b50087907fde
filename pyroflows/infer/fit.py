"""A small training loop: progress bar, loss history, NaN reports and atomic, resumable checkpoints.

:func:`fit` runs any step function; :func:`fit_svi` runs a Pyro ``SVI`` object and resumes it
exactly. A checkpoint holds tensors and plain data only (random states included, as tensors), so
it loads with ``torch.load(weights_only=True)`` and cannot run code; it carries a checksum of its
content, which is verified on load, and a description of the run that wrote it, which must match
the run that resumes from it. It is written to a temporary file, flushed to disk and renamed over
the previous one, and only once every parameter and optimiser state is finite: a blow-up never
replaces the last good checkpoint. While a run writes a checkpoint path, a lock file next to it
keeps a second run from writing the same path.

Under ``torch.distributed`` (a process group initialised, e.g. by ``torchrun``), :func:`fit` trains
data-parallel (:mod:`pyroflows.infer.distributed`): every rank starts from rank 0's state and random
stream, gradients are averaged over the ranks before each optimiser step, logged losses are the
ranks' mean, rank 0 alone writes checkpoints and shows the progress bar, and a checkpoint resumes
with any number of ranks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.poutine as poutine
import torch
import torch.distributed as dist
from pyro.infer.util import zero_grads
from pyro.params.param_store import ParamStoreDict
from torch.distributions import constraints as torch_constraints
from tqdm.auto import tqdm

from .distributed import average_gradients, average_losses, collective_device, is_distributed, rank, world_size

#: Version of the checkpoint layout written by :func:`fit`.
CHECKPOINT_FORMAT = ("pyroflows.fit", 2)

#: Separator Pyro puts between a ``pyro.module`` name and the parameter's path in the param store.
_MODULE_SEPARATOR = "$$$"


# ----------------------------------------------------------------------------- files


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file in ``path``'s folder, flushed to disk, then an atomic rename
    to ``path``: a reader never sees a half-written file, a failed write leaves ``path`` as it was,
    and the temporary file is removed whatever happens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """``torch.save(payload)`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """Hold ``path.lock`` exclusively while a run writes ``path``; the lock dies with the process."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(
                f"checkpoint: another process is writing {path} (it holds {lock}); give each run its own checkpoint path"
            ) from None
        for orphan in path.parent.glob(path.name + ".*.tmp"):  # left by a writer that was killed
            with contextlib.suppress(OSError):
                orphan.unlink()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- plain data and digests


def _check_plain(value: object, where: str) -> None:
    """Raise naming the place of anything a ``weights_only`` load would refuse."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype, torch.Size)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: checkpoints hold str or int keys only, got a key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where}: checkpoints hold tensors and plain data (numbers, strings, lists, dicts) only, got {type(value).__name__}")


def _digest(value: object, h: hashlib._Hash) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=repr):
            h.update(repr(k).encode())
            _digest(value[k], h)
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _digest(v, h)
    else:
        h.update(f"V{value!r}".encode())


def content_digest(value: object) -> str:
    """SHA-256 of a nest of tensors and plain data (tensors by dtype, shape and bytes)."""
    h = hashlib.sha256()
    _digest(value, h)
    return h.hexdigest()


def _non_finite(value: object, where: str) -> list[str]:
    """Places of floating-point tensors holding NaN or inf (one host sync per tensor)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and value.device.type != "meta" and not bool(torch.isfinite(value).all()):
            return [where]
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{where}[{k!r}]")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    return []


# ----------------------------------------------------------------------------- random states


def rng_state() -> dict:
    """The states of torch's, CUDA's, numpy's and Python's global generators, as tensors."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- Pyro's param store


def _named_constraints() -> dict:
    named = {}
    import pyro.distributions.constraints as pyro_constraints

    for module in (torch_constraints, pyro_constraints):
        for name in dir(module):
            value = getattr(module, name)
            if isinstance(value, torch_constraints.Constraint) and not name.startswith("_"):
                named.setdefault(type(value), (name, value))
    return named


def _encode_constraint(c: torch_constraints.Constraint, where: str) -> list[object]:
    if isinstance(c, torch_constraints.independent):
        return ["independent", _encode_constraint(c.base_constraint, where), int(c.reinterpreted_batch_ndims)]
    bounds = {
        torch_constraints.interval: ("interval", "lower_bound", "upper_bound"),
        torch_constraints.half_open_interval: ("half_open_interval", "lower_bound", "upper_bound"),
        torch_constraints.greater_than: ("greater_than", "lower_bound"),
        torch_constraints.greater_than_eq: ("greater_than_eq", "lower_bound"),
        torch_constraints.less_than: ("less_than", "upper_bound"),
    }
    if type(c) in bounds:
        name, *attrs = bounds[type(c)]
        return [name] + [getattr(c, a) for a in attrs]
    named = _named_constraints().get(type(c))
    if named is None:
        raise TypeError(f"{where}: cannot save the constraint {c!r} of this Pyro param in a checkpoint")
    return [named[0]]


def _decode_constraint(code: Sequence[object]) -> torch_constraints.Constraint:
    import pyro.distributions.constraints as pyro_constraints

    name, *args = code
    if name == "independent":
        return torch_constraints.independent(_decode_constraint(args[0]), args[1])
    factory = getattr(torch_constraints, name, None) or getattr(pyro_constraints, name)
    return factory(*args) if args else factory


def _module_parameters(state: Mapping[str, object]) -> dict:
    """``id(parameter) -> (state entry, parameter path)`` for the modules in ``state``."""
    out = {}
    for key, obj in state.items():
        if isinstance(obj, torch.nn.Module):
            for path, p in obj.named_parameters():
                out.setdefault(id(p), (key, path))
    return out


def _param_store_state(store: ParamStoreDict, where: str, state: Mapping[str, object]) -> dict:
    owners = _module_parameters(state)
    constraints = store.get_state()["constraints"]
    params, codes, owned = {}, {}, {}
    for name, value in store.named_parameters():
        params[name] = value.detach().clone()
        codes[name] = _encode_constraint(constraints.get(name, torch_constraints.real), f"{where}[{name!r}]")
        if id(value) in owners:
            owned[name] = list(owners[id(value)])
    return {"params": params, "constraints": codes, "owners": owned}


def _load_param_store(store: ParamStoreDict, saved: dict, where: str, state: Mapping[str, object]) -> None:
    """Restore the store so that every parameter a module computes with is the one the optimiser steps.

    A parameter of a module registered with ``pyro.module`` is the module's own tensor in the store;
    a resumed run must keep it so (Pyro's ``set_state`` would put a copy there, which the optimiser
    would then step while the module computes with the untouched original). Entries owned by a module
    in ``state`` get that module's (already restored) tensor; entries already in the store are
    overwritten in place; the rest are added.
    """
    current = dict(store.named_parameters())
    new_params, new_codes = {}, {}
    for name, value in saved["params"].items():
        owner = saved["owners"].get(name)
        if owner is not None and owner[0] in state:
            param = state[owner[0]].get_parameter(owner[1])
            new_params[name] = param
        elif name in current:
            if current[name].shape != value.shape:
                raise ValueError(
                    f"{where}[{name!r}]: the checkpoint holds shape {tuple(value.shape)}, the param store {tuple(current[name].shape)}"
                )
            with torch.no_grad():
                current[name].copy_(value)
            continue
        elif _MODULE_SEPARATOR in name:
            raise ValueError(
                f"{where}[{name!r}]: a pyro.module parameter that no module in `state` owns and that the param store does "
                f"not hold yet; pass the module in `state` (or use fit_svi), so that the resumed run trains it"
            )
        else:
            new_params[name] = value.requires_grad_()
        new_codes[name] = saved["constraints"][name]
    store.set_state({"params": new_params, "constraints": {k: _decode_constraint(v) for k, v in new_codes.items()}})


# ----------------------------------------------------------------------------- state objects


class RegisteredParamStore:
    """Pyro's param store in a run that registers every module before it restores a checkpoint (as
    :func:`fit_svi` does): module parameters are then in the store, restored in place."""

    def __init__(self, store: ParamStoreDict) -> None:
        self.store = store


def _is_store(obj: object) -> bool:
    return isinstance(obj, (ParamStoreDict, RegisteredParamStore))


def _state_of(obj: object, where: str, state: Mapping[str, object]) -> dict | torch.Tensor:
    if _is_store(obj):
        return _param_store_state(getattr(obj, "store", obj), where, state)
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if hasattr(obj, "get_state"):  # torch.Generator, pyro.optim.PyroOptim
        return obj.get_state()
    raise TypeError(f"{where}: cannot save an object of type {type(obj).__name__} (it needs state_dict or get_state)")


def _load_into(obj: object, saved: dict | torch.Tensor, where: str, state: Mapping[str, object]) -> None:
    if _is_store(obj):
        _load_param_store(getattr(obj, "store", obj), saved, where, state)
    elif hasattr(obj, "load_state_dict"):
        obj.load_state_dict(saved)
    else:
        obj.set_state(saved)


def _unowned_module_params(state: Mapping[str, object], saved: Mapping[str, object]) -> list[str]:
    out = []
    for key, obj in state.items():
        if isinstance(obj, ParamStoreDict):
            owned = saved[key]["owners"]
            out += [name for name in saved[key]["params"] if _MODULE_SEPARATOR in name and name not in owned]
    return out


def _describe(obj: object) -> object:
    """What must match between the run that wrote a checkpoint and the run that resumes from it."""
    if isinstance(obj, torch.nn.Module):
        return {k: [str(v.dtype), list(v.shape)] for k, v in obj.state_dict().items() if isinstance(v, torch.Tensor)}
    return type(obj).__name__


def _run_identity(state: Mapping[str, object], config: object) -> dict:
    return {"state": {k: _describe(v) for k, v in state.items()}, "config": config}


def _identity_mismatch(saved: dict, current: dict) -> str:
    lines = []
    if saved["config"] != current["config"]:
        lines.append(f"config {saved['config']!r} (checkpoint) vs {current['config']!r} (this run)")
    for key in sorted(set(saved["state"]) | set(current["state"])):
        a, b = saved["state"].get(key), current["state"].get(key)
        if a != b:
            lines.append(f"state entry {key!r}: {_summary(a)} (checkpoint) vs {_summary(b)} (this run)")
    return "; ".join(lines)


def _summary(description: object) -> str:
    if description is None:
        return "absent"
    if isinstance(description, dict):
        return f"a module with {len(description)} tensors"
    return str(description)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and verify a checkpoint written by :func:`fit`; returns its payload.

    Raises ``ValueError`` naming the path when the file is not a readable checkpoint, was written
    in another layout, or its content does not match its checksum (a damaged file).
    """
    path = Path(path)
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise ValueError(f"checkpoint {path}: cannot be read as a pyroflows checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(blob, dict) or tuple(blob.get("format", ())) != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path}: not a checkpoint of pyroflows.infer.fit (format {CHECKPOINT_FORMAT})")
    if content_digest(blob["payload"]) != blob["checksum"]:
        raise ValueError(f"checkpoint {path}: its content does not match its checksum; the file is damaged")
    return blob["payload"]


# ----------------------------------------------------------------------------- the loop


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def fit(
    step: Callable[[int], float | torch.Tensor],
    num_steps: int,
    state: Mapping[str, object] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    log_every: int = 10,
    progress: bool = True,
    desc: str = "fit",
    check_finite: bool = True,
    config: object = None,
    distributed: bool | None = None,
    on_log: Callable[[int, float], None] | None = None,
) -> pd.DataFrame:
    """Run ``step(i)`` for ``i`` in ``range(num_steps)`` and return the loss history.

    Args:
        step: one optimisation step; returns the loss (a float or a scalar tensor).
        num_steps: total number of steps, counted across resumed runs.
        state: named objects whose state a resumed run needs: modules and optimisers
            (``state_dict`` / ``load_state_dict``), Pyro's param store, Pyro optimisers and
            ``torch.Generator`` s (``get_state`` / ``set_state``). Pyro's param store is restored so
            that the parameters of modules registered with ``pyro.module`` stay the modules' own
            tensors: put those modules in ``state`` too (or use :func:`fit_svi`).
        checkpoint: file path. If it exists, training resumes from it (objects, random states,
            history, step); it is rewritten atomically every ``checkpoint_every`` steps and at the end.
        log_every: how often the loss is read back to the host (a device sync) and recorded.
        check_finite: raise ``FloatingPointError`` naming the step when a loss is NaN or inf, and,
            before every checkpoint, naming any state entry that holds NaN or inf.
        config: plain data describing the run (settings, data); a checkpoint written under another
            ``config``, or with other state entries or shapes, is refused.
        distributed: train data-parallel over the ranks of the ``torch.distributed`` process group
            (None: whenever one is initialised). Every rank starts from rank 0's state (read from
            the checkpoint, or as it is) and random stream; each torch optimiser in ``state``
            averages the gradients over the ranks before its step (do not also wrap the modules in
            ``DistributedDataParallel``); logged losses are the ranks' mean; rank 0 alone writes the
            checkpoint and shows the progress bar. ``step`` computes this rank's loss on its shard
            (:class:`~pyroflows.infer.distributed.ShardedBatches`). A Pyro optimiser needs
            :func:`fit_svi`, which averages the gradients of every Pyro param.
        on_log: called as ``on_log(step, loss)`` on every rank each time a loss is recorded.

    Returns:
        ``pandas.DataFrame`` with columns ``step`` and ``loss``.

    Example::

        >>> net = torch.nn.Linear(1, 1)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> def step(i):
        ...     opt.zero_grad(); loss = (net(torch.ones(1, 1)) - 2).pow(2).mean(); loss.backward(); opt.step()
        ...     return loss
        >>> hist = fit(step, 50, {"net": net, "opt": opt}, progress=False)
        >>> bool(hist.loss.iloc[-1] < 1e-3)
        True
    """
    if not callable(step):
        raise TypeError(f"step: expected a callable step(i) -> loss, got {type(step).__name__}")
    num_steps = _check_count("num_steps", num_steps, 0)
    checkpoint_every = _check_count("checkpoint_every", checkpoint_every, 1)
    log_every = _check_count("log_every", log_every, 1)
    if on_log is not None and not callable(on_log):
        raise TypeError(f"on_log: expected a callable on_log(step, loss) or None, got {type(on_log).__name__}")
    state = dict(state or {})
    if config is not None:
        _check_plain(config, "config")
    if distributed is None:
        distributed = is_distributed()
    elif not isinstance(distributed, bool):
        raise TypeError(f"distributed: expected True, False or None, got {distributed!r}")
    elif distributed and not is_distributed():
        raise ValueError("distributed: True needs an initialised torch.distributed process group (launch with torchrun), got none")
    if distributed and not isinstance(step, SVIStep):
        pyro_optims = [k for k, v in state.items() if isinstance(v, pyro.optim.PyroOptim)]
        if pyro_optims:
            raise ValueError(
                f"state: the Pyro optimiser(s) {pyro_optims} cannot average gradients over the ranks inside fit; "
                f"use fit_svi, or a torch optimiser, for data-parallel training"
            )
    lead = not distributed or rank() == 0
    hooks = []
    if distributed:
        for obj in state.values():
            if isinstance(obj, torch.optim.Optimizer):
                hooks.append(obj.register_step_pre_hook(_average_before_step))
    try:
        path = None if checkpoint is None else Path(checkpoint)
        args = (step, num_steps, state, path, checkpoint_every, log_every, progress, desc, check_finite, config, distributed, on_log)
        if path is None or not lead:  # only rank 0 writes, so only rank 0 takes the lock
            return _loop(*args)
        with _writer_lock(path):
            return _loop(*args)
    finally:
        for handle in hooks:
            handle.remove()


def _average_before_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    average_gradients(p for group in optimizer.param_groups for p in group["params"])


def _read_start(checkpoint: Path | None, identity: dict, num_steps: int) -> dict | None:
    """The verified payload of ``checkpoint``, or None when there is none to resume from."""
    if checkpoint is None or not checkpoint.exists():
        return None
    payload = load_checkpoint(checkpoint)
    mismatch = _identity_mismatch(payload["identity"], identity)
    if mismatch:
        raise ValueError(f"checkpoint {checkpoint}: written by a different run ({mismatch}); delete it or use another path")
    if payload["step"] > num_steps:
        raise ValueError(f"checkpoint {checkpoint}: it is at step {payload['step']}, beyond num_steps={num_steps}")
    return payload


def _start_payload(checkpoint: Path | None, state: dict[str, object], identity: dict, num_steps: int, distributed: bool) -> dict | None:
    """What this rank resumes from: rank 0 reads the checkpoint; with several ranks, rank 0 sends
    its payload (the checkpoint's, or its own state and random state for a fresh run) and any error
    to every rank, so that all start from the same parameters and random stream."""
    if not distributed or world_size() == 1:
        return _read_start(checkpoint, identity, num_steps)
    box: list[object] = [None, None]
    if rank() == 0:
        try:
            payload = _read_start(checkpoint, identity, num_steps)
            if payload is None:
                saved = {k: _state_of(v, f"state[{k!r}]", state) for k, v in state.items()}
                payload = {"state": saved, "step": 0, "history": [], "rng": rng_state(), "fresh": True}
            box = [payload, None]
        except ValueError as e:
            box = [None, str(e)]
    dist.broadcast_object_list(box, src=0, device=collective_device())
    payload, message = box
    if message is not None:
        raise ValueError(message)
    if rank() == 0 and payload.get("fresh"):
        return None  # rank 0's own state: nothing to load
    return payload


def _loop(
    step: Callable[[int], float | torch.Tensor],
    num_steps: int,
    state: dict[str, object],
    checkpoint: Path | None,
    checkpoint_every: int,
    log_every: int,
    progress: bool,
    desc: str,
    check_finite: bool,
    config: object,
    distributed: bool,
    on_log: Callable[[int, float], None] | None,
) -> pd.DataFrame:
    identity = _run_identity(state, config)
    lead = not distributed or rank() == 0
    start, history = 0, []
    payload = _start_payload(checkpoint, state, identity, num_steps, distributed)
    if payload is not None:
        for name, obj in sorted(state.items(), key=lambda kv: _is_store(kv[1])):  # the store last: it takes the modules' tensors
            _load_into(obj, payload["state"][name], f"state[{name!r}]", state)
        start, history = payload["step"], [tuple(row) for row in payload["history"]]
        set_rng_state(payload["rng"])

    def save(done: int) -> None:
        saved = {k: _state_of(v, f"state[{k!r}]", state) for k, v in state.items()}
        unowned = _unowned_module_params(state, saved)
        if unowned:
            raise ValueError(
                f"state: Pyro's param store holds pyro.module parameters {unowned[:3]} whose module is not in `state`; "
                f"a resumed run could not train them: pass the module in `state` (or use fit_svi)"
            )
        if check_finite:  # on every rank: the ranks hold the same state, so all raise together
            bad = _non_finite_state(state, saved)
            if bad:
                raise FloatingPointError(
                    f"fit: after step {done - 1}, non-finite values in {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
                    f"the checkpoint {checkpoint} keeps the last finite state"
                )
        if not lead:
            return
        payload = {"state": saved, "step": done, "history": [list(r) for r in history], "rng": rng_state(), "identity": identity}
        _check_plain(payload, "checkpoint")
        blob = {"format": list(CHECKPOINT_FORMAT), "checksum": content_digest(payload), "payload": payload}
        buf = io.BytesIO()
        torch.save(blob, buf)
        atomic_write(checkpoint, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))

    saving = checkpoint is not None  # every rank checks the state at the same steps; rank 0 writes
    pending: list[tuple[int, object]] = []  # losses since the last log, read back together
    hide = True if not progress or not lead else None  # None: tqdm hides itself off a terminal
    bar = tqdm(range(start, num_steps), desc=desc, disable=hide, initial=start, total=num_steps, leave=False)
    for i in bar:
        loss = step(i)
        pending.append((i, loss.detach() if isinstance(loss, torch.Tensor) else loss))
        if (i + 1) % log_every == 0 or i + 1 == num_steps:
            values = _read_losses(pending, distributed)
            pending.clear()
            if check_finite:
                for j, value in values:
                    if not math.isfinite(value):
                        bad = _non_finite_state(state)
                        where = f"; non-finite values in {bad[:5]}{' ...' if len(bad) > 5 else ''}" if bad else ""
                        raise FloatingPointError(f"fit: the loss became {value} at step {j}{where}")
            history.append(values[-1])
            bar.set_postfix(loss=f"{values[-1][1]:.4g}")
            if on_log is not None:
                on_log(*values[-1])
        if saving and (i + 1) % checkpoint_every == 0:
            save(i + 1)
    if saving and start < num_steps:
        save(num_steps)
    if distributed and world_size() > 1:
        dist.barrier()  # every rank returns once rank 0 has written the final checkpoint
    return pd.DataFrame(history, columns=["step", "loss"])


def _non_finite_state(state: Mapping[str, object], saved: Mapping[str, object] | None = None) -> list[str]:
    """Places in ``state`` (parameters, buffers, optimiser moments, the param store) holding NaN or inf."""
    if saved is None:
        saved = {k: _state_of(v, f"state[{k!r}]", state) for k, v in state.items()}
    return [p for k, v in saved.items() for p in _non_finite(v, f"state[{k!r}]")]


def _read_losses(pending: list[tuple[int, object]], distributed: bool = False) -> list[tuple[int, float]]:
    """The pending losses as floats, in one read-back; under ``distributed``, the ranks' means."""
    if distributed:
        device = collective_device()
        stacked = torch.stack([torch.as_tensor(v).detach().reshape(()).to(device, torch.float64) for _, v in pending])
        return list(zip([i for i, _ in pending], average_losses(stacked).tolist(), strict=True))
    tensors = [v for _, v in pending if isinstance(v, torch.Tensor)]
    host = iter(torch.stack([t.reshape(()).float() for t in tensors]).tolist()) if tensors else iter(())
    return [(i, next(host) if isinstance(v, torch.Tensor) else float(v)) for i, v in pending]


# ----------------------------------------------------------------------------- SVI


def register_parameters(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> None:
    """Run ``guide`` and ``model`` once, hidden from any handler, so that every ``pyro.module`` and
    ``pyro.param`` they use is in the param store, and autoguides have built themselves."""
    with poutine.block():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
        poutine.replay(model, trace=trace)(*args, **kwargs)


def fit_svi(
    svi: pyro.infer.SVI,
    num_steps: int,
    data: tuple | Callable[[int], tuple] = (),
    state: Mapping[str, object] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run ``svi.step`` with :func:`fit`, and resume it exactly from a checkpoint.

    Before the first step, the guide and the model run once (:func:`register_parameters`): every
    ``pyro.module`` registers its parameters and autoguides build themselves, in a fresh run as in
    a resumed one, so that the random draws of that set-up happen before the random state is
    restored. Then the param store (the modules' parameters restored in place) and the optimiser's
    state join ``state``, and a resumed run continues the uninterrupted run's trajectory bit for bit.

    Args:
        svi: a ``pyro.infer.SVI``.
        num_steps: total number of steps, counted across resumed runs.
        data: the arguments of the model and guide, or ``data(i) -> arguments`` of step ``i``
            (minibatches); a ``torch.Generator`` it draws from belongs in ``state``.
        state: further objects to checkpoint (a data generator, a learning-rate schedule).
        options: passed to :func:`fit` (``checkpoint``, ``checkpoint_every``, ``log_every``, ...).

    Example::

        >>> import pyro.distributions as dist
        >>> from pyro.infer import SVI, Trace_ELBO
        >>> from pyro.infer.autoguide import AutoNormal
        >>> def model(x):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> pyro.clear_param_store()
        >>> svi = SVI(model, AutoNormal(model), pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
        >>> history = fit_svi(svi, 200, data=(torch.full((20,), 3.0),), progress=False)
        >>> bool(abs(pyro.param("AutoNormal.locs.mu").item() - 3.0) < 0.3)
        True
    """
    if not isinstance(svi, pyro.infer.SVI):
        raise TypeError(f"svi: expected a pyro.infer.SVI, got {type(svi).__name__}")
    batch = data if callable(data) else (lambda i: data)
    first = batch(0)
    register_parameters(svi.model, svi.guide, *first)
    full = {"param_store": RegisteredParamStore(pyro.get_param_store()), "svi_optim": svi.optim}
    for key, obj in (state or {}).items():
        if key in full:
            raise ValueError(f"state: the name {key!r} is taken by fit_svi's own entries {sorted(full)}")
        full[key] = obj
    return fit(SVIStep(svi, batch, average=options.get("distributed") is not False), num_steps, full, **options)


class SVIStep:
    """``step(i)``: one ``svi.step`` on ``batch(i)``'s arguments; with a ``torch.distributed`` process
    group, the gradients of every Pyro param the step touched are averaged over the ranks (in the
    order of their names, the same on every rank) before the optimiser steps."""

    def __init__(self, svi: pyro.infer.SVI, batch: Callable[[int], tuple], average: bool = True) -> None:
        self.svi, self.batch, self.average = svi, batch, average

    def __call__(self, i: int) -> float | torch.Tensor:
        args = self.batch(i)
        if not self.average or world_size() == 1:
            return self.svi.step(*args)
        # svi.step with the average between the gradients and the optimiser
        with poutine.trace(param_only=True) as capture:
            loss = self.svi.loss_and_grads(self.svi.model, self.svi.guide, *args)
        sites = capture.trace.nodes
        params = [sites[name]["value"].unconstrained() for name in sorted(sites)]
        average_gradients(params)
        self.svi.optim(params)
        zero_grads(set(params))
        return loss
