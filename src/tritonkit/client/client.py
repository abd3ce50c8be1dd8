"""The synchronous client: tritonclient underneath, without the ceremony.

    with Client("127.0.0.1:8001", "resnet18") as client:
        scores = client.infer(frames)["output__0"]

A gRPC ``Client`` may be shared by threads. An HTTP one belongs to the thread that first used it, as
tritonclient's HTTP client does (it runs on gevent, whose connections cannot cross threads).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from tritonkit.client.base import ClientBase, Protocol
from tritonkit.client.errors import classify, naming_models_there
from tritonkit.client.many import many_over_grpc, many_over_http
from tritonkit.client.model import Inputs, InputSpec, ModelInfo, join_batches, split_batches
from tritonkit.client.sending import SyncSender
from tritonkit.client.shm import SharedMemoryPool
from tritonkit.client.stats import ModelStats
from tritonkit.errors import ModelNotReady, ServerUnavailable, TritonkitError

__all__ = ["Client", "InputSpec"]

Result = dict[str, np.ndarray]


class Client(ClientBase):
    """A synchronous client for one model on one Triton server, over gRPC or HTTP.

    ``timeout_s`` bounds every call. ``retries`` (0: off) re-sends only what is safe to re-send: a request whose
    connection was refused, or one the server rejected from its queue; the waits start at ``backoff_s`` and
    double. ``shared_memory=True`` passes tensors through /dev/shm (the server must be on this host).
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        protocol: Protocol = "grpc",
        version: str | int | None = None,
        timeout_s: float = 60.0,
        retries: int = 0,
        backoff_s: float = 0.05,
        shared_memory: bool = False,
        pad_to: Sequence[int] = (),
    ) -> None:
        super().__init__(
            url,
            model,
            protocol=protocol,
            version=version,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            shared_memory=shared_memory,
            pad_to=pad_to,
        )
        self._sender = SyncSender(self)
        self._client: Any = self._sender.connection
        self._sleep: Callable[[float], None] = self._sender.sleep
        self._closed = False
        self._release: weakref.finalize | None = None
        if self._shm is not None:
            # Runs on close(), and at garbage collection or interpreter exit (an uncaught Ctrl-C) if close never ran.
            # Generous: an unregister lost to a busy server leaves the region mapped in the server until it restarts.
            timeout = {"client_timeout": min(timeout_s, 30.0)} if protocol == "grpc" else {}
            self._release = weakref.finalize(self, _release_shared_memory, self._client, self._shm, timeout)

    # --- model description -------------------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        attempt = 1
        while True:
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except Exception as error:
                self._sleep(self._next_delay_s(error, attempt))
            attempt += 1

    def _model_call(self, method: str) -> Any:
        """A call about this model; where the server does not know it, the error names the models it has."""
        try:
            return self._call(method, self.model, self.version, **self._as_json)
        except ModelNotReady as error:
            try:
                index = self._call("get_model_repository_index", **self._as_json)
            except TritonkitError:  # a server that restricts the repository API: the error as it was
                index = None
            named = naming_models_there(error, self.model, index)
            if named is error:
                raise
            raise named from error.__cause__

    def info(self) -> ModelInfo:
        """The model's inputs, outputs and max batch size, read from the server once and then cached."""
        if self._info is None:
            metadata = self._model_call("get_model_metadata")
            config = self._model_call("get_model_config")
            self._learn(metadata, config)
        assert self._info is not None
        return self._info

    @property
    def inputs(self) -> list[InputSpec]:
        return list(self.info().inputs)

    @property
    def max_batch_size(self) -> int:
        return self.info().max_batch_size

    # --- inference ---------------------------------------------------------------------------------------------

    def infer(self, inputs: Inputs, *, outputs: Sequence[str] | None = None) -> Result:
        """Run one request: a bare array goes to the model's only input; returns the outputs by name.

        ``outputs`` asks for a subset. Inputs are checked against the model before anything is sent.
        """
        if self._closed:
            raise RuntimeError("this Client is closed")
        info = self._info or self.info()
        padded, length = info.padded(info.checked(inputs), self.pad_to)
        return info.unpadded(self._sender.send(info, padded, info.wanted(outputs)), length)

    def infer_many(
        self,
        inputs: Inputs,
        *,
        batch_size: int = 8,
        max_in_flight: int = 4,
        outputs: Sequence[str] | None = None,
    ) -> Result:
        """Split a large batch into requests of ``batch_size`` rows, keep ``max_in_flight`` of them in flight,
        and return the outputs joined back in order.

        Every request is checked before the first is sent. The first failure stops further sending and is
        raised once the requests in flight have finished.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if self._closed:
            raise RuntimeError("this Client is closed")
        info = self._info or self.info()
        chunks = [info.checked(chunk) for chunk in split_batches(info, inputs, batch_size)]
        wanted = info.wanted(outputs)
        send = many_over_grpc if self.protocol == "grpc" else many_over_http
        return join_batches(send(self._sender, info, chunks, wanted, max_in_flight))

    # --- health and statistics ---------------------------------------------------------------------------------

    def stats(self) -> ModelStats:
        """What the server did for this model since it loaded, warm-up left out of the counts (see ``ModelStats``)."""
        info = self._info or self.info()
        return ModelStats.from_json(self._model_call("get_inference_statistics"), info.warmup)

    def is_ready(self) -> bool:
        """True when the server answers and the model is ready; never raises."""
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            return bool(self._client.is_model_ready(self.model, self.version, **timeout))
        except Exception:
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the model is ready; ServerUnavailable if nothing answered, ModelNotReady if the model is not."""
        deadline = time.monotonic() + timeout_s
        timeout = {"client_timeout": min(self.timeout_s, 2.0)} if self.protocol == "grpc" else {}
        while True:
            try:
                if self._client.is_model_ready(self.model, self.version, **timeout):
                    return
                problem: TritonkitError = ModelNotReady(
                    f"model {self.model!r} at {self.url} was not ready within {timeout_s:g} s"
                )
            except Exception as error:
                problem = ServerUnavailable(
                    f"no server answered at {self.url} within {timeout_s:g} s: {classify(error)}"
                )
            if time.monotonic() >= deadline:
                raise problem
            self._sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))

    # --- lifetime ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Unregister and unlink shared memory (if used) and close the connections; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._release is not None:
                self._release()
        finally:
            self._sender.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _release_shared_memory(client: Any, pool: SharedMemoryPool, timeout: dict[str, float]) -> None:
    """Unregister every region (where the server still answers), then unlink them all, whatever happened."""
    regions = pool.take_all()
    try:
        for region in regions:
            if region.registered:
                _unregister(client, region.name, timeout)
    finally:
        for region in regions:
            pool.destroy(region)
        pool.close()


def _unregister(client: Any, name: str, timeout: dict[str, float]) -> None:
    """Unregister a region, trying twice: a busy server can miss the first call; a stopped one forgot it anyway."""
    for attempt in range(2):
        try:
            client.unregister_system_shared_memory(name, **timeout)
            return
        except Exception:
            if attempt == 0:
                time.sleep(0.2)
