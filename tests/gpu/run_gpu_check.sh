#!/usr/bin/env bash
# The GPU check of issue 18 as one command (about 5-8 minutes on one GPU; stopped at 10):
#
#     tests/gpu/run_gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu-check/
#
# Every registered family trains a few steps in fp16 and bf16 through `hubgen train`, resumes exactly, evaluates
# and samples on the GPU (CUDA generators too), and loads on the CPU with the GPU's samples for the same CPU
# generator; then each family's quickstart configuration trains 15 s in bf16 for its images/s. Results:
# OUT_DIR/gpu_check.json (per family: resume difference, CPU-vs-GPU agreement, images/s), OUT_DIR/pytest.log,
# one log per training run. Needs a Python ($PYTHON, default .venv/bin/python or python3) with a CUDA build of
# torch and hubgen's dependencies; hubgen itself is installed from this checkout (no deps) if it is missing.
# HUBGEN_GPU_CHECK_SECONDS (15) sets the throughput runs' length, HUBGEN_GPU_CHECK_WORKERS (4) the parallel runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-gpu-check}"
mkdir -p "$OUT"
export HUBGEN_GPU_CHECK_DIR="$(cd "$OUT" && pwd)"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" - <<'PYCHECK'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__}: the GPU check needs one")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
PYCHECK
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(not m.entry_points(group='hubgen.families'))"; then
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e .
fi
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
set +e
timeout 590 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu/test_gpu_check.py 2>&1 | tee "$HUBGEN_GPU_CHECK_DIR/pytest.log"
status=${PIPESTATUS[0]}
set -e
echo "GPU check exit code $status; results in $HUBGEN_GPU_CHECK_DIR/gpu_check.json"
exit "$status"
