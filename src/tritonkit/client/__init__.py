"""The thin Python client applications call: tritonclient underneath, without the ceremony.

``Client`` (sync) and ``AsyncClient`` (asyncio) take the same arguments, over gRPC or HTTP. Failures are raised as
the classes of :mod:`tritonkit.errors`, each carrying the server's message and raised ``from`` the tritonclient
exception::

    TritonkitError
    ├── ServerUnavailable    nothing answers at the URL
    ├── ModelNotReady        the model is unknown, unloaded, or that version is absent
    ├── InvalidInput         wrong input name, shape, dtype or batch size (checked before sending, too)
    ├── RequestTimeout       no answer within timeout_s
    └── Rejected             the server's queue was full, or the request timed out waiting in it
"""

from tritonkit.client.aio import AsyncClient
from tritonkit.client.client import Client
from tritonkit.client.model import InputSpec, ModelInfo, OutputSpec
from tritonkit.client.stats import ModelStats

__all__ = ["AsyncClient", "Client", "InputSpec", "ModelInfo", "ModelStats", "OutputSpec"]
