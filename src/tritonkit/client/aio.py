"""The asyncio client: the same surface as :class:`~tritonkit.client.Client`, on tritonclient's aio clients.

    async with AsyncClient("127.0.0.1:8001", "resnet18", max_in_flight=32) as client:
        outputs = await asyncio.gather(*(client.infer(frame) for frame in frames))

``max_in_flight`` bounds the requests one client has open at once, however many coroutines call it.
An AsyncClient belongs to the event loop that first used it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from tritonkit.client.base import ClientBase, Protocol, grpc_channel_args
from tritonkit.client.errors import classify, naming_models_there, region_lost
from tritonkit.client.model import Inputs, ModelInfo, join_batches, split_batches
from tritonkit.client.shm import Slot
from tritonkit.client.stats import ModelStats
from tritonkit.errors import ModelNotReady, ServerUnavailable, TritonkitError

__all__ = ["AsyncClient"]

Result = dict[str, np.ndarray]


class AsyncClient(ClientBase):
    """An asyncio client for one model on one Triton server, over gRPC or HTTP; see ``Client`` for the options."""

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
        max_in_flight: int | None = None,
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
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 or None, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._window = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        # Made on first use: aio channels and sessions belong to the running loop.
        self._connection: Any = None
        self._closed = False

    def _client(self) -> Any:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        if self._connection is None:
            if self.protocol == "grpc":
                import tritonclient.grpc.aio

                self._connection = tritonclient.grpc.aio.InferenceServerClient(
                    self.url, channel_args=grpc_channel_args()
                )
            else:
                import tritonclient.http.aio

                # aiohttp's total timeout bounds each request; its pool keeps tritonclient's 100 unless asked for more.
                self._connection = tritonclient.http.aio.InferenceServerClient(
                    self.url, conn_limit=max(self.max_in_flight or 0, 100), conn_timeout=self.timeout_s
                )
        return self._connection

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        call = getattr(self._client(), method)
        attempt = 1
        while True:
            try:
                return await call(*args, **kwargs)
            except Exception as error:
                await asyncio.sleep(self._next_delay_s(error, attempt))
            attempt += 1

    async def _model_call(self, method: str) -> Any:
        """See ``Client._model_call``."""
        try:
            return await self._call(method, self.model, self.version, **self._as_json)
        except ModelNotReady as error:
            try:
                index = await self._call("get_model_repository_index", **self._as_json)
            except TritonkitError:
                index = None
            named = naming_models_there(error, self.model, index)
            if named is error:
                raise
            raise named from error.__cause__

    async def info(self) -> ModelInfo:
        """The model's inputs, outputs and max batch size, read from the server once and then cached."""
        if self._info is None:
            metadata = await self._model_call("get_model_metadata")
            config = await self._model_call("get_model_config")
            self._learn(metadata, config)
        assert self._info is not None
        return self._info

    # --- inference ---------------------------------------------------------------------------------------------

    async def infer(self, inputs: Inputs, *, outputs: Sequence[str] | None = None) -> Result:
        """Run one request; see ``Client.infer``."""
        info = self._info or await self.info()
        arrays, length = info.padded(info.checked(inputs), self.pad_to)
        wanted = info.wanted(outputs)
        if self._window is None:
            return info.unpadded(await self._send(info, arrays, wanted), length)
        async with self._window:
            return info.unpadded(await self._send(info, arrays, wanted), length)

    async def _send(self, info: ModelInfo, arrays: dict[str, np.ndarray], wanted: tuple[str, ...]) -> Result:
        connection = self._client()
        attempt = 1
        while True:
            try:
                if self._shm is not None:
                    return await self._send_shared(info, arrays, wanted)
                # No await between filling the reused InferInputs and tritonclient copying them into the request.
                result = await connection.infer(
                    self.model,
                    self._tensors(info, arrays),
                    outputs=self._requested(info, wanted),
                    **self._infer_kwargs,
                )
                return self._results(result, wanted)
            except Exception as error:
                await asyncio.sleep(self._next_delay_s(error, attempt))
            attempt += 1

    async def _send_shared(self, info: ModelInfo, arrays: dict[str, np.ndarray], wanted: tuple[str, ...]) -> Result:
        assert self._shm is not None
        for last_try in (False, True):
            slot = self._shm.acquire()
            failure: BaseException | None = None
            try:
                tensors, requested = await self._bind(slot, info, arrays, wanted)
                result = await self._client().infer(self.model, tensors, outputs=requested, **self._infer_kwargs)
                return slot.read(result, info, wanted)
            except BaseException as error:
                failure = error
                if last_try or not region_lost(error):
                    raise
            finally:
                self._settle(slot, failure)
        raise AssertionError("unreachable")

    async def _bind(
        self, slot: Slot, info: ModelInfo, arrays: dict[str, np.ndarray], wanted: tuple[str, ...]
    ) -> tuple[list[Any], list[Any]]:
        assert self._shm is not None
        client = self._client()
        sizes, batch = self._shm_sizes(info, arrays, wanted)
        created, retired = slot.fit(sizes)
        for region in retired:
            try:
                await _unregister(client, region.name)
            finally:
                self._shm.destroy(region)
        for index, region in enumerate(created):
            try:
                await client.register_system_shared_memory(region.name, region.key, region.byte_size)
            except BaseException:
                for unregistered in created[index:]:
                    slot.forget(unregistered)
                    self._shm.destroy(unregistered)
                raise
            region.registered = True
        return slot.bind(self._module, info, arrays, wanted, batch)

    async def infer_many(
        self,
        inputs: Inputs,
        *,
        batch_size: int = 8,
        max_in_flight: int = 4,
        outputs: Sequence[str] | None = None,
    ) -> Result:
        """Split a large batch into requests, keep ``max_in_flight`` in flight, return the outputs in order.

        The first failure cancels the requests still running and is raised.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        info = self._info or await self.info()
        chunks = [info.checked(chunk) for chunk in split_batches(info, inputs, batch_size)]
        wanted = info.wanted(outputs)
        results: list[Result | None] = [None] * len(chunks)
        pending = iter(range(len(chunks)))

        async def worker() -> None:
            for index in pending:
                if self._window is None:
                    results[index] = await self._send(info, chunks[index], wanted)
                else:
                    async with self._window:
                        results[index] = await self._send(info, chunks[index], wanted)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(max_in_flight, len(chunks)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return join_batches([result for result in results if result is not None])

    # --- health and statistics ---------------------------------------------------------------------------------

    async def stats(self) -> ModelStats:
        """See ``Client.stats``."""
        info = self._info or await self.info()
        return ModelStats.from_json(await self._model_call("get_inference_statistics"), info.warmup)

    async def is_ready(self) -> bool:
        """True when the server answers and the model is ready; never raises."""
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            return bool(await self._client().is_model_ready(self.model, self.version, **timeout))
        except Exception:
            return False

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """See ``Client.wait_ready``."""
        deadline = time.monotonic() + timeout_s
        timeout = {"client_timeout": min(self.timeout_s, 2.0)} if self.protocol == "grpc" else {}
        while True:
            try:
                if await self._client().is_model_ready(self.model, self.version, **timeout):
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
            await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))

    # --- lifetime ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Unregister and unlink shared memory (if used) and close the connection; safe to call twice."""
        if self._closed:
            return
        try:
            if self._shm is not None:
                regions = self._shm.take_all()
                try:
                    if self._connection is not None:
                        for region in regions:
                            if region.registered:
                                await _unregister(self._connection, region.name)
                finally:
                    for region in regions:
                        self._shm.destroy(region)
                    self._shm.close()
        finally:
            self._closed = True
            if self._connection is not None:
                await self._connection.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()


async def _unregister(connection: Any, name: str) -> None:
    """Unregister a region, trying twice: a busy server can miss the first call; a stopped one forgot it anyway."""
    for attempt in range(2):
        try:
            await connection.unregister_system_shared_memory(name)
            return
        except Exception:
            if attempt == 0:
                await asyncio.sleep(0.2)
