#!/usr/bin/env bash
# GPU figures for docs/gpu.md: V18-size model on the 6,000-haplotype scenario, one GPU.
#   bench/gpu.sh [OUTDIR]          (needs the venv of the README and a CUDA build of torch)
# Smoke test on CPU: PRESET=tiny STEPS=5 SCENARIO=ooa_phased bench/gpu.sh /tmp/gpu-smoke
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" 2>/dev/null || true
PYTHONUNBUFFERED=1 python bench/gpu_bench.py --scenario "${SCENARIO:-ooa_large}" \
    --preset "${PRESET:-v18}" --steps "${STEPS:-200}" --batch-size "${BATCH:-24}" \
    --workers "${WORKERS:-4}" --out "$out/gpu_bench.json" 2>&1 | tee "$out/gpu_bench.log"
