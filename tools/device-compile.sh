#!/usr/bin/env bash
# Issue 15 on a lent GPU machine, in one call: the README's GPU export with --compile, then `tritonkit bench` with
# the compiled and the TorchScript path side by side (raw tables of both, batch-1 and batching rows, full-batch
# requests). The bench's "compiled the program ... for the raw timing in N s" line is the first load (empty compile
# cache); its "loaded ... in N s" lines are loads with the cache in place. Carry [".whl"]
# (../shared/device-wheels.sh with WITH_PYTRITON=1). Results land in $OUT; a crash in any Python process prints its
# stack (PYTHONFAULTHANDLER).
#   COMPILE      aoti or inductor (default inductor)
#   MAX_BATCH    the export's max batch size (default 128)
#   BUCKETS      TRITONKIT_CUDA_GRAPH_BATCH_SIZES, e.g. 1,8,32,64,128 (default: the backend's own)
#   EXECUTOR     TRITONKIT_EXECUTOR for every configuration, e.g. shared (default: auto)
#   FREEZING     TRITONKIT_COMPILE_FREEZING, e.g. false (default: the backend's own, true)
#   TESTS        pytest arguments run first, e.g. "tests/test_gpu.py -k 'not aoti'" (default: none)
#   SERVE=1      also time the first load through `tritonkit serve` before the bench
#   CONFIGS, BENCH_ARGS   passed on to the bench
#   DEADLINE_S   the call's limit: the bench is stopped 20 s before it (default 590), so the logs still come back
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
repo=$(pwd)
work=/tmp/tritonkit-compile
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill -INT "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; fi
  true
}
trap cleanup EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/steps.log"; }
python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv | tee "$out/gpu.txt"
python3 -c 'import sys, numpy, torch; print(sys.version.split()[0], numpy.__version__, torch.__version__)' | tee -a "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
if [ -n "${TESTS:-}" ]; then
  log "pytest ${TESTS}"
  eval "timeout ${TESTS_TIMEOUT_S:-300} python3 -m pytest -q -ra -p no:cacheprovider ${TESTS}" > "$out/pytest.log" 2>&1
  tail -6 "$out/pytest.log" | tee -a "$out/steps.log"
fi
export XDG_CACHE_HOME=/tmp/tritonkit-cache
rm -rf "$work" "$XDG_CACHE_HOME" && mkdir -p "$work" && cd "$work" || exit 1
mode=${COMPILE:-inductor}
batch=${MAX_BATCH:-128}

log "export (--compile $mode, max batch $batch)"
tritonkit export resnet50 --format torchscript --precision fp16 --uint8-input --channels-last --kind gpu \
  --max-batch-size "$batch" --compile "$mode" 2>&1 | tail -4 | tee "$out/export.log"
BUCKETS=${BUCKETS:-} EXECUTOR=${EXECUTOR:-} FREEZING=${FREEZING:-} python3 - <<'EOF' | tee -a "$out/steps.log"
import os
from tritonkit.repository import ModelConfig
config = ModelConfig.load("model_repository/resnet50")
settings = {"TRITONKIT_CUDA_GRAPH_BATCH_SIZES": "BUCKETS", "TRITONKIT_EXECUTOR": "EXECUTOR",
            "TRITONKIT_COMPILE_FREEZING": "FREEZING"}
for key, env in settings.items():
    if os.environ[env]:
        config.proto.parameters[key].string_value = os.environ[env]
        print(f"config.pbtxt: {key} {os.environ[env]}")
config.save("model_repository/resnet50/config.pbtxt")
EOF

if [ -n "${SERVE:-}" ]; then
  log "first load through tritonkit serve (empty compile cache)"
  started=$(date +%s.%N)
  tritonkit serve --startup-timeout-s 400 > "$out/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 2000); do
    curl -sf localhost:8000/v2/health/ready > /dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.2
  done
  log "serve: ready after $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
  tritonkit infer resnet50 --random 2>&1 | tail -2 | tee -a "$out/steps.log"
  kill -INT "$serve_pid"; wait "$serve_pid" 2>/dev/null; serve_pid=""
fi

log "bench: compiled and TorchScript side by side"
started=$(date +%s)
timeout "$(( ${DEADLINE_S:-590} - SECONDS - 20 ))" tritonkit bench resnet50 --configs "${CONFIGS:-i1,i1+script,i4b${batch}d250,i4b${batch}d250+script}" \
  ${BENCH_ARGS:-} --out "$out/bench" 2>&1 | tee "$out/bench.log"
log "tritonkit bench took $(( $(date +%s) - started )) s"
grep -a "tritonkit pytorch backend\|tritonkit executor\|Fatal\|killed" "$out"/bench/tritonserver.log 2>/dev/null | head -40 \
  | tee -a "$out/steps.log"
cd "$repo" && (cd "$out" && tar czf results.tgz bench 2>/dev/null && rm -rf bench)
true
