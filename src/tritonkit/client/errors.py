"""Turning tritonclient's one catch-all exception (and the transports' own errors) into tritonkit's classes.

The classes come from :mod:`tritonkit.errors`::

    TritonkitError
    ├── ServerUnavailable    nothing answers at the URL (connection refused, server stopped mid-request)
    ├── ModelNotReady        the server answers, but the model is unknown, unloaded, or that version is absent
    ├── InvalidInput         the server refused the request's inputs (name, shape, dtype, batch size)
    ├── RequestTimeout       no answer within the client's ``timeout_s``
    └── Rejected             the server's queue was full, or the request timed out waiting in it

The mapping was read off tritonserver 2.51's real answers over gRPC, HTTP and both aio clients
(tests/test_client_errors.py pins each one). Status codes decide first; a few phrases refine them, because
Triton answers both "queue full" and "timed out in the queue" with UNAVAILABLE / 503, like a dead server.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Mapping
from typing import Any, NoReturn

from tritonkit.errors import (
    InvalidInput,
    ModelNotReady,
    Rejected,
    RequestTimeout,
    ServerUnavailable,
    TritonkitError,
)

__all__ = [
    "classify",
    "naming_models_there",
    "raise_as_tritonkit",
    "refused_before_sending",
    "region_lost",
    "server_message",
]

# Checked before the status code, in order; matched against the lower-cased server message.
_PHRASES: tuple[tuple[str, type[TritonkitError]], ...] = (
    ("shared memory region", InvalidInput),  # "Unable to find shared memory region": NOT_FOUND, yet no model issue
    ("exceeds maximum queue size", Rejected),
    ("request timeout expired", Rejected),
    ("unknown model", ModelNotReady),
    ("is not available", ModelNotReady),  # the statistics API's "requested model 'x' is not available"
    ("is not ready", ModelNotReady),
    # A crashed python-backend stub; the model answers again once reloaded (tritonkit serve --watchdog).
    ("is not healthy", ModelNotReady),
    ("has no available versions", ModelNotReady),
    ("deadline exceeded", RequestTimeout),
)
_STATUS: dict[str, type[TritonkitError]] = {
    "StatusCode.UNAVAILABLE": ServerUnavailable,
    "StatusCode.DEADLINE_EXCEEDED": RequestTimeout,
    "StatusCode.INVALID_ARGUMENT": InvalidInput,
    "StatusCode.NOT_FOUND": ModelNotReady,
    "StatusCode.RESOURCE_EXHAUSTED": Rejected,
    "400": InvalidInput,
    "404": ModelNotReady,
    "408": RequestTimeout,
    "429": Rejected,
    "503": ServerUnavailable,
}
# tritonclient prefixes the status it already reports separately, and Triton an id that is always unknown
# unless the caller set one; neither helps a reader.
_NOISE = re.compile(r"^\[(StatusCode\.\w+|\d{3})\] |\[request id: <id_unknown>\] ")
# gRPC's words for "no connection was ever made": nothing of the request reached the server.
_NEVER_CONNECTED = ("failed to connect to all addresses", "connection refused", "connect call failed")


def _aiohttp_connect_error() -> type[BaseException] | None:
    try:
        from aiohttp import ClientConnectorError
    except ImportError:  # http.aio is optional
        return None
    return ClientConnectorError


def server_message(error: BaseException) -> str:
    """The server's own words, without tritonclient's status prefix."""
    message_of = getattr(error, "message", None)
    message = message_of() if callable(message_of) else None
    message = str(message or error or type(error).__name__)
    return _NOISE.sub("", message).strip()


def _status(error: BaseException) -> str | None:
    status_of = getattr(error, "status", None)
    status = status_of() if callable(status_of) else None
    return None if status is None else str(status)


def classify(error: BaseException) -> TritonkitError:
    """The tritonkit error for a tritonclient or transport error, carrying the server's message.

    The caller raises it ``from error``.
    """
    if isinstance(error, TritonkitError):
        return error
    message = server_message(error)
    connect_error = _aiohttp_connect_error()
    if isinstance(error, (ConnectionError, socket.gaierror)) or (
        connect_error is not None and isinstance(error, connect_error)
    ):
        return ServerUnavailable(message)
    # asyncio.TimeoutError is TimeoutError only from Python 3.11 on.
    if isinstance(error, (TimeoutError, socket.timeout, asyncio.TimeoutError)):
        return RequestTimeout(f"no answer within the client's timeout ({message})")
    lowered = message.lower()
    status = _status(error)
    error_class = next((cls for phrase, cls in _PHRASES if phrase in lowered), None)
    if error_class is None and status is None and type(error).__module__.startswith("aiohttp"):
        # aiohttp's other errors (server disconnected, payload errors) mean the connection broke mid-request.
        error_class = ServerUnavailable
    if error_class is None:
        error_class = _STATUS.get(status or "", TritonkitError)
    if error_class is RequestTimeout:
        return RequestTimeout(f"no answer within the client's timeout ({message})")
    return error_class(message)


def raise_as_tritonkit(error: BaseException) -> NoReturn:
    """Raise ``error`` as it is when it is tritonkit's already, else its tritonkit class ``from`` it."""
    if isinstance(error, TritonkitError):
        raise error
    raise classify(error) from error


def naming_models_there(error: TritonkitError, model: str, index: Any) -> TritonkitError:
    """``error`` with the names of the models the server has ready, where it says ``model`` is unknown; else
    ``error`` itself. ``index``: the repository index (gRPC's JSON or HTTP's list), or None where it was refused."""
    lowered = str(error).lower()
    if index is None or not isinstance(error, ModelNotReady):
        return error
    if "unknown model" not in lowered:
        return error
    entries = index.get("models", []) if isinstance(index, Mapping) else index
    ready = sorted({str(entry["name"]) for entry in entries if entry.get("state") == "READY"})
    if model in ready:  # the model is there: it is the version that is not
        return error
    return ModelNotReady(f"{error}; the server has: {', '.join(ready)}" if ready else f"{error}; no model is ready")


def refused_before_sending(error: BaseException) -> bool:
    """True when no connection was made, so the server cannot have seen the request: safe to send again."""
    if isinstance(error, ConnectionRefusedError):
        return True
    connect_error = _aiohttp_connect_error()
    if connect_error is not None and isinstance(error, connect_error):
        return True
    if _status(error) == "StatusCode.UNAVAILABLE":
        lowered = server_message(error).lower()
        return any(phrase in lowered for phrase in _NEVER_CONNECTED)
    return False


def region_lost(error: BaseException) -> bool:
    """True when the server does not know a shared memory region the request named (it restarted, or someone
    unregistered it): it refused the request before running it, so registering anew and re-sending is safe."""
    return "unable to find shared memory region" in server_message(error).lower()
