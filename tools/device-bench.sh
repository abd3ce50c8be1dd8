#!/usr/bin/env bash
# The product path on a lent GPU machine (the `device` tool), in one call: the README's GPU export, `tritonkit
# bench resnet50` with its defaults (timed), the reference cells of benchmarks/gpu_serving.py in the same run, and
# NVIDIA's perf_analyzer against `tritonkit serve` with the bench's best single-frame setup applied. Carry [".whl"]
# (../shared/device-wheels.sh with WITH_PYTRITON=1 WITH_PERF_ANALYZER=1). Results land in $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
mps=/tmp/tritonkit-mps
work=/tmp/tritonkit-bench
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill -INT "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; fi
  # An MPS daemon left by a killed bench (the bench quits its own; this is for the failure paths).
  for pipe in "$mps/pipe" /tmp/tritonkit-mps-*/pipe; do
    [ -d "$pipe" ] && echo quit | CUDA_MPS_PIPE_DIRECTORY=$pipe timeout 60 nvidia-cuda-mps-control 2>/dev/null
  done
  true
}
trap cleanup EXIT
python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv | tee "$out/gpu.txt"
python3 -c 'import sys, numpy, torch; print(sys.version.split()[0], numpy.__version__, torch.__version__)' | tee -a "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
export PYTHONUNBUFFERED=1
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
repo=$OLDPWD
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/steps.log"; }

log "export"
tritonkit export resnet50 --format torchscript --precision fp16 --uint8-input --channels-last --kind gpu \
  --max-batch-size 64 2>&1 | tail -5 | tee "$out/export.log"
log "bench with its defaults"
started=$(date +%s)
tritonkit bench resnet50 --out "$out/bench" 2>&1 | tee "$out/bench.log"
log "tritonkit bench resnet50 took $(( $(date +%s) - started )) s"

log "side script reference cells"
(cd "$repo" && timeout 300 python3 -m benchmarks.gpu_serving --out "$out/side" --no-raw-processes --mps-dir "$mps" \
  --only "${SIDE_CELLS:-i1_c1,i4_c64,b4_single_shm_c256,b4_multi64_shm_c16}" 2>&1 \
  | tail -60 > "$out/side.log")
log "side script done"

log "perf_analyzer on the best single-frame setup"
python3 -m zipfile -e "$repo"/.whl/peers/perf_analyzer-*.whl /tmp/pa && chmod +x /tmp/pa/perf_analyzer/bin/perf_analyzer
best=$(python3 - "$out/bench/results.json" <<'PY'
import json, sys
from pathlib import Path
from tritonkit.bench import apply_config, parse_configs
document = json.loads(Path(sys.argv[1]).read_text())
cells = [c for c in document["cells"] if c["model"] == "resnet50" and c["frames_per_request"] == 1]
best = max(cells, key=lambda c: c["samples_per_s"])
(config,) = parse_configs(best["config"].split("@")[0], default_delay_us=0)
apply_config(Path("model_repository/resnet50"), config)
print(best["config"], best["concurrency"], round(best["samples_per_s"]))
PY
)
read -r best_config best_c best_rate <<< "$best"
log "best single-frame setup: $best_config at c=$best_c, bench $best_rate/s"
tritonkit serve > "$out/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 120); do curl -sf localhost:8000/v2/health/ready > /dev/null && break; sleep 1; done
timeout 120 /tmp/pa/perf_analyzer/bin/perf_analyzer -m resnet50 -u 127.0.0.1:8001 -i grpc --shared-memory system \
  --output-shared-memory-size 4000 --concurrency-range "$best_c" -p 3000 --stability-percentage 10 --max-trials 5 \
  2>&1 | tee "$out/perf_analyzer.log" | tail -25
log "done"
# At most 8 files come back from $OUT: everything else travels in one archive.
(cd "$out" && tar czf results.tgz bench side serve.log && rm -rf bench side)
