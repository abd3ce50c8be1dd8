"""GPU facts for a bench: utilisation sampled during a measurement window, and an NVIDIA MPS daemon.

The MPS daemon runs in the card's default compute mode: tritonkit never changes a card's settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

__all__ = ["GpuSampler", "gpu_names", "mps_available", "mps_daemon", "mps_environment"]


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi lists, or none where there is no NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()] if listing.returncode == 0 else []


class GpuSampler:
    """Mean GPU utilisation (%) and peak memory (MiB) over a ``with`` block; None where there is no GPU."""

    def __init__(self, interval_ms: int = 200) -> None:
        self.interval_ms = interval_ms
        self.utilisation_pct: float | None = None
        self.memory_mib: float | None = None
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> GpuSampler:
        if gpu_names():
            self._process = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    f"-lms={self.interval_ms}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        self._process.terminate()
        output, _ = self._process.communicate(timeout=10)
        samples = []
        for line in output.splitlines():
            with contextlib.suppress(ValueError):
                utilisation, memory = (float(value) for value in line.split(",")[:2])
                samples.append((utilisation, memory))
        if samples:
            self.utilisation_pct = sum(s[0] for s in samples) / len(samples)
            self.memory_mib = max(s[1] for s in samples)


def mps_available() -> bool:
    return bool(gpu_names()) and shutil.which("nvidia-cuda-mps-control") is not None


def mps_environment(directory: Path) -> dict[str, str]:
    """Where MPS clients and the daemon meet; the server must start with these so its stubs find the daemon."""
    return {
        "CUDA_MPS_PIPE_DIRECTORY": str(directory / "pipe"),
        "CUDA_MPS_LOG_DIRECTORY": str(directory / "log"),
    }


@contextlib.contextmanager
def mps_daemon(directory: Path | None = None) -> Iterator[dict[str, str]]:
    """Start an MPS control daemon (default compute mode) and always quit it, also when the block fails."""
    owned = directory is None
    root = Path(tempfile.mkdtemp(prefix="tritonkit-mps-")) if directory is None else directory
    env = mps_environment(root)
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env}
    subprocess.run(["nvidia-cuda-mps-control", "-d"], env=full_env, check=True, timeout=30)
    try:
        yield env
    finally:
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=full_env, timeout=60, check=False)
        if owned:
            shutil.rmtree(root, ignore_errors=True)
