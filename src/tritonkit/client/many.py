"""``Client.infer_many``'s two pipelines: many requests in flight from one thread, results kept in request order.

gRPC uses tritonclient's ``async_infer`` (``Sender.submit``): the request is built on the calling thread and its
completion callback frees a place in the window, so exactly ``max_in_flight`` requests stay in flight. HTTP uses
greenlets over the blocking ``Sender.send``: tritonclient's HTTP ``async_infer`` sleeps 10 ms after every
submission, which would cap the pipeline at 100 requests/s.

Failures that are safe to re-send (see :mod:`tritonkit.client.retry`) are re-sent after the rest have finished;
the first other failure stops further sending and is raised once nothing is in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tritonkit.client.errors import classify, raise_as_tritonkit, region_lost
from tritonkit.client.model import ModelInfo
from tritonkit.client.retry import RetryPolicy
from tritonkit.errors import TritonkitError

__all__ = ["Sender", "many_over_grpc", "many_over_http"]

Result = dict[str, np.ndarray]
Chunks = list[dict[str, np.ndarray]]


class Sender(Protocol):
    """What the pipelines need of a client: one request sent and waited for, one started with a callback."""

    retry: RetryPolicy

    def send(
        self,
        info: ModelInfo,
        arrays: dict[str, np.ndarray],
        wanted: tuple[str, ...],
        *,
        width: int = 1,
        attempt: int = 1,
    ) -> Result: ...

    def submit(
        self,
        info: ModelInfo,
        arrays: dict[str, np.ndarray],
        wanted: tuple[str, ...],
        done: Callable[[Result | None, BaseException | None], None],
    ) -> Any: ...

    def sleep(self, seconds: float) -> None: ...


def many_over_grpc(
    sender: Sender, info: ModelInfo, chunks: Chunks, wanted: tuple[str, ...], max_in_flight: int
) -> list[Result]:
    window = threading.BoundedSemaphore(max_in_flight)
    stop = threading.Event()
    results: list[Result | None] = [None] * len(chunks)
    errors: dict[int, BaseException] = {}
    calls = []

    def failed(index: int, error: BaseException) -> None:
        errors[index] = error
        if not _retry_later(sender, error):
            stop.set()

    def submit(index: int) -> None:
        def done(outputs: Result | None, error: BaseException | None) -> None:
            try:
                if error is None:
                    results[index] = outputs
                else:
                    failed(index, error)
            finally:
                window.release()

        calls.append(sender.submit(info, chunks[index], wanted, done))

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
    return _finish(sender, info, chunks, wanted, results, errors)


def many_over_http(
    sender: Sender, info: ModelInfo, chunks: Chunks, wanted: tuple[str, ...], max_in_flight: int
) -> list[Result]:
    import gevent.pool

    results: list[Result | None] = [None] * len(chunks)
    errors: dict[int, BaseException] = {}

    def run(index: int) -> None:
        if errors:
            return
        try:
            results[index] = sender.send(info, chunks[index], wanted, width=max_in_flight)
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
    return _finish(sender, info, chunks, wanted, results, errors)


def _retry_later(sender: Sender, error: BaseException) -> bool:
    if isinstance(error, TritonkitError):
        return False
    if region_lost(error):  # re-sent through send, which registers fresh regions
        return True
    return sender.retry.retries > 0 and sender.retry.safe_to_retry(error, classify(error))


def _finish(
    sender: Sender,
    info: ModelInfo,
    chunks: Chunks,
    wanted: tuple[str, ...],
    results: list[Result | None],
    errors: dict[int, BaseException],
) -> list[Result]:
    """Raise the first failure that must not be re-sent; re-send the others, continuing their attempt count."""
    for index in sorted(errors):
        if not _retry_later(sender, errors[index]):
            raise_as_tritonkit(errors[index])
    for index in sorted(errors):
        if region_lost(errors[index]):  # not a retry: the server never saw usable inputs
            results[index] = sender.send(info, chunks[index], wanted)
            continue
        sender.sleep(sender.retry.delay_s(1))
        results[index] = sender.send(info, chunks[index], wanted, attempt=2)
    return [result for result in results if result is not None]
