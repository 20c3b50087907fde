"""A small training loop: progress bar, loss history, NaN reports and atomic, resumable checkpoints."""

from __future__ import annotations

import math
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..validation import check_module_finite


def _state_of(obj):
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if hasattr(obj, "get_state"):  # pyro's ParamStoreDict
        return obj.get_state()
    raise TypeError(f"state: cannot save an object of type {type(obj).__name__} (needs state_dict or get_state)")


def _load_into(obj, state) -> None:
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    else:
        obj.set_state(state)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file in ``path``'s folder, then an atomic rename to ``path``:
    a reader never sees a half-written file, and a failed write leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


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
) -> pd.DataFrame:
    """Run ``step(i)`` for ``i`` in ``range(num_steps)`` and return the loss history.

    Args:
        step: one optimisation step; returns the loss (a float or a scalar tensor).
        num_steps: total number of steps, counted across resumed runs.
        state: named objects with ``state_dict`` / ``load_state_dict`` (modules, optimisers) or
            ``get_state`` / ``set_state`` (Pyro's param store), saved in checkpoints.
        checkpoint: file path. If it exists, training resumes from it (objects, RNG state, history,
            step); it is rewritten atomically every ``checkpoint_every`` steps and at the end.
        log_every: how often the loss is read back to the host (a device sync) and recorded.
        check_finite: raise ``FloatingPointError`` naming the step and the non-finite parameters
            when a recorded loss is NaN or inf.

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
    state = dict(state or {})
    start, history = 0, []
    if checkpoint is not None and Path(checkpoint).exists():
        payload = torch.load(checkpoint, weights_only=False)
        for name, obj in state.items():
            _load_into(obj, payload["state"][name])
        start, history = payload["step"], payload["history"]
        _set_rng_state(payload["rng"])

    def save(i: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"state": {k: _state_of(v) for k, v in state.items()}, "step": i, "history": history, "rng": _rng_state()})

    bar = tqdm(range(start, num_steps), desc=desc, disable=not progress, initial=start, total=num_steps, leave=False)
    for i in bar:
        loss = step(i)
        if (i + 1) % log_every == 0 or i + 1 == num_steps:
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            if check_finite and not math.isfinite(value):
                modules = [o for o in state.values() if isinstance(o, torch.nn.Module)]
                for name, module in zip(state, modules):
                    check_module_finite(name, module)
                raise FloatingPointError(f"fit: the loss became {value} at step {i}")
            history.append((i, value))
            bar.set_postfix(loss=f"{value:.4g}")
        if (i + 1) % checkpoint_every == 0:
            save(i + 1)
    if start < num_steps:
        save(num_steps)
    return pd.DataFrame(history, columns=["step", "loss"])
