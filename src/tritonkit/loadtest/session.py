"""One load-test user's connection to Triton: a tritonkit Client, the shared payload, and timed requests.

The locustfile's user turns each :class:`RequestOutcome` into exactly one Locust ``request`` event; keeping the
timing here lets the library be tested without Locust (which monkey-patches the process at import).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from tritonkit.client import Client
from tritonkit.loadtest.payloads import Payload, build_payload
from tritonkit.loadtest.settings import LoadSettings

__all__ = ["InferSession", "RequestOutcome"]

# Payloads by (url, model, batch size, source, length, samples file): built once per process, shared by all its
# users, so a hundred users on 224x224 images hold one copy of the arrays instead of a hundred.
_payloads: dict[tuple[str, str, int, str, str, str], Payload] = {}
_payloads_lock = threading.Lock()


@dataclass(frozen=True)
class RequestOutcome:
    """What one inference request did: what Locust's request event reports."""

    response_time_ms: float
    response_length: int
    exception: Exception | None = None


class InferSession:
    """A client with its model metadata fetched and its payload built: ``infer_once`` is all a task does."""

    def __init__(self, settings: LoadSettings, client: Client, payload: Payload) -> None:
        self.settings = settings
        self.client = client
        self.payload = payload
        self._batches = payload.cycle()

    @classmethod
    def open(cls, settings: LoadSettings) -> InferSession:
        """Connect and fetch the model's metadata; raises ServerUnavailable, ModelNotReady or InvalidInput."""
        client = Client(settings.url, settings.model, protocol=settings.protocol, timeout_s=settings.timeout_s)
        try:
            # Fetched here, so that no user's first timed request also pays for the metadata calls.
            client.inputs  # noqa: B018
            payload = _shared_payload(settings, client)
        except BaseException:
            client.close()
            raise
        return cls(settings, client, payload)

    def infer_once(self) -> RequestOutcome:
        """Send the next batch and time it; never raises, failures are in the outcome."""
        batch = next(self._batches)
        start = time.perf_counter()
        try:
            outputs = self.client.infer(batch)
        except Exception as error:
            return RequestOutcome((time.perf_counter() - start) * 1000.0, 0, error)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        return RequestOutcome(elapsed_ms, sum(array.nbytes for array in outputs.values()))

    def close(self) -> None:
        self.client.close()


def _shared_payload(settings: LoadSettings, client: Client) -> Payload:
    key = (settings.url, settings.model, settings.batch_size, settings.payload, settings.length, settings.samples)
    with _payloads_lock:
        payload = _payloads.get(key)
        if payload is None:
            payload = build_payload(
                client.inputs,
                client.max_batch_size,
                settings.batch_size,
                settings.payload,
                model=settings.model,
                seed=settings.seed,
                samples=client.info().sample_spec(),
                requests=settings.payload_spec,
            )
            _payloads[key] = payload
    return payload
