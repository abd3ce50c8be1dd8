"""The exceptions tritonkit raises.

Every error is a :class:`TritonkitError`, so ``except TritonkitError`` catches all of them::

    TritonkitError
    ├── ConfigError          a config.pbtxt or model repository that is wrong: unparsable text (with its line),
    │                        values that contradict each other, a missing model file, inputs or outputs that
    │                        disagree with the model file, a backend tritonkit cannot serve
    ├── ExportError          a model that cannot be built, exported, or whose export disagrees with eager PyTorch
    ├── ServerUnavailable    no server answers: the embedded server did not start or stopped, or a URL is dead
    ├── ModelNotReady        the server answers, but the model is unknown, failed to load, or is still loading
    ├── InvalidInput         a request the model cannot take: wrong name, shape, dtype or batch size
    ├── RequestTimeout       no answer within the client's timeout
    └── Rejected             the server refused the work: its queue was full, or the request timed out in it

Errors raised because of a tritonclient error carry the server's message and are raised ``from`` it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ExportError",
    "InvalidInput",
    "ModelNotReady",
    "Rejected",
    "RequestTimeout",
    "ServerUnavailable",
    "TritonkitError",
]


class TritonkitError(Exception):
    """Base of every error tritonkit raises."""


class ConfigError(TritonkitError):
    """A config.pbtxt or model repository that Triton would refuse or serve wrongly."""


class ExportError(TritonkitError):
    """A model that could not be built, exported or verified against eager PyTorch."""


class ServerUnavailable(TritonkitError):
    """No Triton server answers at the given address, or the embedded server failed to start."""


class ModelNotReady(TritonkitError):
    """The server is up, but the model is unknown, failed to load, or is not ready yet."""


class InvalidInput(TritonkitError):
    """A request that does not fit the model: input name, shape, dtype or batch size."""


class RequestTimeout(TritonkitError):
    """The request got no answer within the client's timeout."""


class Rejected(TritonkitError):
    """The server refused the request: its queue was full, or the request timed out while queued."""
