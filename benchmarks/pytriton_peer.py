"""PyTriton serving a TorchScript model, the way its documentation shows: a ``@batch`` callable on the GPU.

The peer that ``gpu_serving.py`` compares tritonkit with: the same tritonserver binary (from the same
nvidia-pytriton wheel), the same model file, the same dynamic batching and instance count, the same client load.
Every batch size is warmed up before the server opens, so TorchScript's first-call optimisation is not counted
against it.

    python benchmarks/pytriton_peer.py --model-file model.pt --name resnet50_pytriton --grpc-port 8101 ...

It serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


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


if __name__ == "__main__":
    main()
