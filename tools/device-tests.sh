#!/usr/bin/env bash
# Runs the serving tests on a lent GPU machine (the `device` tool), where tests/test_gpu.py is not skipped.
# That machine has torch but no registry: the wheels it lacks travel in .whl/ (../shared/device-wheels.sh .whl, plus
# the cp312 wheels of gevent, geventhttpclient, greenlet, zope.event, zope.interface, brotli and numpy==1.26.4, and
# tools/slim_pytriton_wheel.py to fit the 64 MiB carry), so call it with carry [".whl"]. Results land in $OUT.
# numpy goes back to 1.26 there: the python-backend stub in nvidia-pytriton 0.7 is built for numpy 1.x, and under
# numpy 2 it answered with outputs of the right shape and no data (seen on an H200, 2026-11-27).
set -euo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c 'import sys, numpy, torch, onnxruntime as o; print(sys.version.split()[0], numpy.__version__, torch.__version__, o.__version__)' \
  | tee -a "$out/gpu.txt"
if [ $# -eq 0 ]; then set -- tests/test_gpu.py tests/test_serving.py tests/test_embedded_server.py; fi
python3 -m pytest -q -ra -p no:cacheprovider "$@" 2>&1 | tee "$out/pytest.log"
