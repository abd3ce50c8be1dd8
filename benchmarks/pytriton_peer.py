"""PyTriton serving a TorchScript model, the way its documentation shows: a ``@batch`` callable on the GPU.

The peer that ``gpu_serving.py`` compares tritonkit with: the same tritonserver binary (from the same
nvidia-pytriton wheel), the same model file, the same dynamic batching and instance count, the same client load.
Every batch size is warmed up before the server opens, so TorchScript's first-call optimisation is not counted
against it.

    python benchmarks/pytriton_peer.py --model-file model.pt --name resnet50_pytriton --grpc-port 8101 ...

It serves until SIGINT/SIGTERM. ``pytriton_server()`` starts it from another process and waits until it is ready.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.loadgen import LoadSpec, run_load
from tritonkit.bench.runner import BenchSettings, output_byte_size
from tritonkit.repository import ModelConfig
from tritonkit.server.embedded import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--queue-delay-us", type=int, default=0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--input-shape", default="224,224,3")
    parser.add_argument("--input-dtype", default="uint8")
    parser.add_argument("--output-width", type=int, default=1000)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()

    import torch
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    device = torch.device("cuda", 0)
    module = torch.jit.load(str(args.model_file), map_location=device).eval()
    shape = tuple(int(d) for d in args.input_shape.split(","))
    dtype = np.dtype(args.input_dtype)
    with torch.inference_mode():
        for rows in range(1, args.max_batch + 1):
            for _ in range(2):
                module(torch.zeros((rows, *shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device=device))
    torch.cuda.synchronize()

    @batch
    def infer(input__0: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = module(torch.from_numpy(input__0).to(device))
        return {"output__0": result.float().cpu().numpy()}

    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        http_address="127.0.0.1",
        http_port=args.http_port,
        metrics_port=args.metrics_port,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=[infer] * args.instances,
            inputs=[Tensor(name="input__0", dtype=dtype, shape=shape)],
            outputs=[Tensor(name="output__0", dtype=np.float32, shape=(args.output_width,))],
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
            ),
            strict=False,
        )
        triton.serve()


@contextlib.contextmanager
def pytriton_server(model_file: Path, name: str, config: BenchConfig, log_path: Path) -> Iterator[str]:
    """PyTriton on free ports, ready to serve; stopped (its whole process group) on exit."""
    import tritonclient.grpc as grpcclient

    ports = [free_port("127.0.0.1") for _ in range(3)]
    command = [
        sys.executable,
        str(Path(__file__).with_name("pytriton_peer.py")),
        f"--model-file={model_file}",
        f"--name={name}",
        f"--max-batch={config.max_batch}",
        f"--queue-delay-us={config.queue_delay_us}",
        f"--instances={config.instances}",
        f"--grpc-port={ports[0]}",
        f"--http-port={ports[1]}",
        f"--metrics-port={ports[2]}",
    ]
    with log_path.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"127.0.0.1:{ports[0]}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"PyTriton exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(Exception):
                if grpcclient.InferenceServerClient(url).is_model_ready(name):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"PyTriton was not ready within 240 s; see {log_path}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def client_only_cell(
    url: str, name: str, base: ModelConfig, frames: int, concurrency: int, shared_memory: bool, settings: BenchSettings
) -> dict[str, Any]:
    """A cell against a server whose statistics are not read (PyTriton's): what the client saw."""
    tensor = base.proto.input[0]
    spec = LoadSpec(
        url=url,
        model=name,
        input_name=tensor.name,
        datatype="UINT8",
        shape=(frames, *tensor.dims),
        output_names=tuple(output.name for output in base.proto.output),
        concurrency=concurrency,
        warmup_s=settings.warmup_s,
        window_s=settings.window_s,
        shared_memory=shared_memory,
        output_byte_sizes=tuple(output_byte_size(output, frames) for output in base.proto.output),
    )
    result = run_load(spec, settings.processes_for(concurrency))
    return {
        "requests_per_s": result.completed / spec.window_s,
        "samples_per_s": result.completed * frames / spec.window_s,
        "p50_ms": result.percentile_ms(50),
        "p99_ms": result.percentile_ms(99),
        "failures": dict(result.failures),
        "client_cpu_us_per_request": result.client_cpu_s * 1e6 / max(result.completed, 1),
    }


if __name__ == "__main__":
    main()
