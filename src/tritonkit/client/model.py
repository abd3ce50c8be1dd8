"""What the client knows about a model: its inputs and outputs, read once from the server, and the checks on them.

Everything here is pure: no I/O, so the sync and the async client share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from tritonkit.client.stats import Warmup
from tritonkit.errors import ConfigError, InvalidInput
from tritonkit.repository.dtypes import to_numpy_dtype
from tritonkit.repository.samples import SampleSpec, TensorShape, make_batch, pad_to_bucket, unpad

__all__ = ["InputSpec", "ModelInfo", "OutputSpec", "join_batches", "split_batches"]

Inputs = np.ndarray | Mapping[str, np.ndarray]


def _numpy_dtype(datatype: str) -> np.dtype | None:
    # BF16 has no numpy dtype; such tensors are checked by Triton name only.
    try:
        return to_numpy_dtype(datatype)
    except Exception:
        return None


class InputSpec:
    """An input as the server's model metadata describes it; ``shape`` includes the batch dim when batched."""

    __slots__ = ("_static_tail", "datatype", "dtype", "name", "shape")

    def __init__(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = tuple(int(d) for d in shape)
        self.dtype = _numpy_dtype(datatype)
        # The common case, one tuple comparison: every dim after the first is fixed.
        tail = self.shape[1:]
        self._static_tail = tail if self.shape and all(d >= 0 for d in tail) else None

    def __repr__(self) -> str:
        return f"InputSpec({self.name!r}, {self.datatype!r}, {list(self.shape)})"

    def check(self, array: np.ndarray, max_batch_size: int) -> None:
        """Raise InvalidInput, naming this input, if the server would refuse ``array``."""
        if array.dtype != self.dtype and np_to_triton_dtype(array.dtype) != self.datatype:
            raise InvalidInput(f"input {self.name!r}: dtype {array.dtype} given, the model takes {self.datatype}")
        shape = array.shape
        if len(shape) != len(self.shape):
            fits = False
        elif self._static_tail is not None:
            fits = shape[1:] == self._static_tail and self.shape[0] in (-1, shape[0])
        else:
            fits = all(want in (-1, got) for got, want in zip(shape, self.shape))
        if not fits:
            raise InvalidInput(f"input {self.name!r}: shape {list(shape)} given, the model takes {list(self.shape)}")
        if max_batch_size > 0 and not 0 < shape[0] <= max_batch_size:
            raise InvalidInput(f"input {self.name!r}: batch of {shape[0]} given, the model takes 1 to {max_batch_size}")


@dataclass(frozen=True)
class OutputSpec:
    """An output as the model metadata describes it.

    ``sample_nbytes``: bytes of one batch row (of the whole output for a model without batching); None for BYTES
    outputs and outputs with a variable dimension.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    dtype: np.dtype | None
    sample_nbytes: int | None


def _sample_nbytes(dtype: np.dtype | None, dims: Sequence[int]) -> int | None:
    if dtype is None or dtype == np.dtype(object) or any(d < 0 for d in dims):
        return None
    return int(math.prod(dims)) * dtype.itemsize


@dataclass(frozen=True)
class ModelInfo:
    """A model's inputs, outputs and batching, from its metadata and config (read once, then cached)."""

    name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    max_batch_size: int
    # config.pbtxt's parameters (string values): tritonkit keeps how to make valid requests there.
    parameters: Mapping[str, str] = field(default_factory=dict)
    # What model_warmup adds to the statistics at each load: Client.stats() leaves it out of the counts.
    warmup: Warmup = field(default_factory=Warmup)

    @classmethod
    def from_json(cls, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
        """Build from the JSON form of ``get_model_metadata`` and ``get_model_config`` (gRPC or HTTP)."""
        config = config.get("config", config)
        max_batch_size = int(config.get("max_batch_size", 0))
        outputs = []
        for output in metadata["outputs"]:
            shape = tuple(int(d) for d in output["shape"])
            dtype = _numpy_dtype(output["datatype"])
            per_sample = _sample_nbytes(dtype, shape[1:] if max_batch_size > 0 else shape)
            outputs.append(OutputSpec(output["name"], output["datatype"], shape, dtype, per_sample))
        inputs = tuple(InputSpec(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"])
        parameters = {
            str(key): str(value.get("string_value", "")) if isinstance(value, Mapping) else str(value)
            for key, value in (config.get("parameters") or {}).items()
        }
        return cls(
            str(metadata["name"]), inputs, tuple(outputs), max_batch_size, parameters, Warmup.from_config(config)
        )

    def tensor_shapes(self) -> list[TensorShape]:
        """Each input's name, dtype and one sample's dims (-1 for a variable one), as the sample maker takes them."""
        shapes = []
        for spec in self.inputs:
            if spec.dtype is None or spec.dtype == np.dtype(object):
                raise InvalidInput(f"random values cannot fill {spec.datatype} input {spec.name!r} of {self.name!r}")
            dims = spec.shape[1:] if self.max_batch_size > 0 else spec.shape
            shapes.append(TensorShape(spec.name, spec.dtype, tuple(dims)))
        return shapes

    def variable_axes(self, which: str) -> dict[str, list[int]]:
        """Per input (``which`` "inputs") or output ("outputs"): the axes of its batched arrays that are variable."""
        first = 1 if self.max_batch_size > 0 else 0
        tensors = self.inputs if which == "inputs" else self.outputs
        axes = {t.name: [i for i, d in enumerate(t.shape) if d < 0 and i >= first] for t in tensors}
        return {name: found for name, found in axes.items() if found}

    def padded(self, arrays: dict[str, np.ndarray], buckets: Sequence[int]) -> tuple[dict[str, np.ndarray], int | None]:
        """``arrays`` with their variable dims padded to the smallest of ``buckets`` (none: as they are), and the
        request's own length, for :meth:`unpadded`."""
        if not buckets:
            return arrays, None
        try:
            padded, length, _ = pad_to_bucket(arrays, self.variable_axes("inputs"), buckets)
        except ConfigError as error:
            raise InvalidInput(f"model {self.name!r}: {error}") from None
        return padded, length

    def unpadded(self, outputs: dict[str, np.ndarray], length: int | None) -> dict[str, np.ndarray]:
        """Outputs with their variable dims cut back to the request's own ``length``."""
        return outputs if length is None else unpad(outputs, self.variable_axes("outputs"), length)

    def sample_spec(self) -> SampleSpec:
        """How to make valid values and lengths for this model (config parameter ``TRITONKIT_SAMPLES``)."""
        try:
            return SampleSpec.from_parameters(self.parameters, model=self.name)
        except ConfigError as error:
            raise InvalidInput(str(error)) from None

    def random_request(
        self, rows: int, rng: np.random.Generator, *, spec: SampleSpec | None = None, length: int | None = None
    ) -> dict[str, np.ndarray]:
        """A valid request of ``rows`` samples for every input (no batch dim for a model without batching)."""
        try:
            return make_batch(
                self.tensor_shapes(), spec or self.sample_spec(), rows if self.max_batch_size > 0 else None, rng,
                length=length,
            )  # fmt: skip
        except ConfigError as error:
            raise InvalidInput(f"model {self.name!r}: {error}") from None

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        return tuple(output.name for output in self.outputs)

    def output(self, name: str) -> OutputSpec:
        for output in self.outputs:
            if output.name == name:
                return output
        raise InvalidInput(f"model {self.name!r} has no output {name!r}; it has {list(self.output_names)}")

    def checked(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """The request's arrays by input name, after every check the server would make.

        A bare array goes to the model's only input. Errors name the offending input.
        """
        specs = self.inputs
        if isinstance(inputs, np.ndarray):
            if len(specs) != 1:
                names = ", ".join(spec.name for spec in specs)
                raise InvalidInput(f"model {self.name!r} takes {len(specs)} inputs ({names}): pass a dict")
            specs[0].check(inputs, self.max_batch_size)
            return {specs[0].name: inputs}
        if not isinstance(inputs, Mapping):
            raise InvalidInput(f"inputs must be a numpy array or a dict of them, not {type(inputs).__name__}")
        arrays: dict[str, np.ndarray] = {}
        for spec in specs:
            array = inputs.get(spec.name)
            if array is None:
                raise InvalidInput(f"input {spec.name!r} of model {self.name!r} is missing")
            if not isinstance(array, np.ndarray):
                raise InvalidInput(f"input {spec.name!r}: a numpy array is needed, not {type(array).__name__}")
            spec.check(array, self.max_batch_size)
            arrays[spec.name] = array
        if len(arrays) != len(inputs):
            unknown = sorted(set(inputs) - set(arrays))
            raise InvalidInput(
                f"model {self.name!r} has no input {unknown[0]!r}; it takes {[spec.name for spec in specs]}"
            )
        if self.max_batch_size > 0 and len(arrays) > 1:
            batches = {name: array.shape[0] for name, array in arrays.items()}
            if len(set(batches.values())) > 1:
                raise InvalidInput(f"the inputs' batch sizes differ: {batches}")
        for name, axes, longest in self.length_limits:
            for axis in axes:
                if arrays[name].ndim > axis and arrays[name].shape[axis] > longest:
                    raise InvalidInput(
                        f"input {name!r} of model {self.name!r}: length {arrays[name].shape[axis]} is over the "
                        f"longest the model takes, {longest} (its TRITONKIT_SAMPLES parameter)"
                    )
        return arrays

    @cached_property
    def length_limits(self) -> tuple[tuple[str, tuple[int, ...], int], ...]:
        """(input, its variable axes, the longest length) for inputs whose TRITONKIT_SAMPLES gives lengths.

        A length over it fails deep in the model (a position embedding's lookup, say) with a message that names
        none of the request's inputs; this names the input and the limit before anything is sent.
        """
        try:
            spec = self.sample_spec()
        except InvalidInput:
            return ()
        axes = self.variable_axes("inputs")
        return tuple(
            (name, tuple(found), spec.inputs[name].max_length) for name, found in axes.items() if name in spec.inputs
        )

    def wanted(self, outputs: Sequence[str] | None) -> tuple[str, ...]:
        """The output names a request asks for; all of the model's when ``outputs`` is None."""
        if outputs is None:
            return self.output_names
        if isinstance(outputs, str):
            outputs = (outputs,)
        names = tuple(outputs)
        for name in names:
            if name not in self.output_names:
                raise InvalidInput(f"model {self.name!r} has no output {name!r}; it has {list(self.output_names)}")
        if not names:
            raise InvalidInput("outputs is empty: ask for at least one output, or pass None for all")
        return names


def split_batches(info: ModelInfo, inputs: Inputs, batch_size: int) -> list[dict[str, np.ndarray]]:
    """Cut a large batch into requests of at most ``batch_size`` rows (views, not copies)."""
    if info.max_batch_size <= 0:
        raise InvalidInput(f"model {info.name!r} does not batch (max_batch_size 0), so infer_many cannot split")
    if not 0 < batch_size <= info.max_batch_size:
        raise InvalidInput(f"batch_size {batch_size} given, the model {info.name!r} takes 1 to {info.max_batch_size}")
    if isinstance(inputs, np.ndarray):
        if len(info.inputs) != 1:
            names = ", ".join(spec.name for spec in info.inputs)
            raise InvalidInput(f"model {info.name!r} takes {len(info.inputs)} inputs ({names}): pass a dict")
        inputs = {info.inputs[0].name: inputs}
    rows = {name: len(array) for name, array in inputs.items()}
    if len(set(rows.values())) > 1:
        raise InvalidInput(f"the inputs' batch sizes differ: {rows}")
    total = next(iter(rows.values()), 0)
    if total == 0:
        raise InvalidInput("infer_many was given no rows")
    starts = range(0, total, batch_size)
    return [{name: array[start : start + batch_size] for name, array in inputs.items()} for start in starts]


def join_batches(results: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The per-request results stitched back along the batch axis, in request order."""
    if len(results) == 1:
        return dict(results[0])
    return {name: np.concatenate([result[name] for result in results]) for name in results[0]}
