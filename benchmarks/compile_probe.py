"""Which ``torch.compile`` settings serve ResNet-50 fastest, at what load time (issue 15: measure before building).

    python -m benchmarks.compile_probe --out DIR [--buckets 1,2,4,8,16,32,64]

Each variant runs in a fresh process, twice over the same inductor cache folder (a cold load, then a restart that
finds the cache), so the second load time is what a user waits at every restart. Every variant serves through the
backend's own :class:`GpuBatchRunner` (pinned staging, CUDA graphs per bucket, the graph checked against the
module), so the throughput is what a KIND_GPU instance would get, host copies included. The TorchScript file the
export writes today is measured in the same run. Results: one JSON line per run in ``DIR/compile_probe.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = {
    # name: (artifact, torch.compile keyword arguments, inductor config)
    "torchscript": ("script", None, {}),
    "static": ("eager", {"dynamic": False}, {"freezing": True}),
    "static_nofreeze": ("eager", {"dynamic": False}, {"freezing": False}),
    "dynamic": ("eager", {"dynamic": True}, {"freezing": True}),
    "pt2_static": ("pt2", {"dynamic": False}, {"freezing": True}),
    "pt2_dynamic": ("pt2", {"dynamic": True}, {"freezing": True}),
}


def served_module(device: Any) -> Any:
    """What ``tritonkit export resnet50 --precision fp16 --uint8-input --channels-last`` serves."""
    import torch

    from tritonkit.export.models import UInt8Frames, load_model
    from tritonkit.export.precision import HalfPrecision

    module = UInt8Frames(HalfPrecision(load_model("resnet50", weights=None, seed=0))).eval().to(device)
    return module.to(memory_format=torch.channels_last)


def artifact(kind: str, folder: Path, device: Any) -> Any:
    import torch

    module = served_module(device)
    sample = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8, device=device)
    if kind == "eager":
        return module
    if kind == "script":
        path = folder / "model.pt"
        if not path.exists():
            with torch.no_grad():
                torch.jit.save(torch.jit.freeze(torch.jit.trace(module, (sample,))), str(path))
        return torch.jit.load(str(path), map_location=device).eval()
    path = folder / "model.pt2"
    if not path.exists():
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.export.export(module, (sample,), dynamic_shapes={"frames": {0: batch}}, strict=False)
        torch.export.save(program, str(path))
    return torch.export.load(str(path)).module()


def run_variant(name: str, folder: Path, buckets: list[int]) -> dict[str, Any]:
    import numpy as np
    import torch

    from tritonkit.server.backends.gpu_runner import GpuBatchRunner

    kind, compile_kwargs, inductor = VARIANTS[name]
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    module = artifact(kind, folder, device)
    loaded_s = time.perf_counter() - started
    plain = module
    if compile_kwargs is not None:
        import torch._inductor.config as inductor_config

        for key, value in inductor.items():
            setattr(inductor_config, key, value)
        # One compile per bucket with static shapes: dynamo's default limit (8) would silently fall back to eager.
        torch._dynamo.config.recompile_limit = 64
        module = torch.compile(module, **compile_kwargs)
    compile_started = time.perf_counter()
    runner = GpuBatchRunner(
        module,
        device,
        model_name=name,
        input_shapes=[(224, 224, 3)],
        input_dtypes=[np.dtype(np.uint8)],
        max_batch=buckets[-1],
        buckets=buckets,
        use_graphs=True,
        grad_mode=torch.inference_mode,
        split_outputs=lambda result: [result],
    )
    ready_s = time.perf_counter() - compile_started
    # The compiled module against the plain one, on the same random frames.
    frames = torch.randint(0, 256, (buckets[-1], 224, 224, 3), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        error = (module(frames).float() - plain(frames).float()).abs().max().item()
    from torch._dynamo.utils import counters

    result: dict[str, Any] = {
        "variant": name,
        "artifact_load_s": round(loaded_s, 2),
        "warm_and_capture_s": round(ready_s, 2),
        "graphs": runner.uses_graphs,
        "graph_failure": runner.graph_failure,
        "max_abs_error_vs_plain": error,
        "fxgraph_cache": {k: v for k, v in counters["inductor"].items() if "cache" in k},
        "rates": {},
    }
    staged = runner.host_input_arrays[0]
    staged[...] = np.random.default_rng(0).integers(0, 256, size=staged.shape, dtype=np.uint8)
    for rows in sorted({1, 8, buckets[-1]} & set(buckets)):
        for _ in range(20):
            runner.run_staged(rows)
        calls = max(50, int(2000 / rows))
        begun = time.perf_counter()
        for _ in range(calls):
            runner.run_staged(rows)
        elapsed = time.perf_counter() - begun
        rate = {"call_ms": round(elapsed * 1000 / calls, 4), "img_s": round(rows * calls / elapsed)}
        result["rates"][str(rows)] = rate
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compile-probe"))
    parser.add_argument("--buckets", default="1,2,4,8,16,32,64")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--runs", type=int, default=2, help="runs per variant over one cache folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    buckets = [int(b) for b in args.buckets.split(",")]
    if args.child:
        print("RESULT " + json.dumps(run_variant(args.child, args.folder, buckets)), flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "compile_probe.jsonl"
    folder = Path(tempfile.mkdtemp(prefix="compile-probe-"))
    for name in args.variants.split(","):
        cache = folder / f"cache-{name}"
        for run in range(1, args.runs + 1 if VARIANTS[name][1] is not None else 2):
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
            begun = time.perf_counter()
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.compile_probe", "--child", name, "--folder", str(folder),
                 "--buckets", args.buckets],
                env=env, capture_output=True, text=True, timeout=420,
            )  # fmt: skip
            line = next((x for x in child.stdout.splitlines() if x.startswith("RESULT ")), None)
            record: dict[str, Any] = json.loads(line[7:]) if line else {"variant": name, "failed": child.stderr[-2000:]}
            record.update(run=run, process_s=round(time.perf_counter() - begun, 1), buckets=buckets)
            with results.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
