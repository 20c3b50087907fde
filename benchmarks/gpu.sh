#!/usr/bin/env bash
# GPU correctness and speed in one command, sized for under 10 minutes on one GPU:
#
#   benchmarks/gpu.sh                      # the CUDA tests, then every benchmark configuration with
#                                          # the peers on the GPU, and one summary table
#   benchmarks/gpu.sh --quick              # the harness's quick settings
#   benchmarks/gpu.sh --device cpu --quick # the same path on a machine without a GPU (a check of
#                                          # the script, not a measurement)
#   benchmarks/gpu.sh --no-install         # skip `pip install` of the peers
#
# 1. `python -m pytest -m cuda tests/`: the tests that need CUDA (they skip without it), among them
#    the count of cudaStreamSynchronize calls in a training step of every transform configuration.
# 2. `run_all.sh --device <device>` (with --device cpu: `--launcher`), which runs each harness script
#    through benchmarks/on_device.py and writes <results>/gpu_*.json and the summary
#    <results>/gpu_all<suffix>.{md,csv,json}. FLOP counts are left out (HARNESS_ARGS=--no-flops: they
#    do not depend on the device, the CPU run has them), and so are FFJORD's exact-trace cases
#    (SKIP_EXACT=1: minutes per step and never the fastest peer); set HARNESS_ARGS= or SKIP_EXACT=0
#    to keep them. Other settings go through to run_all.sh (RESULTS, BENCHES, BATCHES, THREADS).
#
# A failing CUDA test does not stop the benchmarks (a GPU's time is scarce); the script then exits
# with the tests' status.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEVICE=cuda
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick | --no-install) ARGS+=("$1") ;;
    --device) DEVICE=${2:?--device: expected cuda or cpu}; shift ;;
    --device=*) DEVICE=${1#--device=} ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (expected --device cuda|cpu, --quick, --no-install)" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in
  cuda) ;;
  cpu) ARGS+=(--launcher) ;;
  *) echo "--device: expected cuda or cpu, got $DEVICE" >&2; exit 2 ;;
esac
export HARNESS_ARGS=${HARNESS_ARGS---no-flops} SKIP_EXACT=${SKIP_EXACT:-1}

echo "== CUDA tests ($(date -u +%FT%TZ))"
status=0
(cd "$ROOT" && python -m pytest -q -p no:cacheprovider -n 0 -m cuda tests/) || status=$?
"$ROOT/benchmarks/run_all.sh" --device "$DEVICE" "${ARGS[@]}"
if [[ $status != 0 ]]; then
  echo "gpu.sh: the CUDA tests failed (pytest exit status $status); the benchmarks above ran anyway" >&2
fi
exit "$status"
