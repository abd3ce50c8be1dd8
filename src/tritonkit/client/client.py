"""The thin client: tritonclient underneath, without the ceremony.

with Client("127.0.0.1:8001", "resnet18") as client:
    scores = client.infer(frames)["output__0"]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import numpy as np

from tritonkit.client.errors import classify
from tritonkit.client.stats import ModelStats
from tritonkit.errors import InvalidInput, ServerUnavailable
from tritonkit.repository.dtypes import to_numpy_dtype

__all__ = ["Client", "InputSpec"]

Protocol = Literal["grpc", "http"]


class InputSpec:
    """An input as the server's model metadata describes it; shape includes the batch dim when batched."""

    def __init__(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = tuple(int(d) for d in shape)
        self.dtype = to_numpy_dtype(datatype)

    def check(self, array: np.ndarray, max_batch_size: int) -> None:
        """Raise InvalidInput, naming this input, if the server would refuse ``array``."""
        if array.dtype != self.dtype:
            raise InvalidInput(f"input {self.name!r}: dtype {array.dtype} given, the model takes {self.datatype}")
        if array.ndim != len(self.shape) or any(
            want != -1 and got != want for got, want in zip(array.shape, self.shape)
        ):
            raise InvalidInput(
                f"input {self.name!r}: shape {list(array.shape)} given, the model takes {list(self.shape)}"
            )
        if max_batch_size > 0 and not 0 < array.shape[0] <= max_batch_size:
            raise InvalidInput(
                f"input {self.name!r}: batch of {array.shape[0]} given, the model takes 1 to {max_batch_size}"
            )


class Client:
    """A synchronous client for one model on one Triton server, over gRPC or HTTP."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        protocol: Protocol = "grpc",
        version: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url
        self.model = model
        self.protocol = protocol
        self.version = version or ""
        self.timeout_s = timeout_s
        if protocol == "grpc":
            import tritonclient.grpc as transport
        elif protocol == "http":
            import tritonclient.http as transport  # type: ignore[no-redef]
        else:
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        self._transport: Any = transport
        kwargs = {} if protocol == "grpc" else {"network_timeout": timeout_s, "connection_timeout": timeout_s}
        self._client: Any = transport.InferenceServerClient(url, **kwargs)
        self._inputs: list[InputSpec] | None = None
        self._outputs: list[str] = []
        self._max_batch_size = 0

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except Exception as error:
            raise classify(error) from error

    def _metadata(self) -> list[InputSpec]:
        if self._inputs is None:
            as_json = {"as_json": True} if self.protocol == "grpc" else {}
            metadata = self._call("get_model_metadata", self.model, self.version, **as_json)
            config = self._call("get_model_config", self.model, self.version, **as_json)
            config = config.get("config", config)
            self._max_batch_size = int(config.get("max_batch_size", 0))
            self._outputs = [output["name"] for output in metadata["outputs"]]
            self._inputs = [InputSpec(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]]
        return self._inputs

    @property
    def inputs(self) -> list[InputSpec]:
        return list(self._metadata())

    @property
    def max_batch_size(self) -> int:
        self._metadata()
        return self._max_batch_size

    def infer(
        self, inputs: np.ndarray | Mapping[str, np.ndarray], *, outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run one request; a bare array goes to the model's only input."""
        specs = self._metadata()
        if isinstance(inputs, np.ndarray):
            if len(specs) != 1:
                names = ", ".join(spec.name for spec in specs)
                raise InvalidInput(f"model {self.model!r} takes {len(specs)} inputs ({names}): pass a dict")
            inputs = {specs[0].name: inputs}
        known = {spec.name: spec for spec in specs}
        unknown = sorted(set(inputs) - set(known))
        if unknown:
            raise InvalidInput(f"model {self.model!r} has no input {unknown[0]!r}; it takes {sorted(known)}")
        missing = sorted(set(known) - set(inputs))
        if missing:
            raise InvalidInput(f"input {missing[0]!r} of model {self.model!r} is missing")
        request = []
        for name, array in inputs.items():
            known[name].check(array, self._max_batch_size)
            tensor = self._transport.InferInput(name, list(array.shape), known[name].datatype)
            tensor.set_data_from_numpy(array)
            request.append(tensor)
        wanted = list(outputs) if outputs is not None else self._outputs
        requested = [self._transport.InferRequestedOutput(name) for name in wanted]
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self._call("infer", self.model, request, model_version=self.version, outputs=requested, **timeout)
        return {name: result.as_numpy(name) for name in wanted}

    def stats(self) -> ModelStats:
        as_json = {"as_json": True} if self.protocol == "grpc" else {}
        return ModelStats.from_json(self._call("get_inference_statistics", self.model, self.version, **as_json))

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model, self.version))
        except Exception:
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"model {self.model!r} at {self.url} was not ready within {timeout_s:.0f} s")
            time.sleep(0.2)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
