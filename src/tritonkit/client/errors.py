"""Turning tritonclient's one catch-all exception into tritonkit's error classes."""

from __future__ import annotations

import socket

from tritonkit.errors import (
    InvalidInput,
    ModelNotReady,
    Rejected,
    RequestTimeout,
    ServerUnavailable,
    TritonkitError,
)

__all__ = ["classify"]

# Matched against the lower-cased server message; the first hit wins, so the specific phrases come first.
_MESSAGE_CLASSES: tuple[tuple[str, type[TritonkitError]], ...] = (
    ("exceeds maximum queue size", Rejected),
    ("request timeout expired", Rejected),
    ("deadline exceeded", RequestTimeout),
    ("timed out", RequestTimeout),
    ("unknown model", ModelNotReady),
    ("is not found", ModelNotReady),
    ("is not ready", ModelNotReady),
    ("failed to connect", ServerUnavailable),
    ("connection refused", ServerUnavailable),
    ("socket closed", ServerUnavailable),
    ("unexpected shape", InvalidInput),
    ("data-type is", InvalidInput),
    ("batch-size must be", InvalidInput),
    ("unexpected inference input", InvalidInput),
    ("input", InvalidInput),
)
_STATUS_CLASSES: dict[str, type[TritonkitError]] = {
    "StatusCode.UNAVAILABLE": ServerUnavailable,
    "StatusCode.DEADLINE_EXCEEDED": RequestTimeout,
    "StatusCode.INVALID_ARGUMENT": InvalidInput,
    "StatusCode.NOT_FOUND": ModelNotReady,
    "StatusCode.RESOURCE_EXHAUSTED": Rejected,
}


def classify(error: BaseException) -> TritonkitError:
    """The tritonkit error for a tritonclient or transport error, carrying the server's message."""
    if isinstance(error, TritonkitError):
        return error
    if isinstance(error, (ConnectionError, socket.gaierror)):
        return ServerUnavailable(str(error) or type(error).__name__)
    if isinstance(error, (TimeoutError, socket.timeout)):
        return RequestTimeout(str(error) or "the request timed out")
    message_of = getattr(error, "message", None)
    message = message_of() if callable(message_of) else str(error)
    message = message or str(error)
    lowered = message.lower()
    for phrase, error_class in _MESSAGE_CLASSES:
        if phrase in lowered:
            return error_class(message)
    status_of = getattr(error, "status", None)
    status = status_of() if callable(status_of) else None
    error_class = _STATUS_CLASSES.get(str(status), TritonkitError)
    return error_class(message)
