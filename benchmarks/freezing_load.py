"""What inductor's ``freezing`` costs at every load, through the backend's own compile (issue 15, P9c).

    python -m benchmarks.freezing_load [--model resnet18] [--batches 1,8] [--device cpu]

Exports MODEL with ``--compile inductor``, then loads its program the way tritonkit's pytorch backend does
(:func:`~tritonkit.server.backends.pytorch.compile.compile_program`, warming every batch size) in a fresh process,
four times: with and without ``TRITONKIT_COMPILE_FREEZING``, each with an empty inductor cache and again with that
cache in place. The second load of each is what a restart waits. Prints one line per load, with the backend's
account of it (graphs found in inductor's cache, time per phase).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_LOAD = """
import json, sys, time
from pathlib import Path
import torch
from tritonkit.bench.runner import sample_spec, tensor_shapes
from tritonkit.repository import ModelConfig
from tritonkit.repository.compiled import PROGRAM_FILENAME, CompileSettings
from tritonkit.server.backends.pytorch.compile import compile_program

model_dir, cache, freezing, batches, device = sys.argv[1:6]
config = ModelConfig.load(Path(model_dir))
started = time.perf_counter()
compile_program(
    Path(model_dir) / "1" / PROGRAM_FILENAME, CompileSettings("inductor", Path(cache), freezing == "1"),
    torch.device(device), model_name=config.name, inputs=tensor_shapes(config), samples=sample_spec(config),
    max_batch=config.max_batch_size, grad_mode=torch.inference_mode,
    warm_batches=[int(b) for b in batches.split(",")],
)
print(json.dumps({"load_s": round(time.perf_counter() - started, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from tritonkit.export import ExportOptions, export_model

    top = max(int(b) for b in args.batches.split(","))
    with tempfile.TemporaryDirectory(prefix="tritonkit-freezing-") as folder:
        repository = Path(folder)
        kind = "gpu" if args.device.startswith("cuda") else "cpu"
        export_model(args.model, ExportOptions(format="torchscript", repository=repository, max_batch_size=top,
                                               kind=kind, compile="inductor"))  # fmt: skip
        for freezing in ("1", "0"):
            cache = repository / f"cache-{freezing}"
            for attempt in ("empty cache", "cache in place"):
                command = [sys.executable, "-c", _LOAD, str(repository / args.model), str(cache), freezing,
                           args.batches, args.device]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.exit(f"error: the load failed:\n{done.stderr[-2000:]}")
                load_s = json.loads(done.stdout.strip().splitlines()[-1])["load_s"]
                label = "freezing" if freezing == "1" else "no freezing"
                # The backend's own line says where the load went (graphs found in the cache, phase times).
                breakdown = [line.split(" s: ", 1)[-1] for line in done.stderr.splitlines() if "compiled (" in line]
                print(f"{args.model} on {args.device}, {label}, {attempt}: loaded in {load_s} s "
                      f"(batch sizes {args.batches}); {'; '.join(breakdown)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
