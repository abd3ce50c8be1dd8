"""The stub's side of the shared executor: find or start the one process that runs a model on a device, and use it.

Triton's python backend runs every model instance as its own stub process. Several stubs on one GPU are several
CUDA contexts, and a GPU runs one context at a time: instances of a batch-1 model in contexts of their own take
turns on the GPU instead of sharing it (docs/performance.md). With the shared executor, the stubs keep the
per-request work (reading requests, building responses: parallel over processes) and hand each batch to one
executor process per model and device, which owns the CUDA context, the weights (once) and one *lane* per stub: a
CUDA stream with its own page-locked buffers and CUDA graphs. Lanes run side by side in one context, the way the
native libtorch backend runs its instances.

The data path has no extra copy: the executor creates each lane's buffers as memfds, page-locks them and passes
the file descriptors to the stub over a Unix socket (``SCM_RIGHTS``); the stub writes the requests' rows straight
into the input buffers and answers from views of the output buffers. A call is one 4-byte message each way.

The first stub of a model load starts the executor (a file lock keeps the others waiting); the executor exits
when its last stub has gone, or when the server has.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit.server.backends.base import positive_count
from tritonkit.server.backends.gpu_runner import stage_rows
from tritonkit.server.processes import exit_description

__all__ = [
    "EXECUTOR_MODES",
    "ExecutorRunner",
    "ExecutorSpec",
    "LaneTensor",
    "executor_folder",
    "executor_socket_path",
    "remove_executor_files",
    "resolve_executor_mode",
    "serial_rows",
    "server_python",
]

EXECUTOR_MODES = ("auto", "shared", "in_process")
RUN = struct.Struct("<I")  # stub -> executor: rows staged in the lane's input buffers
OK, FAILED = b"K", b"E"  # executor -> stub: outputs written, or b"E" and the reason
_MAX_MESSAGE = 1 << 16


@dataclass(frozen=True)
class LaneTensor:
    """One input of a lane: its name, numpy dtype string and per-sample dims (fixed: lanes have fixed buffers)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ExecutorSpec:
    """What a stub tells the executor it starts: the model, its device, its parameters, its tensors in order."""

    model_name: str
    model_file: str
    kind: str  # "CPU" or "GPU"
    device_id: int
    parameters: dict[str, str]
    max_batch_size: int
    inputs: tuple[LaneTensor, ...]
    outputs: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExecutorSpec:
        raw = json.loads(text)
        inputs = tuple(LaneTensor(t["name"], t["dtype"], tuple(int(d) for d in t["dims"])) for t in raw["inputs"])
        return cls(
            model_name=str(raw["model_name"]),
            model_file=str(raw["model_file"]),
            kind=str(raw["kind"]),
            device_id=int(raw["device_id"]),
            parameters={str(k): str(v) for k, v in raw["parameters"].items()},
            max_batch_size=int(raw["max_batch_size"]),
            inputs=inputs,
            outputs=tuple(str(name) for name in raw["outputs"]),
        )


def resolve_executor_mode(
    text: str | None,
    *,
    model_name: str,
    kind: str,
    instances_on_device: int,
    batchable: bool,
    compile_mode: str | None = None,
) -> str:
    """``TRITONKIT_EXECUTOR``: "shared" or "in_process" for this instance; "auto" picks shared for KIND_GPU
    models with more than one instance on the device (one instance has nothing to share).

    An AOTInductor package stays in the stubs: with torch 2.11 on a GPU it crashed every plain Python process that
    loaded it, the executor's among them, while the python-backend stubs served it (docs/performance.md).
    """
    mode = (text or "auto").strip().lower()
    if mode not in EXECUTOR_MODES:
        raise ValueError(f"model {model_name!r}: TRITONKIT_EXECUTOR {text!r} is not one of {', '.join(EXECUTOR_MODES)}")
    if mode == "shared" and not batchable:
        raise ValueError(
            f"model {model_name!r}: TRITONKIT_EXECUTOR 'shared' needs max_batch_size > 0 and inputs without "
            "variable (-1) dims, so that every lane's buffers have a fixed size"
        )
    if mode == "shared" and compile_mode == "aoti" and kind == "GPU":
        raise ValueError(
            f"model {model_name!r}: TRITONKIT_EXECUTOR 'shared' cannot serve an AOTInductor package (TRITONKIT_COMPILE "
            "'aoti'): it crashes the executor's process as it loads; set TRITONKIT_EXECUTOR to in_process, or "
            "TRITONKIT_COMPILE to inductor"
        )
    if mode == "auto":
        shares = kind == "GPU" and instances_on_device > 1 and batchable and compile_mode != "aoti"
        return "shared" if shares else "in_process"
    return mode


def serial_rows(parameters: Mapping[str, str], *, model_name: str, max_batch: int) -> int:
    """``TRITONKIT_EXECUTOR_SERIAL_ROWS``: batches this big run one after another on the GPU (default 8).

    8 is the row count that served the most single frames at 64 requests in flight, against a larger one and against
    no ordering at all (docs/performance.md, batching sweep).
    """
    text = parameters.get("TRITONKIT_EXECUTOR_SERIAL_ROWS")
    if text is None:
        return min(8, max(max_batch, 1))
    return positive_count(text, key="TRITONKIT_EXECUTOR_SERIAL_ROWS", noun="row count", model_name=model_name)


def executor_socket_path(spec: ExecutorSpec) -> Path:
    """Where the executor for ``spec`` listens: one per server process, model file, configuration and device.

    The model file's identity is part of the key, so a reload of a changed file gets a fresh executor while
    the old one finishes serving its stubs.
    """
    stat = os.stat(spec.model_file)
    identity = json.dumps({**asdict(spec), "file": [stat.st_ino, stat.st_size, stat.st_mtime_ns]}, sort_keys=True)
    folder = executor_folder()
    folder.mkdir(mode=0o700, exist_ok=True)
    # Unix socket paths are limited to about 100 bytes: a digest, not the model's name. The server's pid (the
    # stub's parent) leads, so the launcher can remove a stopped server's files.
    return folder / f"{os.getppid()}-{hashlib.sha256(identity.encode()).hexdigest()[:24]}.sock"


def executor_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"tritonkit-executors-{os.getuid()}"


def remove_executor_files(server_pid: int) -> None:
    """Remove the socket, lock and error files of a stopped server's executors."""
    folder = executor_folder()
    if folder.is_dir():
        for entry in folder.glob(f"{server_pid}-*"):
            with contextlib.suppress(OSError):
                entry.unlink()


def server_python() -> str:
    # Inside a stub, sys.executable may be the stub binary; the python3 first on PATH is the server's environment.
    if Path(sys.executable).name.startswith("python"):
        return sys.executable
    return shutil.which("python3") or sys.executable


class ExecutorRunner:
    """A lane of the shared executor, used as the backend's parts runner (see ``BatchingBackendModel``)."""

    def __init__(self, spec: ExecutorSpec, *, instance: str, start_timeout_s: float = 600.0) -> None:
        self.spec = spec
        self.instance = instance
        self.start_timeout_s = start_timeout_s
        self.model_name = spec.model_name
        self.clock: Any = None  # a PhaseClock, when the backend profiles
        self.socket_path = executor_socket_path(spec)
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._attach()

    def _attach(self) -> None:
        """Connect (starting the executor if none listens) and map the lane it hands this instance."""
        for _ in range(3):
            sock = self._connect_or_start(self.spec, self.start_timeout_s)
            sock.send(json.dumps({"instance": self.instance}).encode())
            message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 64)
            if message:
                break
            # An executor that was exiting (its last instance had just gone) closed the connection: start anew.
            sock.close()
            time.sleep(0.1)
        try:
            lane = json.loads(message or b"{}")
            if "error" in lane or not message:
                raise RuntimeError(
                    f"model {self.model_name!r}: the shared executor could not give this instance a lane: "
                    f"{lane.get('error', 'it closed the connection')}"
                )
            inputs, outputs = lane["inputs"], lane["outputs"]
            self.input_arrays = [self._map(fd, entry) for fd, entry in zip(fds, inputs)]
            self.output_arrays = [self._map(fd, entry) for fd, entry in zip(fds[len(inputs) :], outputs)]
        except BaseException:
            sock.close()
            raise
        finally:
            for fd in fds:  # each mapping holds its own reference
                os.close(fd)
        self.lane = int(lane["lane"])
        self.executor_pid = int(lane["pid"])
        self.uses_graphs = bool(lane["graphs"])
        self._sock = sock

    @staticmethod
    def _map(fd: int, entry: Mapping[str, Any]) -> np.ndarray:
        dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
        size = int(np.prod(shape)) * dtype.itemsize
        buffer = mmap.mmap(fd, max(size, 1), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def _try_connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        return sock

    def _connect_or_start(self, spec: ExecutorSpec, timeout_s: float) -> socket.socket:
        lock_path = self.socket_path.with_suffix(".lock")
        error_path = self.socket_path.with_suffix(".error")
        with open(lock_path, "a+") as lock:
            # One stub starts the executor; the others wait here, then find it listening.
            fcntl.flock(lock, fcntl.LOCK_EX)
            sock = self._try_connect()
            if sock is not None:
                return sock
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()  # a dead executor's socket
            with contextlib.suppress(FileNotFoundError):
                error_path.unlink()
            module = "tritonkit.server.backends.executor"
            command = [server_python(), "-m", module, str(self.socket_path), spec.to_json()]
            # stdout and stderr are the stub's: the executor's lines land in the server log.
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=True)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                sock = self._try_connect()
                if sock is not None:
                    return sock
                code = self._process.poll()
                if code is not None:
                    reason = error_path.read_text().strip() if error_path.exists() else f"it {exit_description(code)}"
                    raise RuntimeError(f"model {self.model_name!r}: the shared executor did not start: {reason}")
                time.sleep(0.05)
            self._process.kill()
            raise RuntimeError(f"model {self.model_name!r}: the shared executor did not start in {timeout_s:.0f} s")

    def run(self, parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        """Stage every request's rows into the lane, run them in the executor, return views of the outputs.

        The views are overwritten by the next ``run``: send or copy them first.
        """
        started = time.perf_counter()
        if self._sock is None:
            self._attach()
        assert self._sock is not None
        rows = stage_rows(self.input_arrays, parts, self.model_name)
        staged = time.perf_counter()
        try:
            self._sock.send(RUN.pack(rows))
            reply = self._sock.recv(_MAX_MESSAGE)
        except OSError as error:
            reply = FAILED + f"lost the connection ({error})".encode()
        if reply[:1] != OK:
            reason = reply[1:].decode(errors="replace") if reply else "it exited"
            failure = f"the shared executor (pid {self.executor_pid}) failed this batch: {reason}"
            if not reply or reply.startswith(FAILED + b"lost the connection"):
                # The executor is gone: the next batch starts a new one (and gets a fresh lane).
                self._sock.close()
                self._sock = None
            raise RuntimeError(failure)
        if self.clock is not None:
            self.clock.add("staging", staged - started)
            self.clock.add("executor", time.perf_counter() - staged)
        return [array[:rows] for array in self.output_arrays]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._process is not None:
            # The executor outlives this stub while other stubs use it; reap it only if it is already gone.
            self._process.poll()
