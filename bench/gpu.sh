#!/usr/bin/env bash
# GPU figures for docs/gpu.md (bench/gpu_bench.py): training and imputation throughput of the
# default and the V18-size model on a scenario's data, and a CPU-trained model imputing on the
# GPU (its piece's accuracy is read back with bench/gpu_accuracy.py).
#   DATA=bench/out/ooa_speed/data TRAINED=bench/out/ooa_speed/speed.vcfbert/results \
#       bench/gpu.sh OUTDIR [gpu_bench.py options, e.g. --profile]   (the README venv, or any Python with its packages)
# Smoke test on CPU: DEVICE=cpu PRESETS=tiny STEPS=3 DATA=... bench/gpu.sh /tmp/gpu-smoke
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" 2>/dev/null || true
PYTHONUNBUFFERED=1 ${PYTHON:-python} bench/gpu_bench.py --data "${DATA:?set DATA to the data folder of a scenario}" \
    ${TRAINED:+--trained "$TRAINED"} --presets "${PRESETS:-default,v18}" --steps "${STEPS:-80}" \
    --device "${DEVICE:-auto}" --workers "${WORKERS:-4}" --threads "${THREADS:-4}" \
    --out "$out" "${@:2}" 2>&1 | tee "$out/gpu_bench.log"
