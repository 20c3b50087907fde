#!/usr/bin/env bash
# Every benchmark configuration against the peers, and one summary table.
#
#   benchmarks/run_all.sh                  # full mode: coupling (batch 1600, 64), planar / Sylvester,
#                                          # FFJORD, Glow; harness rounds, then thread CPU time
#   benchmarks/run_all.sh --quick          # the harness's quick settings, no CPU-time pass
#   benchmarks/run_all.sh --no-install     # skip `pip install` of the peers
#
# First installs the peer libraries into the active environment (`pip install zuko nflows normflows
# FrEIA`; without a network it goes on with what is installed). Then it calls run_coupling.sh and
# run_peers.sh, which time the peers and pyroflows in the same interleaved rounds (the vendored
# reference code in ../shared/bench-peers/vendor/ too, where it is there), and summarize_all.py,
# which writes <results>/all<suffix>.{md,csv,json}: per configuration, the training-step ratio to
# the fastest peer, the sampling ratio and the peak-memory ratio.
#
# --device cpu is the only device: the harness times on the CPU. Environment: RESULTS (output
# folder; default benchmarks/results, with --quick benchmarks/results/quick), THREADS (torch
# threads of the harness runs, default 1), CPU_TIME=0|1 (the thread-CPU-time pass; default 1, with
# --quick 0), BENCH_PEERS (the harness, default ../shared/bench-peers), BENCHES (default
# "coupling planar_sylvester ffjord glow"), BATCHES (coupling batch sizes, default "1600 64").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${BENCH_PEERS:-$ROOT/../shared/bench-peers}
QUICK=()
DEVICE=cpu
INSTALL=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=(--quick) ;;
    --device) DEVICE=${2:?--device: expected cpu or cuda}; shift ;;
    --device=*) DEVICE=${1#--device=} ;;
    --no-install) INSTALL=0 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1 (expected --quick, --device cpu|cuda, --no-install)" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in
  cpu) ;;
  cuda) echo "--device: the harness in $PEERS times on the CPU only; got cuda" >&2; exit 2 ;;
  *) echo "--device: expected cpu or cuda, got $DEVICE" >&2; exit 2 ;;
esac
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

for BENCH in ${BENCHES:-coupling planar_sylvester ffjord glow}; do
  extra=()
  case "$BENCH" in
    coupling)
      "$ROOT/benchmarks/run_coupling.sh" --threads "$THREADS" "${QUICK[@]}"
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
      [[ ${#QUICK[@]} -gt 0 ]] && extra+=(--skip exact) ;;
    glow) ;;
    *) echo "BENCHES: unknown benchmark $BENCH (expected coupling, planar_sylvester, ffjord, glow)" >&2; exit 2 ;;
  esac
  "$ROOT/benchmarks/run_peers.sh" "$BENCH" "${QUICK[@]}" "${extra[@]}"
done

echo "== summary ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
python "$ROOT/benchmarks/summarize_all.py" "$RESULTS" --suffix "$SUFFIX"
