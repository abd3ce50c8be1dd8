"""Where the pip-installed Triton server lives: the `tritonserver` 2.51 binary inside the nvidia-pytriton wheel."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tritonkit.errors import ServerUnavailable

__all__ = ["TritonDistribution", "find_distribution"]


@dataclass(frozen=True)
class TritonDistribution:
    """The files of one Triton server build that an embedded server needs."""

    binary: Path
    libs_dir: Path
    python_backend_dir: Path
    python_stub: Path

    def library_path(self) -> str:
        """LD_LIBRARY_PATH for the server and its python-backend stubs.

        The interpreter's own LIBDIR goes first: the stub embeds libpython, and without it the loader may pick a
        different patch release than the stdlib the stub then imports (seen: Debian's 3.11.2 under pyenv's 3.11.7,
        which broke multiprocessing inside the stub).
        """
        parts = [sysconfig.get_config_var("LIBDIR") or "", str(self.libs_dir)]
        return ":".join(p for p in parts if p)


def find_distribution() -> TritonDistribution:
    """Locate the server binary, its bundled libraries, the python backend and the stub for this interpreter."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailable(
            "the embedded Triton server needs the nvidia-pytriton wheel: pip install 'tritonkit[server]'"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    server_dir = package_dir / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    distribution = TritonDistribution(
        binary=server_dir / "bin" / "tritonserver",
        libs_dir=package_dir.parent / "nvidia_pytriton.libs",
        python_backend_dir=server_dir / "backends" / "python",
        python_stub=server_dir / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    for path in (distribution.binary, distribution.python_backend_dir, distribution.python_stub):
        if not path.exists():
            raise ServerUnavailable(
                f"incomplete nvidia-pytriton install: {path} is missing"
                + (f" (no python backend stub for Python {version})" if path == distribution.python_stub else "")
            )
    return distribution
