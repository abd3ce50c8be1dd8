"""``Client.infer_many``'s two pipelines: many requests in flight from one thread, results kept in request order.

gRPC uses tritonclient's ``async_infer``: the request is built on the calling thread and its completion callback
frees a place in the window, so exactly ``max_in_flight`` requests stay in flight. HTTP uses greenlets over the
blocking ``infer``: tritonclient's HTTP ``async_infer`` sleeps 10 ms after every submission, which would cap the
pipeline at 100 requests/s.

Failures that are safe to re-send (see :mod:`tritonkit.client.retry`) are re-sent after the rest have finished;
the first other failure stops further sending and is raised once nothing is in flight.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonkit.client.base import HTTP_CONNECTIONS
from tritonkit.client.errors import classify, region_lost
from tritonkit.client.model import ModelInfo
from tritonkit.client.shm import Slot
from tritonkit.errors import TritonkitError

if TYPE_CHECKING:
    from tritonkit.client.client import Client

__all__ = ["many_over_grpc", "many_over_http"]

Result = dict[str, np.ndarray]
Chunks = list[dict[str, np.ndarray]]


def many_over_grpc(
    client: Client, info: ModelInfo, chunks: Chunks, wanted: tuple[str, ...], max_in_flight: int
) -> list[Result]:
    window = threading.BoundedSemaphore(max_in_flight)
    stop = threading.Event()
    results: list[Result | None] = [None] * len(chunks)
    errors: dict[int, BaseException] = {}
    calls = []

    def failed(index: int, error: BaseException) -> None:
        errors[index] = error
        if not _retry_later(client, error):
            stop.set()

    def submit(index: int) -> None:
        slot: Slot | None = None
        if client._shm is not None:
            slot = client._shm.acquire()
            try:
                tensors, requested = client._bind(slot, info, chunks[index], wanted, client._client)
            except BaseException:
                client._shm.release(slot, reuse=True)
                raise
        else:
            tensors, requested = client._tensors(info, chunks[index]), client._requested(info, wanted)

        def done(result: Any, error: BaseException | None) -> None:
            try:
                if error is None:
                    results[index] = slot.read(result, info, wanted) if slot else client._results(result, wanted)
                else:
                    failed(index, error)
            except Exception as failure:
                failed(index, failure)
            finally:
                if slot is not None and client._shm is not None:
                    client._settle(slot, errors.get(index))
                window.release()

        kwargs = client._infer_kwargs
        calls.append(client._client.async_infer(client.model, tensors, done, outputs=requested, **kwargs))

    try:
        for index in range(len(chunks)):
            window.acquire()
            if stop.is_set():
                window.release()
                break
            try:
                submit(index)
            except Exception as error:
                failed(index, error)
                window.release()
        for _ in range(max_in_flight):  # every place back in the window: nothing is in flight
            window.acquire()
    except BaseException:
        for call in calls:  # Ctrl-C: stop waiting for answers nobody will read
            call.cancel()
        raise
    return _finish(client, info, chunks, wanted, results, errors)


def many_over_http(
    client: Client, info: ModelInfo, chunks: Chunks, wanted: tuple[str, ...], max_in_flight: int
) -> list[Result]:
    import gevent.pool

    connection = client._client
    if max_in_flight > HTTP_CONNECTIONS:
        if max_in_flight not in client._wide_http:
            client._wide_http[max_in_flight] = client._connect(max_in_flight)
        connection = client._wide_http[max_in_flight]
    results: list[Result | None] = [None] * len(chunks)
    errors: dict[int, BaseException] = {}

    def run(index: int) -> None:
        if errors:
            return
        try:
            results[index] = client._send(info, chunks[index], wanted, connection)
        except Exception as error:  # kept, not raised: gevent would print every failed greenlet's traceback
            errors[index] = error

    pool = gevent.pool.Pool(max_in_flight)
    try:
        for index in range(len(chunks)):
            pool.spawn(run, index)  # waits (cooperatively) while max_in_flight are running
        pool.join()
    except BaseException:
        pool.kill()
        raise
    return _finish(client, info, chunks, wanted, results, errors)


def _retry_later(client: Client, error: BaseException) -> bool:
    if isinstance(error, TritonkitError):
        return False
    if region_lost(error):  # re-sent through _send, which registers fresh regions
        return True
    return client.retry.retries > 0 and client.retry.safe_to_retry(error, classify(error))


def _finish(
    client: Client,
    info: ModelInfo,
    chunks: Chunks,
    wanted: tuple[str, ...],
    results: list[Result | None],
    errors: dict[int, BaseException],
) -> list[Result]:
    """Raise the first failure that must not be re-sent; re-send the others, continuing their attempt count."""
    for index in sorted(errors):
        if not _retry_later(client, errors[index]):
            client._raise(errors[index])
    for index in sorted(errors):
        if region_lost(errors[index]):  # not a retry: the server never saw usable inputs
            results[index] = client._send(info, chunks[index], wanted, client._client)
            continue
        client._sleep(client.retry.delay_s(1))
        results[index] = client._send(info, chunks[index], wanted, client._client, attempt=2)
    return [result for result in results if result is not None]
