"""benchmarks/run_all.sh and its summary: ratios to the fastest peer taken from the harness's
results, the files it writes, and the script's argument checks. Timings themselves are never
asserted; the quick end-to-end run is an experiment (minutes)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
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
    "args, message",
    [
        (["--device", "cuda"], "times on the CPU only; got cuda"),
        (["--device", "tpu"], "expected cpu or cuda, got tpu"),
        (["--fast"], "unknown argument --fast"),
    ],
)
def test_run_all_refuses_bad_arguments(args, message):
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_all.sh"), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (PEERS / "bench_glow.py").exists(), reason="needs the peer harness in ../shared/bench-peers")
def test_run_all_quick_writes_the_summary(tmp_path, request):
    # minutes of timing rounds against the peers: kept out of CI's stages, run with -m slow
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("timing rounds against the peers: run with -m slow")
    env = dict(os.environ, RESULTS=str(tmp_path), BENCHES="glow", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_all.sh"), "--quick", "--no-install"], capture_output=True, text=True, timeout=900, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "all_quick.json").read_text())
    assert [(r["benchmark"], r["case"]) for r in rows] == [("glow", "pyroflows_glow")]
    assert rows[0]["step_peer"] and rows[0]["step_ratio"] > 0 and rows[0]["memory_ratio"] > 0
    assert (tmp_path / "all_quick.md").exists() and (tmp_path / "all_quick.csv").exists()
