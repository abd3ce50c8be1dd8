"""The raw model at batch 1 in N separate processes at once, with or without an MPS daemon: no server at all.

This is the hardware side of "N instances vs 1": each process is what a python-backend stub is (its own CUDA
context), minus all serving work. Every worker captures the batch-1 CUDA graph, waits for a common start time,
then replays it back to back for a fixed window, synchronising every 8 calls: a queue deep enough to keep the
card fed, which favours the hardware over any serving loop (an instance has one call in flight). The sum over
the workers, set against one worker alone, is the best that N instances in separate processes can get.

    python -m tritonkit.bench.raw_processes MODEL_FILE START_AT WINDOW_S    # one worker; prints its samples/s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["processes_bs1"]

_SYNC_EVERY = 8


def processes_bs1(
    model_file: Path, processes: int, env: dict[str, str], *, window_s: float = 3.0, ready_s: float = 20.0
) -> tuple[float, list[int]]:
    """Total samples/s of ``processes`` workers replaying the batch-1 graph side by side, and their pids."""
    start_at = time.time() + ready_s  # every worker has loaded and captured by then (a few seconds each)
    command = [sys.executable, "-m", "tritonkit.bench.raw_processes", str(model_file), str(start_at), str(window_s)]
    workers = [
        subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    rates = []
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        if worker.returncode != 0:
            raise RuntimeError(f"raw worker exited with code {worker.returncode}")
        report = json.loads(output.strip().splitlines()[-1])
        if report["late"]:
            raise RuntimeError("a raw worker was not ready by the common start time")
        rates.append(report["samples_per_s"])
    return sum(rates), [worker.pid for worker in workers]


def _worker(model_file: Path, start_at: float, window_s: float) -> dict[str, object]:
    import torch

    from tritonkit.bench.raw import RawInputs
    from tritonkit.bench.raw_cuda import CudaRawModel

    raw = CudaRawModel(model_file, inputs=RawInputs.single("UINT8", (224, 224, 3)))
    replay = raw.warmed_call("graph", 1)
    stream = raw.stream
    with torch.cuda.stream(stream):
        for _ in range(20):
            replay()
    stream.synchronize()
    late = time.time() > start_at
    while time.time() < start_at:
        time.sleep(0.001)
    calls = 0
    started = time.perf_counter()
    with torch.cuda.stream(stream):
        while time.perf_counter() - started < window_s:
            for _ in range(_SYNC_EVERY):
                replay()
            stream.synchronize()
            calls += _SYNC_EVERY
    return {"samples_per_s": calls / (time.perf_counter() - started), "late": late}


if __name__ == "__main__":
    print(json.dumps(_worker(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))), flush=True)
