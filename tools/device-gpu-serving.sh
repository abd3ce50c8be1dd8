#!/usr/bin/env bash
# Runs benchmarks/gpu_serving.py on a lent GPU machine (the `device` tool) in one call: installs the wheels that
# machine lacks (carry [".whl"], see tools/device-tests.sh), prints the card, runs the benchmark, and quits an MPS
# daemon the benchmark left behind if it was killed. Extra arguments go to the benchmark. Results land in $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
mps=/tmp/tritonkit-mps
quit_mps() {
  if [ -d "$mps/pipe" ]; then
    echo quit | CUDA_MPS_PIPE_DIRECTORY=$mps/pipe CUDA_MPS_LOG_DIRECTORY=$mps/log timeout 60 nvidia-cuda-mps-control || true
    cp "$mps"/log/*.log "$out/" 2>/dev/null || true
  fi
}
trap quit_mps EXIT
python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv | tee "$out/gpu.txt"
python3 -c 'import sys, numpy, torch; print(sys.version.split()[0], numpy.__version__, torch.__version__)' | tee -a "$out/gpu.txt"
PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_serving --out "$out" --mps-dir "$mps" "$@" 2>&1 | tee "$out/gpu_serving.log"
