"""The shared executor process: one per model and device, one lane per stub (see ``executor_link``).

    python -m tritonkit.server.backends.executor SOCKET_PATH SPEC_JSON

Started by the first stub of a model load. It loads the TorchScript module once, listens on ``SOCKET_PATH``
(only once the model has loaded, so a stub that can connect finds it ready), and gives every stub that connects
a lane: on a GPU a :class:`~tritonkit.server.backends.gpu_runner.GpuBatchRunner` (its own CUDA stream, CUDA
graphs per batch bucket) whose host buffers are page-locked memfds shared with that stub; on the host a plain
module call over the same kind of buffers. Each connection is served by its own thread, which spends its time
in ``recv`` and in the stream's synchronisation, both outside the GIL, so the lanes' GPU work runs side by side.

A lane whose stub disconnects is kept for the next stub (a reloaded or restarted instance) instead of being
captured again. The executor exits when no stub has been connected for ``idle_exit_s`` seconds, or when the
server that started its first stub is gone. A failure to start is written to ``SOCKET_PATH`` with the suffix
``.error``, where the waiting stub reads it.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tritonkit.server.backends.executor_link import FAILED, OK, RUN, ExecutorSpec, serial_rows
from tritonkit.server.processes import is_live, parent_process

__all__ = ["Executor", "main"]

IDLE_EXIT_S = 2.0


def _log(message: str) -> None:
    print(f"tritonkit executor {os.getpid()}: {message}", file=sys.stderr, flush=True)


class SharedBuffers:
    """Host buffers of one lane as memfds: mapped here, page-locked on a GPU, passed to the stub by descriptor."""

    def __init__(self, lane: int, page_lock: bool) -> None:
        self.lane = lane
        self.page_lock = page_lock
        self.fds: list[int] = []
        self.entries: list[dict[str, Any]] = []
        self._maps: list[mmap.mmap] = []

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> Any:
        import torch

        numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        count = int(np.prod(shape))
        size = max(count * numpy_dtype.itemsize, 1)
        fd = os.memfd_create(f"tritonkit-lane{self.lane}-{len(self.fds)}")
        os.ftruncate(fd, size)
        buffer = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        tensor = torch.from_numpy(np.frombuffer(buffer, dtype=numpy_dtype, count=count).reshape(shape))
        if self.page_lock:
            code = int(torch.cuda.cudart().cudaHostRegister(tensor.data_ptr(), size, 0))
            if code != 0:
                raise RuntimeError(f"cudaHostRegister of a {size}-byte lane buffer failed (cudaError {code})")
        self.fds.append(fd)
        self.entries.append({"dtype": numpy_dtype.str, "shape": list(shape)})
        self._maps.append(buffer)
        return tensor


class Lane(Protocol):
    """What the executor serves a stub through: rows staged in its shared buffers in, outputs written back."""

    @property
    def uses_graphs(self) -> bool: ...

    def run_staged(self, rows: int) -> Any: ...


class _HostLane:
    """A lane on the host: the module called on the shared input buffers, outputs copied into shared buffers."""

    def __init__(self, module: Any, grad_mode: Any, split_outputs: Any, spec: ExecutorSpec, buffers: SharedBuffers):
        import torch

        self.module, self.grad_mode, self.split_outputs = module, grad_mode, split_outputs
        rows = spec.max_batch_size
        self.host_inputs = [
            buffers.allocate((rows, *entry.dims), torch.from_numpy(np.empty(0, entry.dtype)).dtype)
            for entry in spec.inputs
        ]
        self.host_outputs = [buffers.allocate(tuple(t.shape), t.dtype) for t in self._forward(rows)]
        self.uses_graphs = False

    def _forward(self, rows: int) -> list[Any]:
        with self.grad_mode():
            outputs: list[Any] = self.split_outputs(self.module(*(tensor[:rows] for tensor in self.host_inputs)))
        return outputs

    def run_staged(self, rows: int) -> None:
        for host, tensor in zip(self.host_outputs, self._forward(rows)):
            host[:rows].copy_(tensor)


class Executor:
    """Loads the model once and serves lanes to the stubs that connect to ``socket_path``."""

    def __init__(self, socket_path: Path, spec: ExecutorSpec) -> None:
        from tritonkit.repository.samples import TensorShape
        from tritonkit.server.backends.pytorch.loading import load_served, output_splitter, runner_settings

        self.socket_path = socket_path
        self.spec = spec
        # The stub that started it is the parent; the stub's parent is the server.
        self.server_pid = parent_process(os.getppid()) or os.getppid()
        self.model_name = spec.model_name
        self.on_gpu = spec.kind == "GPU"
        parameters = spec.parameters
        # One load (and one compile) per executor, whatever the number of lanes.
        served = load_served(
            Path(spec.model_file),
            spec.kind,
            spec.device_id,
            parameters,
            model_name=self.model_name,
            inputs=[TensorShape(t.name, np.dtype(t.dtype), t.dims) for t in spec.inputs],
            max_batch=spec.max_batch_size,
        )
        self.module, self.device, self.grad_mode = served.module, served.device, served.grad_mode
        self.split_outputs = output_splitter(list(spec.outputs))
        self.settings = runner_settings(parameters, spec.max_batch_size)
        self.order: Any = None
        if self.on_gpu:
            import torch

            from tritonkit.server.backends.gpu_runner import GpuOrder

            torch.backends.cudnn.benchmark = self.settings.use_graphs
            max_batch = spec.max_batch_size
            self.order = GpuOrder(serial_rows(parameters, model_name=self.model_name, max_batch=max_batch))
        self.lanes: list[tuple[Lane, SharedBuffers]] = []
        self.free_lanes: list[int] = []
        self.lock = threading.Lock()  # lanes are made one at a time: captures must not interleave
        self.connected = 0
        self.idle_since = time.monotonic()

    def _new_lane(self) -> int:
        index = len(self.lanes)
        buffers = SharedBuffers(index, page_lock=self.on_gpu)
        if self.on_gpu:
            from tritonkit.repository.samples import SampleSpec
            from tritonkit.server.backends.gpu_runner import GpuBatchRunner

            lane: Lane = GpuBatchRunner(
                self.module,
                self.device,
                model_name=self.model_name,
                input_shapes=[entry.dims for entry in self.spec.inputs],
                input_dtypes=[np.dtype(entry.dtype) for entry in self.spec.inputs],
                max_batch=self.spec.max_batch_size,
                buckets=self.settings.buckets,
                use_graphs=self.settings.use_graphs,
                yield_wait=self.settings.yield_wait,
                grad_mode=self.grad_mode,
                split_outputs=self.split_outputs,
                host_allocator=buffers.allocate,
                chain=self.order,
                input_names=[entry.name for entry in self.spec.inputs],
                samples=SampleSpec.from_parameters(self.spec.parameters, model=self.model_name),
            )
        else:
            lane = _HostLane(self.module, self.grad_mode, self.split_outputs, self.spec, buffers)
        self.lanes.append((lane, buffers))
        return index

    def _take_lane(self) -> int:
        with self.lock:
            if self.free_lanes:
                return self.free_lanes.pop(0)
            return self._new_lane()

    def serve_connection(self, connection: socket.socket) -> None:
        with connection:
            hello = connection.recv(1 << 16)
            if not hello:
                return
            instance = json.loads(hello).get("instance", "?")
            try:
                index = self._take_lane()
            except Exception as error:  # the stub's load fails with this reason
                _log(f"no lane for {instance}: {error}")
                connection.send(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
                return
            lane, buffers = self.lanes[index]
            count = len(self.spec.inputs)
            description = {
                "lane": index,
                "pid": os.getpid(),
                "graphs": bool(lane.uses_graphs),
                "inputs": buffers.entries[:count],
                "outputs": buffers.entries[count:],
            }
            socket.send_fds(connection, [json.dumps(description).encode()], buffers.fds)
            _log(f"lane {index} serves {instance} ({'CUDA graphs' if description['graphs'] else 'no graphs'})")
            try:
                self._serve_lane(connection, lane)
            finally:
                with self.lock:
                    self.free_lanes.append(index)

    @staticmethod
    def _serve_lane(connection: socket.socket, lane: Lane) -> None:
        while True:
            try:
                message = connection.recv(RUN.size)
            except OSError:
                return
            if len(message) != RUN.size:
                return
            (rows,) = RUN.unpack(message)
            try:
                lane.run_staged(rows)
                reply = OK
            except Exception as error:  # one failing batch answers its stub, the lane stays
                reply = FAILED + f"{type(error).__name__}: {error}".encode()[:60000]
            try:
                connection.send(reply)
            except OSError:
                return

    def _on_connection(self, connection: socket.socket) -> None:
        with self.lock:
            self.connected += 1
        try:
            self.serve_connection(connection)
        except Exception:  # a broken connection must not take the other lanes down
            _log(traceback.format_exc())
        finally:
            with self.lock:
                self.connected -= 1
                self.idle_since = time.monotonic()

    def serve(self, listener: socket.socket, idle_exit_s: float = IDLE_EXIT_S) -> None:
        listener.settimeout(0.2)
        self.idle_since = time.monotonic()
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                with self.lock:
                    idle = self.connected == 0 and time.monotonic() - self.idle_since > idle_exit_s
                if idle or not is_live(self.server_pid):
                    return
                continue
            connection.settimeout(None)
            threading.Thread(target=self._on_connection, args=(connection,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    socket_path, spec_text = (argv or sys.argv[1:])[:2]
    path = Path(socket_path)
    error_path = path.with_suffix(".error")
    try:
        executor = Executor(path, ExecutorSpec.from_json(spec_text))
        # The first lane is made before listening: the stub that started the executor gets it without a wait,
        # and a model that cannot run at all fails its load with the reason.
        executor.free_lanes.append(executor._new_lane())
    except Exception as error:
        error_path.write_text(f"{type(error).__name__}: {error}")
        _log(f"could not start: {traceback.format_exc()}")
        return 1
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(64)
    _log(f"model {executor.model_name!r} on {executor.device}: listening on {path}")
    try:
        executor.serve(listener)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    _log(f"model {executor.model_name!r}: no instance left, exiting")
    # Daemon threads may still hold CUDA work; exit without running finalizers that would wait on them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
