#!/usr/bin/env bash
# Every benchmark configuration against the peers, and one summary table.
#
#   benchmarks/run_all.sh                  # full mode: coupling (batch 1600, 64), planar / Sylvester,
#                                          # FFJORD, Glow; harness rounds, then thread CPU time
#   benchmarks/run_all.sh --quick          # the harness's quick settings, no CPU-time pass
#   benchmarks/run_all.sh --device cuda    # the same on a GPU: files gpu_*.json, no CPU-time pass
#   benchmarks/run_all.sh --no-install     # skip `pip install` of the peers
#
# First installs the peer libraries into the active environment (`pip install zuko nflows normflows
# FrEIA`; without a network it goes on with what is installed). Then it calls run_coupling.sh and
# run_peers.sh, which time the peers and pyroflows in the same interleaved rounds (the vendored
# reference code in ../shared/bench-peers/vendor/ too, where it is there), and summarize_all.py,
# which writes <results>/all<suffix>.{md,csv,json}: per configuration, the training-step ratio to
# the fastest peer, the sampling ratio and the peak-memory ratio.
#
# --device cuda runs each harness script through benchmarks/on_device.py (models and data on the
# GPU, the timer synchronised with it, the allocator's peak memory), names the files gpu_<name>
# and the summary gpu_all<suffix>.{md,csv,json}, and skips the thread-CPU-time pass. --launcher
# does the same on the CPU (--device cpu), which checks that path on a machine without a GPU.
# Environment: RESULTS (output folder; default benchmarks/results, with --quick
# benchmarks/results/quick), THREADS (torch threads of the harness runs, default 1), CPU_TIME=0|1
# (the thread-CPU-time pass; default 1, with --quick or through the launcher 0), BENCH_PEERS (the
# harness, default ../shared/bench-peers), BENCHES (default "coupling planar_sylvester ffjord glow"),
# BATCHES (coupling batch sizes, default "1600 64"), HARNESS_ARGS (more arguments for every harness
# script, e.g. --no-flops), SKIP_EXACT=1 (leave FFJORD's exact-trace cases out, as --quick does).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${BENCH_PEERS:-$ROOT/../shared/bench-peers}
QUICK=()
DEVICE=cpu
LAUNCHER=0
INSTALL=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=(--quick) ;;
    --device) DEVICE=${2:?--device: expected cpu or cuda}; shift ;;
    --device=*) DEVICE=${1#--device=} ;;
    --launcher) LAUNCHER=1 ;;
    --no-install) INSTALL=0 ;;
    -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1 (expected --quick, --device cpu|cuda, --launcher, --no-install)" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in
  cpu) ;;
  cuda)
    LAUNCHER=1
    python -c "import sys, torch; sys.exit(not torch.cuda.is_available())" \
      || { echo "--device: expected a machine with a CUDA device, got cuda but torch sees none" >&2; exit 2; } ;;
  *) echo "--device: expected cpu or cuda, got $DEVICE" >&2; exit 2 ;;
esac
PREFIX=""
if [[ $LAUNCHER == 1 ]]; then
  export ON_DEVICE=$DEVICE PREFIX=gpu_ CPU_TIME=0
fi
SUFFIX=""
if [[ ${#QUICK[@]} -gt 0 ]]; then
  SUFFIX=_quick
  export RESULTS=${RESULTS:-$ROOT/benchmarks/results/quick}
  export CPU_TIME=${CPU_TIME:-0}
else
  export RESULTS=${RESULTS:-$ROOT/benchmarks/results}
  export CPU_TIME=${CPU_TIME:-1}
fi
export THREADS=${THREADS:-1} BENCH_PEERS=$PEERS
mkdir -p "$RESULTS"

if [[ $INSTALL == 1 ]]; then
  python -m pip install --disable-pip-version-check --quiet --retries 0 --timeout 10 zuko nflows normflows FrEIA \
    || echo "pip install of the peers failed (no network?): going on with the installed ones" >&2
fi

HARGS=(${HARNESS_ARGS:-})
for BENCH in ${BENCHES:-coupling planar_sylvester ffjord glow}; do
  extra=()
  case "$BENCH" in
    coupling)
      "$ROOT/benchmarks/run_coupling.sh" --threads "$THREADS" "${QUICK[@]}" "${HARGS[@]}"
      if [[ $CPU_TIME != 0 ]]; then
        for B in ${BATCHES:-1600 64}; do
          OMP_NUM_THREADS=1 python "$ROOT/benchmarks/cpu_time.py" coupling --batch "$B" \
            --json "$RESULTS/cpu_time_coupling_b$B.json" > "$RESULTS/cpu_time_coupling_b$B.md"
        done
      fi
      continue ;;
    planar_sylvester) [[ -d $PEERS/vendor/sylvester-flows ]] && extra=(--sylvester-dir "$PEERS/vendor/sylvester-flows") ;;
    ffjord)
      [[ -d $PEERS/vendor/ffjord ]] && extra=(--ffjord-dir "$PEERS/vendor/ffjord")
      # the exact-trace cases take minutes and are never the fastest peer
      [[ ${#QUICK[@]} -gt 0 || ${SKIP_EXACT:-0} == 1 ]] && extra+=(--skip exact) ;;
    glow) ;;
    *) echo "BENCHES: unknown benchmark $BENCH (expected coupling, planar_sylvester, ffjord, glow)" >&2; exit 2 ;;
  esac
  "$ROOT/benchmarks/run_peers.sh" "$BENCH" "${QUICK[@]}" "${extra[@]}" "${HARGS[@]}"
done

echo "== summary (device $DEVICE, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
python "$ROOT/benchmarks/summarize_all.py" "$RESULTS" --suffix "$SUFFIX" --prefix "$PREFIX"
