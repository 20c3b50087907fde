#!/usr/bin/env bash
# Peer benchmark of one configuration: the harness's peers and pyroflows' plugin timed in the same
# interleaved rounds (wall clock), then the same cases with thread CPU time at one thread.
# Raw JSON and summaries go to benchmarks/results/:
#   <bench>.json, <bench>_summary.md            the harness run (summarize.py)
#   cpu_time_<bench>.json, cpu_time_<bench>.md  cpu_time.py
#
#   benchmarks/run_peers.sh glow                      # full mode, 1 torch thread, nice 5
#   benchmarks/run_peers.sh ffjord --quick            # shorter (files get a _quick suffix)
#   THREADS=2 CPU_TIME=0 benchmarks/run_peers.sh planar_sylvester
#
# bench: planar_sylvester, ffjord, glow (coupling: run_coupling.sh, which runs two batch sizes).
# Extra arguments go to the harness's script. BENCH_PEERS overrides the harness location (default:
# ../shared/bench-peers next to the repository), THREADS the torch threads of the harness run
# (default 1: the machine is shared), CPU_TIME=0 skips the CPU-time pass, CPU_TIME_ARGS adds
# arguments to it (e.g. "--rounds 5"), RESULTS the output folder (default benchmarks/results).
# ON_DEVICE=cuda runs the harness through benchmarks/on_device.py on that device (no CPU-time pass
# then) and PREFIX=gpu_ names the files gpu_<bench>.json etc.; run_all.sh --device cuda sets both.
set -euo pipefail
BENCH=${1:?usage: run_peers.sh planar_sylvester|ffjord|glow [harness arguments]}
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${BENCH_PEERS:-$ROOT/../shared/bench-peers}
OUT=${RESULTS:-$ROOT/benchmarks/results}
mkdir -p "$OUT"
case "$BENCH" in
  planar_sylvester | ffjord | glow) ;;
  coupling) exec "$ROOT/benchmarks/run_coupling.sh" "$@" ;;
  *) echo "unknown benchmark: $BENCH" >&2; exit 2 ;;
esac
SUFFIX=""
LAUNCH=(python)
[[ -n ${ON_DEVICE:-} ]] && LAUNCH=(python "$ROOT/benchmarks/on_device.py" --device "$ON_DEVICE")
NAME=${PREFIX:-}$BENCH
CPU_ARGS=(${CPU_TIME_ARGS:-})
if [[ " $* " == *" --quick "* ]]; then SUFFIX=_quick; CPU_ARGS+=(--rounds 3); fi
export OMP_NUM_THREADS=${THREADS:-1}
echo "== $BENCH ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
nice -n "${NICE:-5}" "${LAUNCH[@]}" "$PEERS/bench_$BENCH.py" --plugin "$ROOT/benchmarks/plugin_$BENCH.py" \
  --threads "${THREADS:-1}" --json "$OUT/$NAME$SUFFIX.json" "$@" | grep -v "round .* done"
python "$ROOT/benchmarks/summarize.py" "$OUT/$NAME$SUFFIX.json" > "$OUT/${NAME}${SUFFIX}_summary.md"
echo "summary: $OUT/${NAME}${SUFFIX}_summary.md"
# thread CPU time says nothing about work done on a GPU
if [[ "${CPU_TIME:-1}" != 0 && ${ON_DEVICE:-cpu} == cpu ]]; then
  echo "== $BENCH, thread CPU time ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
  OMP_NUM_THREADS=1 nice -n "${NICE:-5}" python "$ROOT/benchmarks/cpu_time.py" "$BENCH" "${CPU_ARGS[@]}" \
    --json "$OUT/cpu_time_$BENCH$SUFFIX.json" | tee "$OUT/cpu_time_$BENCH$SUFFIX.md"
fi
