"""What the sync and the async client share: settings, the cached model description, request building, retries.

Nothing here does I/O. The hot path (``_tensors``, ``_requested``, ``_results``) is kept to dictionary look-ups
and tritonclient's own calls: InferInput objects are reused per thread (tritonclient copies their bytes into the
request before any other code can run), InferRequestedOutput lists per set of wanted outputs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tritonkit.client.errors import classify, region_lost
from tritonkit.client.model import ModelInfo
from tritonkit.client.retry import RetryPolicy
from tritonkit.client.shm import SharedMemoryPool, Slot
from tritonkit.errors import InvalidInput, ModelNotReady, Rejected, TritonkitError

__all__ = ["ClientBase", "Protocol", "grpc_channel_args"]

Protocol = Literal["grpc", "http"]

# geventhttpclient opens connections lazily, so a generous pool costs nothing until requests overlap.
HTTP_CONNECTIONS = 32


def grpc_channel_args() -> list[tuple[str, Any]]:
    """tritonclient's default channel options, plus a reconnect backoff capped at 1 s.

    gRPC's own cap is 120 s: a channel that saw the server down once could keep failing long after the server
    came back, and retries could never reach it.
    """
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def _bare_url(url: str) -> str:
    for scheme in ("grpc://", "http://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    if "://" in url:
        raise ValueError(f"url {url!r}: give host:port (TLS is not supported by this client)")
    return url


class ClientBase:
    """Settings and per-model state of one client; subclasses add the I/O."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        protocol: Protocol,
        version: str | int | None,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        shared_memory: bool,
        pad_to: Sequence[int] = (),
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = _bare_url(url)
        self.model = model
        self.protocol: Protocol = protocol
        self.version = "" if version is None else str(version)
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(retries=retries, backoff_s=backoff_s)
        # Variable dims are padded with zeros to the smallest of these lengths, so that the dynamic batcher (which
        # batches only requests of one shape) can batch requests of different lengths; outputs are cut back.
        self.pad_to = tuple(sorted(pad_to))
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        # The aio clients take these same InferInput / InferRequestedOutput classes.
        self._module: Any = module
        self._as_json: dict[str, Any] = {"as_json": True} if protocol == "grpc" else {}
        self._infer_kwargs: dict[str, Any] = {"model_version": self.version}
        if protocol == "grpc":
            self._infer_kwargs["client_timeout"] = timeout_s
        self._info: ModelInfo | None = None
        self._local = threading.local()
        self._requested_cache: dict[tuple[str, ...], list[Any] | None] = {}
        self._shm = SharedMemoryPool(model) if shared_memory else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, {self.model!r}, protocol={self.protocol!r})"

    @property
    def shared_memory(self) -> bool:
        return self._shm is not None

    # --- model description -------------------------------------------------------------------------------------

    def _learn(self, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
        self._info = ModelInfo.from_json(metadata, config)
        return self._info

    # --- requests ----------------------------------------------------------------------------------------------

    def _tensors(self, info: ModelInfo, arrays: Mapping[str, np.ndarray]) -> list[Any]:
        # name -> (InferInput, the shape it was last given): most requests repeat the shape, so skip resetting it.
        cache: dict[str, tuple[Any, tuple[int, ...]]] = self._local.__dict__
        tensors = []
        for spec in info.inputs:
            array = arrays[spec.name]
            shape = array.shape
            entry = cache.get(spec.name)
            if entry is None:
                tensor = self._module.InferInput(spec.name, list(shape), spec.datatype)
                cache[spec.name] = (tensor, shape)
            else:
                tensor, last_shape = entry
                if shape != last_shape:
                    tensor.set_shape(list(shape))
                    cache[spec.name] = (tensor, shape)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    def _requested(self, info: ModelInfo, wanted: tuple[str, ...]) -> list[Any] | None:
        try:
            return self._requested_cache[wanted]
        except KeyError:
            # None asks for every output: a shorter request, and HTTP then answers in binary by itself.
            requested = None if wanted == info.output_names else [self._module.InferRequestedOutput(n) for n in wanted]
            self._requested_cache[wanted] = requested
            return requested

    @staticmethod
    def _results(result: Any, wanted: Sequence[str]) -> dict[str, np.ndarray]:
        return {name: result.as_numpy(name) for name in wanted}

    # --- shared memory -----------------------------------------------------------------------------------------

    def _shm_sizes(
        self, info: ModelInfo, arrays: Mapping[str, np.ndarray], wanted: Sequence[str]
    ) -> tuple[dict[str, int], int]:
        """Bytes each tensor needs in this request; BYTES tensors and outputs of unknown size are left out."""
        sizes = {name: array.nbytes for name, array in arrays.items() if array.dtype.kind not in "OSU"}
        batch = next(iter(arrays.values())).shape[0] if info.max_batch_size > 0 else 1
        for name in wanted:
            per_sample = info.output(name).sample_nbytes
            if per_sample:
                sizes[name] = batch * per_sample
        return sizes, batch

    def _settle(self, slot: Slot, error: BaseException | None) -> None:
        """Give a slot back after its request: reuse it only where the server's answer proves it is done with it."""
        assert self._shm is not None
        if error is None:
            self._shm.release(slot, reuse=True)
        elif region_lost(error):
            self._shm.drop(slot)
        else:
            reusable = isinstance(classify(error), (InvalidInput, ModelNotReady, Rejected))
            self._shm.release(slot, reuse=reusable)

    # --- errors and retries ------------------------------------------------------------------------------------

    def _next_delay_s(self, error: BaseException, attempt: int) -> float:
        """The wait before attempt ``attempt + 1``; raises the tritonkit error when that must not happen."""
        if isinstance(error, TritonkitError):
            raise error
        classified = classify(error)
        if attempt <= self.retry.retries and self.retry.safe_to_retry(error, classified):
            return self.retry.delay_s(attempt)
        raise self.retry.gave_up(classified, attempt) from error
