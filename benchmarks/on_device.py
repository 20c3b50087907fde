"""Run one of the peer harness's scripts, unmodified, on a device.

    python benchmarks/on_device.py --device cuda ../shared/bench-peers/bench_glow.py --plugin benchmarks/plugin_glow.py [...]

Everything after the script is the harness's own command line. Before the script runs:

* the device becomes torch's default device (``torch.set_default_device``), so the data, the
  peers' modules and pyroflows' plugins are made on it; tensors the harness puts in a case's
  configuration from NumPy (``torch.from_numpy`` ignores the default device) are moved to it
  before the cases are built, and random draws from a CPU ``torch.Generator`` (the harness seeds its
  data that way) are made on the CPU, with the same values as a CPU run, and then moved;
* the harness's timer synchronises the device right before and right after each timed block of
  calls, never between the calls, so a sample measures the device's work, not the launches;
* peak memory is the allocator's high-water mark during one call minus what was allocated before
  it (``torch.cuda.max_memory_allocated``), in place of the harness's tensor-tracking pass;
* the machine information in the JSON gets a ``device`` entry (its name, memory and CUDA version).

With ``--device cpu`` nothing of the harness is replaced (same timer, same memory pass, no default
device: ``torch.set_default_device`` adds a Python call to every torch call); only the ``device``
entry is added. A case whose builder cannot run on the device (e.g. one that mixes devices) is
reported by the harness as failed, as on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import runpy
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch.overrides import TorchFunctionMode

DEVICES = ("cpu", "cuda")
# factories that take a generator and a device: drawn on the generator's device, then moved
RANDOM_FACTORIES = (torch.rand, torch.randn, torch.randint, torch.randperm)


def parse_device(text: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a ``torch.device``; CUDA must be available."""
    kind = text.split(":", 1)[0]
    if kind not in DEVICES or (kind == "cpu" and text != "cpu"):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {text!r}")
    try:
        device = torch.device(text)
    except RuntimeError as e:
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {text!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: expected a device this torch can use, got {text!r} but torch {torch.__version__} sees no CUDA device")
    return device


class GeneratorDraws(TorchFunctionMode):
    """Random factories given a generator on another device than the one asked for (explicitly or
    by the default device) draw on the generator's device and move the result: the same values as
    on the generator's device, where torch would refuse the mix."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is not None and func in RANDOM_FACTORIES:
            target = torch.device(kwargs.get("device") or torch.empty(0).device)
            if target.type != generator.device.type:
                return func(*args, **{**kwargs, "device": generator.device}).to(target)
        return func(*args, **kwargs)


def to_device(cfg: object, device: torch.device) -> object:
    """Move the tensors among ``cfg``'s attributes (and in its lists and tuples) to ``device``, in place."""
    if not isinstance(cfg, SimpleNamespace):
        return cfg

    def move(v):
        if isinstance(v, torch.Tensor) and v.device != device:
            return v.detach().to(device).requires_grad_(v.requires_grad)
        if isinstance(v, (list, tuple)):
            return type(v)(move(u) for u in v)
        return v

    for name, value in vars(cfg).items():
        setattr(cfg, name, move(value))
    return cfg


def synced_timer(sync: Callable[[], None]) -> Callable[[Callable[[], object], int], float]:
    """The harness's ``_time_once`` with ``sync()`` before the clock starts and before it stops."""

    def time_once(fn: Callable[[], object], number: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        return (time.perf_counter() - t0) / number

    return time_once


def allocator_peak(memory) -> Callable[[Callable[[], object]], dict]:
    """The harness's ``peak_tensor_memory`` from a caching allocator's statistics (``memory`` is
    ``torch.cuda``): bytes allocated during one call above what was allocated before it."""

    def peak(fn: Callable[[], object]) -> dict:
        gc.collect()
        memory.synchronize()
        before = memory.memory_allocated()
        total = memory.memory_stats().get("allocated_bytes.all.allocated", 0)
        memory.reset_peak_memory_stats()
        out = fn()
        memory.synchronize()
        peak_bytes = memory.max_memory_allocated() - before
        total = memory.memory_stats().get("allocated_bytes.all.allocated", 0) - total
        del out
        gc.collect()
        return {"peak_bytes": peak_bytes, "allocated_total_bytes": total, "still_live_bytes": memory.memory_allocated() - before}

    return peak


def device_info(device: torch.device, cpu_model: Callable[[], str]) -> dict:
    if device.type != "cuda":
        return {"type": device.type, "name": cpu_model()}
    props = torch.cuda.get_device_properties(device)
    return {
        "type": "cuda",
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
    }


def patch_harness(common, device: torch.device) -> None:
    """Swap the harness's timer, memory pass and machine information for the device's."""
    machine_info = common.machine_info
    common.machine_info = lambda: {**machine_info(), "device": device_info(device, common.cpu_model)}
    if device.type == "cpu":
        return
    common._time_once = synced_timer(lambda: torch.cuda.synchronize(device))
    common.peak_tensor_memory = allocator_peak(torch.cuda)
    run_benchmark = common.run_benchmark

    def run_on_device(registry, cfg, *args, **kwargs):
        return run_benchmark(registry, to_device(cfg, device), *args, **kwargs)

    common.run_benchmark = run_on_device


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", required=True, help="cpu, cuda or cuda:N")
    p.add_argument("script", help="a harness script, e.g. ../shared/bench-peers/bench_glow.py")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = p.parse_args(argv)
    try:
        device = parse_device(args.device)
    except ValueError as e:
        p.error(str(e))
    script = os.path.abspath(args.script)
    if not os.path.isfile(script):
        p.error(f"script: expected a harness script file, got {args.script!r} (no such file)")
    sys.path.insert(0, os.path.dirname(script))  # where the harness finds its ``common``
    import common  # noqa: PLC0415 - the harness's helpers, importable only once its folder is on the path

    patch_harness(common, device)
    sys.argv = [script, *args.args]
    with contextlib.ExitStack() as stack:
        if device.type != "cpu":
            if device.index is not None:  # cuda:N: the allocator statistics read the current device
                torch.cuda.set_device(device)
            torch.set_default_device(device)
            stack.callback(torch.set_default_device, None)
            stack.enter_context(GeneratorDraws())
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
