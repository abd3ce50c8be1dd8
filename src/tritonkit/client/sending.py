"""How the sync client sends a request: its connections, the wire or shared memory, and its retries.

``Client`` owns one :class:`SyncSender`; ``Client.infer_many``'s pipelines (:mod:`tritonkit.client.many`) see it only
through the :class:`~tritonkit.client.many.Sender` protocol: ``send``, ``submit``, ``sleep`` and ``retry``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tritonkit.client.base import HTTP_CONNECTIONS, ClientBase, grpc_channel_args
from tritonkit.client.errors import region_lost
from tritonkit.client.model import ModelInfo
from tritonkit.client.retry import RetryPolicy
from tritonkit.client.shm import Slot

__all__ = ["SyncSender"]

Result = dict[str, np.ndarray]
Done = Callable[[Result | None, BaseException | None], None]


class SyncSender:
    """The blocking and the callback way of sending one request of one sync client."""

    def __init__(self, client: ClientBase) -> None:
        self._client = client
        self.retry: RetryPolicy = client.retry
        self.connection: Any = self._connect(HTTP_CONNECTIONS)
        # HTTP connections with a wider pool, per width, for infer_many with more in flight than the default pool.
        self._wide: dict[int, Any] = {}
        self.sleep: Callable[[float], None] = time.sleep
        if client.protocol == "http":
            import gevent

            # Waits must let the other greenlets of infer_many run.
            self.sleep = gevent.sleep

    def _connect(self, connections: int) -> Any:
        client = self._client
        if client.protocol == "grpc":
            import tritonclient.grpc

            return tritonclient.grpc.InferenceServerClient(client.url, channel_args=grpc_channel_args())
        import tritonclient.http

        return tritonclient.http.InferenceServerClient(
            client.url, concurrency=connections, connection_timeout=client.timeout_s, network_timeout=client.timeout_s
        )

    def _connection_for(self, width: int) -> Any:
        if self._client.protocol == "grpc" or width <= HTTP_CONNECTIONS:
            return self.connection
        if width not in self._wide:
            self._wide[width] = self._connect(width)
        return self._wide[width]

    def send(
        self,
        info: ModelInfo,
        arrays: dict[str, np.ndarray],
        wanted: tuple[str, ...],
        *,
        width: int = 1,
        attempt: int = 1,
    ) -> Result:
        """Send one request and wait for it, retrying what is safe to retry; ``width``: requests in flight at once
        beside it (HTTP then uses a connection pool that wide), ``attempt``: the attempts already counted, plus one."""
        client = self._client
        connection = self._connection_for(width)
        while True:
            try:
                if client._shm is not None:
                    return self._send_shared(info, arrays, wanted, connection)
                tensors = client._tensors(info, arrays)
                requested = client._requested(info, wanted)
                result = connection.infer(client.model, tensors, outputs=requested, **client._infer_kwargs)
                return client._results(result, wanted)
            except Exception as error:
                self.sleep(client._next_delay_s(error, attempt))
            attempt += 1

    def submit(self, info: ModelInfo, arrays: dict[str, np.ndarray], wanted: tuple[str, ...], done: Done) -> Any:
        """Start one gRPC request without waiting; ``done(outputs, None)`` or ``done(None, error)`` runs on
        tritonclient's thread once it is answered. Returns the call, which ``cancel()`` abandons."""
        client = self._client
        slot: Slot | None = None
        requested: list[Any] | None
        if client._shm is not None:
            slot = client._shm.acquire()
            try:
                tensors, requested = self._bind(slot, info, arrays, wanted, self.connection)
            except BaseException:
                client._shm.release(slot, reuse=True)
                raise
        else:
            tensors, requested = client._tensors(info, arrays), client._requested(info, wanted)

        def answered(result: Any, error: BaseException | None) -> None:
            outputs: Result | None = None
            try:
                if error is None:
                    outputs = slot.read(result, info, wanted) if slot else client._results(result, wanted)
            except Exception as failure:
                error = failure
            finally:
                if slot is not None:
                    client._settle(slot, error)
            done(outputs, error)

        kwargs = client._infer_kwargs
        return self.connection.async_infer(client.model, tensors, answered, outputs=requested, **kwargs)

    def _send_shared(
        self, info: ModelInfo, arrays: dict[str, np.ndarray], wanted: tuple[str, ...], connection: Any
    ) -> Result:
        client = self._client
        assert client._shm is not None
        for last_try in (False, True):
            slot = client._shm.acquire()
            failure: BaseException | None = None
            try:
                tensors, requested = self._bind(slot, info, arrays, wanted, connection)
                result = connection.infer(client.model, tensors, outputs=requested, **client._infer_kwargs)
                return slot.read(result, info, wanted)
            except BaseException as error:
                failure = error
                if last_try or not region_lost(error):
                    raise
            finally:
                client._settle(slot, failure)
        raise AssertionError("unreachable")

    def _bind(
        self, slot: Slot, info: ModelInfo, arrays: dict[str, np.ndarray], wanted: tuple[str, ...], connection: Any
    ) -> tuple[list[Any], list[Any]]:
        """Fit the slot's regions to this request, (re)registering what changed, and point the request there."""
        client = self._client
        assert client._shm is not None
        sizes, batch = client._shm_sizes(info, arrays, wanted)
        created, retired = slot.fit(sizes)
        for region in retired:
            try:
                # Unlinked below either way; a server that lost it forgets it when it restarts.
                with contextlib.suppress(Exception):
                    connection.unregister_system_shared_memory(region.name)
            finally:
                client._shm.destroy(region)
        for index, region in enumerate(created):
            try:
                connection.register_system_shared_memory(region.name, region.key, region.byte_size)
            except BaseException:
                for unregistered in created[index:]:
                    slot.forget(unregistered)
                    client._shm.destroy(unregistered)
                raise
            region.registered = True
        return slot.bind(client._module, info, arrays, wanted, batch)

    def close(self) -> None:
        for connection in (self.connection, *self._wide.values()):
            connection.close()
