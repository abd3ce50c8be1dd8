"""The backend directory the embedded server runs on, laid out and owned by tritonkit.

Triton looks up ``<backend-dir>/<backend>/`` for every model. The pip-installed server carries only the python
backend, so tritonkit adds its own Python-based backends under the names of Triton's native ones, ``onnxruntime``
and ``pytorch``: a repository written for the official container then serves here unchanged.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from tritonkit.repository.backends import SERVABLE_BACKENDS
from tritonkit.server.distribution import TritonDistribution

__all__ = ["PYTHON_BASED_BACKENDS", "lay_out_backend_dir"]

# Every backend tritonkit serves, it serves here through a Python-based one of its own.
PYTHON_BASED_BACKENDS = SERVABLE_BACKENDS
_BACKENDS_SOURCE = Path(__file__).resolve().parent / "backends"


def lay_out_backend_dir(destination: Path, distribution: TritonDistribution) -> Path:
    """Fill ``destination`` with the python backend, its stub and tritonkit's backends; return it."""
    python_dir = destination / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(distribution.python_backend_dir / item, python_dir / item)
    stub = python_dir / "triton_python_backend_stub"
    shutil.copy2(distribution.python_stub, stub)
    # Wheels unpacked by zipfile lose their exec bits; the stub is useless without them.
    os.chmod(stub, os.stat(stub).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    for backend in PYTHON_BASED_BACKENDS:
        backend_dir = destination / backend
        backend_dir.mkdir(exist_ok=True)
        shutil.copy2(_BACKENDS_SOURCE / backend / "model.py", backend_dir / "model.py")
    return destination
