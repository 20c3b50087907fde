"""benchmarks/run_all.sh and its summary: ratios to the fastest peer taken from the harness's
results, the files it writes, and the script's argument checks. Timings themselves are never
asserted; the quick end-to-end run is an experiment (minutes)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import on_device  # noqa: E402
import summarize_all  # noqa: E402

PEERS = Path(os.environ.get("BENCH_PEERS", ROOT.parent / "shared" / "bench-peers"))


def _case(step_s, sample_s, peak_bytes, peers=None):
    stats = lambda s: {"median": s, "min": s, "max": s, "n": 3}  # noqa: E731
    return {"step": stats(step_s), "sample": stats(sample_s), "mem_step": {"peak_bytes": peak_bytes}, "extra": {"peers": peers}}


def _harness(groups):
    return {"results": {g: {"cases": cases, "failed": {}} for g, cases in groups.items()}}


def _write(folder, name, data):
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_summary_takes_each_ratio_to_the_fastest_peer(tmp_path):
    _write(
        tmp_path,
        "glow",
        _harness(
            {
                "small": {
                    "pyroflows_glow": _case(0.010, 0.004, 100),
                    "freia_allinone": _case(0.020, 0.008, 200),
                    "nflows_glow": _case(0.030, 0.002, 50),
                    "torch_reference (plugin)": _case(0.001, 0.001, 1),  # the floor is no peer
                }
            }
        ),
    )
    cpu = {
        "results": {
            "small": {
                "cases": {"pyroflows_glow": {"step": [3.0, 1.0, 2.0], "sample": [1.0]}, "freia_allinone": {"step": [4.0], "sample": [4.0]}}
            }
        }
    }
    _write(tmp_path, "cpu_time_glow", cpu)
    rows = summarize_all.collect(str(tmp_path))
    assert len(rows) == 1
    row = rows[0]
    assert row["step_peer"] == "freia_allinone" and row["step_ratio"] == pytest.approx(0.5)
    assert row["sample_peer"] == "nflows_glow" and row["sample_ratio"] == pytest.approx(2.0)
    assert row["memory_ratio"] == pytest.approx(0.5)  # against the peer with the fastest step
    assert row["cpu_step_ratio"] == pytest.approx(0.5) and row["cpu_sample_ratio"] == pytest.approx(0.25)
    assert row["targets_met"] is True  # CPU-time ratios where there are some: 0.5, 0.25, memory 0.5


def test_summary_names_a_cases_own_peers_and_misses_targets(tmp_path):
    groups = {
        "main": {
            "pyroflows_sylvester": _case(0.009, 0.009, 300, peers=["pyro_sylvester"]),
            "pyro_sylvester": _case(0.010, 0.010, 200),
            "normflows_planar": _case(0.001, 0.001, 10),
        }
    }
    _write(tmp_path, "planar_sylvester", _harness(groups))
    (row,) = summarize_all.collect(str(tmp_path))
    assert row["step_peer"] == "pyro_sylvester" and row["step_ratio"] == pytest.approx(0.9)
    assert row["memory_ratio"] == pytest.approx(1.5) and row["targets_met"] is False


def test_summary_files_prefer_the_suffix_and_keep_every_configuration(tmp_path):
    one = _harness({"joint": {"pyroflows_coupling": _case(0.01, 0.01, 1), "zuko_coupling": _case(0.02, 0.02, 2)}})
    for batch in (64, 1600):
        _write(tmp_path, f"coupling_b{batch}", one)
    _write(tmp_path, "ffjord", _harness({"2d": {"pyroflows_cnf": _case(0.05, 0.05, 1), "tdiffeq": _case(0.04, 0.04, 1)}}))
    _write(tmp_path, "ffjord_quick", _harness({"2d": {"pyroflows_cnf": _case(0.03, 0.05, 1), "tdiffeq": _case(0.04, 0.04, 1)}}))
    _write(tmp_path, "glow", _harness({"1x16x16": {"pyroflows_glow": _case(0.05, 0.05, 1)}}))  # no peer ran
    rows = summarize_all.collect(str(tmp_path), "_quick")
    assert [(r["benchmark"], r["group"]) for r in rows] == [
        ("coupling_b1600", "joint"),
        ("coupling_b64", "joint"),
        ("ffjord", "2d"),
        ("glow", "1x16x16"),
    ]
    assert rows[2]["step_ratio"] == pytest.approx(0.75)
    assert rows[3]["step_peer"] is None and rows[3]["targets_met"] is None
    summarize_all.main([str(tmp_path), "--suffix", "_quick"])
    with open(tmp_path / "all_quick.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["case"] for r in table] == [r["case"] for r in rows]
    assert json.loads((tmp_path / "all_quick.json").read_text()) == rows
    md = (tmp_path / "all_quick.md").read_text()
    assert md.count("\n") == len(rows) + 2 and "**0.75**" in md and "no peer ran" in md


def test_summary_of_an_empty_folder_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no harness results"):
        summarize_all.main([str(tmp_path)])


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("run_all.sh", ["--device", "tpu"], "expected cpu or cuda, got tpu"),
        ("run_all.sh", ["--fast"], "unknown argument --fast"),
        ("gpu.sh", ["--device", "tpu"], "expected cuda or cpu, got tpu"),
        ("gpu.sh", ["--fast"], "unknown argument --fast"),
    ],
)
def test_run_all_and_gpu_refuse_bad_arguments(script, args, message):
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_run_all_on_cuda_without_a_gpu_says_so():
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_all.sh"), "--device", "cuda", "--no-install"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "expected a machine with a CUDA device, got cuda" in out.stderr


def test_summary_reads_the_prefixed_files_of_a_device_run(tmp_path):
    one = lambda t: _harness({"joint": {"pyroflows_coupling": _case(t, t, 1), "zuko_coupling": _case(0.02, 0.02, 2)}})  # noqa: E731
    _write(tmp_path, "coupling_b64", one(0.01))
    _write(tmp_path, "gpu_coupling_b64", one(0.005))
    summarize_all.main([str(tmp_path), "--prefix", "gpu_"])
    (row,) = json.loads((tmp_path / "gpu_all.json").read_text())
    assert row["benchmark"] == "coupling_b64" and row["step_ratio"] == pytest.approx(0.25)
    assert not (tmp_path / "all.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu", "x.py"], "--device: expected cpu, cuda or cuda:N, got 'tpu'"),
        (["--device", "cpu:0", "x.py"], "--device: expected cpu, cuda or cuda:N, got 'cpu:0'"),
        (["--device", "cpu", "no_such_bench.py"], "script: expected a harness script file, got 'no_such_bench.py'"),
    ],
)
def test_the_launcher_refuses_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        on_device.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_launcher_refuses_cuda_without_a_gpu():
    with pytest.raises(ValueError, match="--device: expected a device this torch can use, got 'cuda'"):
        on_device.parse_device("cuda")


def test_the_device_timer_syncs_around_the_calls_only():
    calls = []
    time_once = on_device.synced_timer(lambda: calls.append("sync"))
    seconds = time_once(lambda: calls.append("call"), 3)
    assert calls == ["sync", "call", "call", "call", "sync"] and seconds >= 0


def test_the_allocator_peak_is_taken_above_what_was_allocated_before():
    class Allocator:  # the five torch.cuda calls the pass uses, on a scripted allocator
        def __init__(self):
            self.now, self.high, self.total = 1000, 5000, 7000

        def synchronize(self):
            pass

        def memory_allocated(self):
            return self.now

        def memory_stats(self):
            return {"allocated_bytes.all.allocated": self.total}

        def reset_peak_memory_stats(self):
            self.high = self.now

        def max_memory_allocated(self):
            return self.high

    mem = Allocator()

    def call():  # allocates 300 bytes, of which 100 stay live, with a transient of 200
        mem.now += 300
        mem.high = max(mem.high, mem.now + 200)
        mem.total += 500
        mem.now -= 200

    assert on_device.allocator_peak(mem)(call) == {"peak_bytes": 500, "allocated_total_bytes": 500, "still_live_bytes": 100}


def test_draws_from_a_cpu_generator_land_on_the_asked_device_with_cpu_values():
    g = torch.Generator().manual_seed(3)
    with on_device.GeneratorDraws():
        x = torch.randn(4, generator=g, device="meta")
        p = torch.randperm(5, generator=g, device="meta")
    assert x.device.type == "meta" and x.shape == (4,) and p.device.type == "meta"
    ref = torch.Generator().manual_seed(3)
    torch.randn(4, generator=ref), torch.randperm(5, generator=ref)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=ref))  # both draws were made on the CPU


def test_a_cases_configuration_moves_to_the_device():
    cfg = SimpleNamespace(x=torch.zeros(2), w=torch.ones(3, requires_grad=True), perms=[torch.arange(3)], batch=4)
    on_device.to_device(cfg, torch.device("meta"))
    assert cfg.x.device.type == "meta" and cfg.perms[0].device.type == "meta" and cfg.batch == 4
    assert cfg.w.device.type == "meta" and cfg.w.requires_grad and cfg.w.is_leaf


@pytest.mark.skipif(not (PEERS / "bench_glow.py").exists(), reason="needs the peer harness in ../shared/bench-peers")
def test_the_launcher_runs_a_harness_script_unchanged(tmp_path):
    # one round of one small case: the harness's own command line, the device in its machine info
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "on_device.py"), "--device", "cpu", str(PEERS / "bench_glow.py")]
        + ["--plugin", str(ROOT / "benchmarks" / "plugin_glow.py"), "--only", "pyroflows", "--shapes", "1x16x16", "--batch", "4"]
        + ["--repeats", "1", "--warmup", "1", "--threads", "1", "--no-flops", "--json", str(tmp_path / "glow.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "glow.json").read_text())
    assert result["machine"]["device"]["type"] == "cpu" and result["machine"]["device"]["name"]
    assert result["results"]["1x16x16"]["cases"]["pyroflows_glow"]["step"]["n"] == 1


def _quick_glow_summary(request, tmp_path, script: str, args: list[str], summary: str) -> None:
    """Run ``script`` on the quick Glow configuration into ``tmp_path``; its one summary row is pyroflows'."""
    # minutes of timing rounds against the peers: kept out of CI's stages, run with -m slow
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("timing rounds against the peers: run with -m slow")
    env = dict(os.environ, RESULTS=str(tmp_path), BENCHES="glow", PYTHONPATH=str(ROOT))
    command = ["bash", str(ROOT / "benchmarks" / script), *args, "--quick", "--no-install"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / f"{summary}.json").read_text())
    assert [(r["benchmark"], r["case"]) for r in rows] == [("glow", "pyroflows_glow")]
    assert rows[0]["step_peer"] and rows[0]["step_ratio"] > 0 and rows[0]["memory_ratio"] > 0
    assert (tmp_path / f"{summary}.md").exists() and (tmp_path / f"{summary}.csv").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (PEERS / "bench_glow.py").exists(), reason="needs the peer harness in ../shared/bench-peers")
def test_run_all_quick_writes_the_summary(tmp_path, request):
    _quick_glow_summary(request, tmp_path, "run_all.sh", [], "all_quick")


@pytest.mark.slow
@pytest.mark.skipif(not (PEERS / "bench_glow.py").exists(), reason="needs the peer harness in ../shared/bench-peers")
def test_gpu_sh_on_the_cpu_writes_the_device_summary(tmp_path, request):
    # the CUDA tests (skipped here), then the quick Glow configuration through the launcher
    _quick_glow_summary(request, tmp_path, "gpu.sh", ["--device", "cpu"], "gpu_all_quick")
    assert json.loads((tmp_path / "gpu_glow_quick.json").read_text())["machine"]["device"]["type"] == "cpu"
    assert not list(tmp_path.glob("cpu_time_*")) and not (tmp_path / "all_quick.json").exists()
