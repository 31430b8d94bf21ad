#!/usr/bin/env bash
# One prepared GPU check (issue 24), <= 10 min on one H200-class GPU, offline, random weights.
# Writes $OUT/gpu_check.json (default results/gpu_check/) and prints its tables; see benchmarks/gpu_check.py.
# Usage (repository root, after `make install`): bash benchmarks/gpu_check.sh [extra gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: run benchmarks/gpu_check.py --smoke on CPU'"
exec timeout 590 "$PY" benchmarks/gpu_check.py --out "${OUT:-results/gpu_check}" "$@"
