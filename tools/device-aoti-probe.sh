#!/usr/bin/env bash
# Which processes can load an AOTInductor package (issue 15): the stubs that serve one load it, while the bench's
# raw-timing child and the shared executor, plain `python -m` processes, died in aoti_load_package with a
# segmentation fault (H200, 2026-12-01). This builds the package once, loads it in one fresh process per variant,
# records each exit code, and takes the native stack of the first crash with cuda-gdb (the machine has no gdb).
# Then, unless SKIP_TESTS=1, the GPU tests. Carry [".whl"]. Results land in $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
repo=$(pwd)
python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv | tee "$out/gpu.txt"
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
work=/tmp/tritonkit-aoti-probe
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/probe.log"; }

log "export and build"
tritonkit export resnet50 --format torchscript --precision fp16 --uint8-input --channels-last --kind gpu \
  --max-batch-size 128 --compile aoti 2>&1 | tail -1 | tee -a "$out/probe.log"
package=$work/resnet50.pt2
python3 -m tritonkit.server.backends.pytorch.compile model_repository/resnet50/1/model.pt2 "$package" cuda:0 \
  2>&1 | grep -v Warning | tail -2 | tee -a "$out/probe.log"

cat > "$work/load.py" <<'EOF'
import sys, time
variant, package = sys.argv[1], sys.argv[2]
if "tritonkit-first" in variant:
    import tritonkit.server.backends.pytorch.loading  # what the bench child and the executor import before torch
if "grpc-first" in variant:
    import grpc  # noqa: F401
import torch
if "no-set-device" not in variant:
    torch.cuda.set_device(0)
if "cuda-init" in variant:
    torch.zeros(1, device="cuda")
started = time.perf_counter()
if variant == "load-served":  # as the bench child loads it: through the backend's loader, the package in its cache
    import shutil
    from pathlib import Path
    import numpy as np
    from tritonkit.repository.samples import TensorShape
    from tritonkit.server.backends.pytorch.compile import package_key
    from tritonkit.server.backends.pytorch.loading import load_served
    model_file = Path("model_repository/resnet50/1/model.pt")
    cache = Path("probe-cache")
    cache.mkdir(exist_ok=True)
    key = package_key(model_file.with_name("model.pt2"), torch.device("cuda", 0), 128)
    shutil.copy(package, cache / f"resnet50-{key}.pt2")
    params = {"TRITONKIT_COMPILE": "aoti", "TRITONKIT_COMPILE_CACHE": str(cache.resolve())}
    tensors = [TensorShape("input__0", np.dtype(np.uint8), (224, 224, 3))]
    model = load_served(model_file, "GPU", 0, params, model_name="resnet50", inputs=tensors, max_batch=128).module
else:
    model = torch._inductor.aoti_load_package(package, device_index=0)
print(f"{variant}: loaded in {time.perf_counter() - started:.1f} s", flush=True)
x = torch.randint(0, 256, (8, 224, 224, 3), dtype=torch.uint8, device="cuda")
with torch.inference_mode():
    y = model(x)
torch.cuda.synchronize()
print(f"{variant}: ran, output {tuple(y[0].shape if isinstance(y, (list, tuple)) else y.shape)}", flush=True)
EOF
first_crash=""
for variant in plain no-set-device cuda-init grpc-first tritonkit-first tritonkit-first-cuda-init load-served; do
  python3 "$work/load.py" "$variant" "$package" > "$out/load-$variant.log" 2>&1
  code=$?
  log "variant $variant: exit code $code; $(grep -a "loaded in\|ran," "$out/load-$variant.log" | tr '\n' ' ')"
  if [ "$code" -ne 0 ] && [ -z "$first_crash" ]; then first_crash=$variant; fi
done
log "variant cwd-repo (cwd $repo): $(cd "$repo" && python3 "$work/load.py" plain "$package" 2>&1 | grep -a "ran,\|Fatal" | tr '\n' ' ')"
gdb=$(command -v cuda-gdb || ls /usr/local/cuda*/bin/cuda-gdb 2>/dev/null | head -1)
if [ -n "$first_crash" ] && [ -n "$gdb" ]; then
  log "native stack of $first_crash ($gdb)"
  PYTHONFAULTHANDLER= timeout 180 "$gdb" -batch -ex "set pagination off" -ex run -ex bt -ex "info sharedlibrary" \
    --args python3 "$work/load.py" "$first_crash" "$package" > "$out/gdb.log" 2>&1
  grep -a "^#" "$out/gdb.log" | head -40 | tee -a "$out/probe.log"
fi
cd "$repo" || exit 1
if [ -z "${SKIP_TESTS:-}" ]; then
  log "GPU tests"
  python3 -m pytest -q -ra -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/pytest.log" | tail -15
fi
log "done"
