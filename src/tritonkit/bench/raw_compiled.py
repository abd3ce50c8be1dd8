"""The compiled program's raw timing in a process of its own, asked batch by batch over a pipe.

An AOTInductor package loaded into the bench process, next to the TorchScript module the bench times there, took
that process down (a segmentation fault, seen on an H200); the stubs that serve it load nothing else. So the
compiled model is timed where only it lives: a child process holds a
:class:`~tritonkit.bench.raw_cuda.CudaRawModel` around the compiled module (made as the backend makes it, through the
same compile cache) and answers one JSON line per question.

    python -m tritonkit.bench.raw_compiled SPEC_JSON    # reads {"row"|"measure": BATCH} lines, writes answers
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from tritonkit.bench.raw import RawInputs, RawMeasurement
from tritonkit.errors import ModelNotReady
from tritonkit.repository.samples import SAMPLES_PARAMETER, SampleSpec, TensorShape
from tritonkit.server.processes import exit_description

__all__ = ["CompiledRawModel"]


class CompiledRawModel:
    """A :class:`~tritonkit.bench.raw.RawLike` whose timings come from the child process; ``close()`` ends it."""

    def __init__(
        self, model_file: Path, *, inputs: RawInputs, parameters: Mapping[str, str], model_name: str, max_batch: int
    ) -> None:
        spec = {
            "model_file": str(model_file),
            "parameters": dict(parameters),
            "model_name": model_name,
            "max_batch": max_batch,
            "tensors": [{"name": t.name, "dtype": t.dtype.str, "dims": list(t.dims)} for t in inputs.tensors],
            "samples": inputs.samples.to_parameter(),
        }
        command = [sys.executable, "-m", "tritonkit.bench.raw_compiled", json.dumps(spec)]
        self.model_name = model_name
        self._child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._ask("ready", 0)

    def _ask(self, question: str, batch_size: int) -> dict[str, Any]:
        key = (question, batch_size)
        if key not in self._cache:
            assert self._child.stdin is not None and self._child.stdout is not None
            try:
                self._child.stdin.write(json.dumps({question: batch_size}) + "\n")
                self._child.stdin.flush()
                line = self._child.stdout.readline()
            except OSError:
                line = ""
            if not line:
                code = self._child.wait()
                raise ModelNotReady(
                    f"the compiled program of {self.model_name!r} could not be timed: its timing process "
                    f"{exit_description(code)} (its message is above)"
                )
            self._cache[key] = json.loads(line)
        return self._cache[key]

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement:
        del duration_s  # the event timing sizes its own blocks
        answer = self._ask("measure", batch_size)
        return RawMeasurement(batch_size, answer["samples_per_s"], answer["median_call_ms"])

    def table_row(self, batch_size: int) -> dict[str, Any]:
        return self._ask("row", batch_size)

    def close(self) -> None:
        if self._child.poll() is None:
            assert self._child.stdin is not None
            self._child.stdin.close()
            try:
                self._child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()


def _serve(spec: Mapping[str, Any], questions: IO[str], answers: IO[str]) -> None:
    from tritonkit.bench.raw_cuda import CudaRawModel
    from tritonkit.server.backends.pytorch.loading import load_served

    tensors: Sequence[TensorShape] = [
        TensorShape(t["name"], np.dtype(t["dtype"]), tuple(t["dims"])) for t in spec["tensors"]
    ]
    inputs = RawInputs(tensors, SampleSpec.from_parameters({SAMPLES_PARAMETER: spec["samples"]}))
    model_file = Path(spec["model_file"])
    served = load_served(
        model_file, "GPU", 0, spec["parameters"], model_name=spec["model_name"], inputs=tensors,
        max_batch=int(spec["max_batch"]),
    )  # fmt: skip
    raw = CudaRawModel(model_file, inputs=inputs, module=served.module)
    for line in questions:
        ((question, batch_size),) = json.loads(line).items()
        if question == "ready":
            answer: dict[str, Any] = {}
        elif question == "row":
            answer = raw.table_row(int(batch_size))
        else:
            measured = raw.measure(int(batch_size))
            answer = {"samples_per_s": measured.samples_per_s, "median_call_ms": measured.median_call_ms}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    # Answers go to the pipe that was stdout; anything torch or compiled code prints (Python or C) goes to stderr.
    import os

    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _serve(json.loads(sys.argv[1]), sys.stdin, answers)
