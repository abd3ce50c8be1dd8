#!/usr/bin/env bash
# Issue 15 on a lent GPU machine, in one call: the README's GPU export with --compile aoti, the compiled model's
# first load through `tritonkit serve` (empty compile cache), then `tritonkit bench` with the compiled and the
# TorchScript path side by side (raw tables of both, batch-1 and batching rows, full-batch requests); the bench's
# "loaded ... in N s" lines are the loads with the cache in place (WARM_SERVE=1 also times one through serve).
# MAX_BATCH (default 128) is the export's max batch size. Carry [".whl"] (../shared/device-wheels.sh with
# WITH_PYTRITON=1). Results land in $OUT; a crash in any Python process prints its stack (PYTHONFAULTHANDLER).
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
work=/tmp/tritonkit-compile
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill -INT "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; fi
  true
}
trap cleanup EXIT
python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv | tee "$out/gpu.txt"
python3 -c 'import sys, numpy, torch; print(sys.version.split()[0], numpy.__version__, torch.__version__)' | tee -a "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 XDG_CACHE_HOME=/tmp/tritonkit-cache
rm -rf "$work" "$XDG_CACHE_HOME" && mkdir -p "$work" && cd "$work" || exit 1
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/steps.log"; }

log "export"
tritonkit export resnet50 --format torchscript --precision fp16 --uint8-input --channels-last --kind gpu \
  --max-batch-size "${MAX_BATCH:-128}" --compile aoti 2>&1 | tail -4 | tee "$out/export.log"

serve_until_ready() {  # $1: label; prints the seconds from start to ready
  local started=$(date +%s.%N)
  tritonkit serve --startup-timeout-s 400 > "$out/serve-$1.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 2000); do
    curl -sf localhost:8000/v2/health/ready > /dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.2
  done
  local ready=$(date +%s.%N)
  log "serve $1: ready after $(python3 -c "print(round($ready - $started, 1))") s"
  grep -a "tritonkit\|Fatal\|Segmentation\|File \"" "$out/serve-$1.log" | tail -40 | tee -a "$out/steps.log"
  tritonkit infer resnet50 --random 2>&1 | tail -2 | tee -a "$out/steps.log"
  kill -INT "$serve_pid"; wait "$serve_pid" 2>/dev/null; serve_pid=""
}
if [ -z "${SKIP_SERVE:-}" ]; then
  log "P9c: first load (empty compile cache)"
  serve_until_ready cold
  ls -la "$XDG_CACHE_HOME"/tritonkit/compile | tee -a "$out/steps.log"
  if [ -n "${WARM_SERVE:-}" ]; then
    log "P9c: load again (cache in place)"
    serve_until_ready warm
  fi
fi

log "bench: compiled and TorchScript side by side"
started=$(date +%s)
timeout "${BENCH_TIMEOUT_S:-400}" tritonkit bench resnet50 --configs "${CONFIGS:-i1,i1+script,i4b${MAX_BATCH:-128}d250,i4b${MAX_BATCH:-128}d250+script}" \
  ${BENCH_ARGS:-} --out "$out/bench" 2>&1 | tee "$out/bench.log"
log "tritonkit bench took $(( $(date +%s) - started )) s"
(cd "$out" && tar czf results.tgz bench serve-*.log && rm -rf bench serve-*.log)
