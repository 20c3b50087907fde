#!/usr/bin/env bash
# Peer benchmark of the coupling configuration (the coupling flows' core blocks): the peers, the plain-torch
# floor and pyroflows timed in the same interleaved rounds, at batch 1600 and 64, joint and
# conditional. Raw JSON and a summary go to benchmarks/results/.
#
#   benchmarks/run_coupling.sh                 # full mode, 2 torch threads (the harness default)
#   benchmarks/run_coupling.sh --quick         # shorter
#   benchmarks/run_coupling.sh --threads 1     # a loaded machine: see benchmarks/README.md
#
# Extra arguments go to bench_coupling.py. BENCH_PEERS overrides the harness location
# (default: ../shared/bench-peers next to the repository), BATCHES the batch sizes ("1600 64"),
# RESULTS the output folder (default benchmarks/results), ON_DEVICE a device to run the harness on
# through benchmarks/on_device.py, PREFIX a file-name prefix (run_all.sh --device cuda: gpu_).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${BENCH_PEERS:-$ROOT/../shared/bench-peers}
OUT=${RESULTS:-$ROOT/benchmarks/results}
mkdir -p "$OUT"
files=()
LAUNCH=(python)
[[ -n ${ON_DEVICE:-} ]] && LAUNCH=(python "$ROOT/benchmarks/on_device.py" --device "$ON_DEVICE")
for B in ${BATCHES:-1600 64}; do
  echo "== batch $B ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
  "${LAUNCH[@]}" "$PEERS/bench_coupling.py" \
    --plugin "$PEERS/plugins/torch_reference_coupling.py" \
    --plugin "$ROOT/benchmarks/plugin_coupling.py" \
    --batch "$B" --json "$OUT/${PREFIX:-}coupling_b$B.json" "$@" | grep -v "round .* done"
  files+=("$OUT/${PREFIX:-}coupling_b$B.json")
done
python "$ROOT/benchmarks/summarize.py" "${files[@]}" | tee "$OUT/${PREFIX:-}coupling_summary.md"
