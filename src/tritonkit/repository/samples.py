"""How to make valid requests for a model: each input's value range and the lengths of its variable dims.

config.pbtxt already says each input's name, data type and dims (``-1`` for a variable one); what it cannot say is
which values are valid (token ids below the vocabulary size, 0/1 masks) and which lengths to send. tritonkit keeps
that in the config's parameter ``TRITONKIT_SAMPLES`` (JSON, ignored by Triton's native backends), so ``tritonkit
infer``, ``load`` and ``bench`` make valid requests for any model with no options. The one sample maker here is
what every command uses to make random tensors.

The command-line form of one input is ``NAME:DTYPE:DIMS[:LOW:HIGH]``: DIMS are one sample's dims with ``-1`` for a
variable one (``-1``, ``-1,16``, ``3,224,224``), values are drawn uniformly from LOW..HIGH (inclusive for
integers); ``--length MIN:MAX`` bounds the variable dims.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tritonkit.errors import ConfigError

__all__ = [
    "SAMPLES_PARAMETER",
    "InputSample",
    "SampleSpec",
    "TensorShape",
    "default_range",
    "length_range",
    "make_batch",
    "pad_to_bucket",
    "parse_input_option",
    "parse_length",
    "unpad",
]

SAMPLES_PARAMETER = "TRITONKIT_SAMPLES"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# The dtypes PyTorch has and Triton serves, by the names a user types.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(kind)
    for name, kind in {
        "fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16", "fp64": "float64",
        "float64": "float64", "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8",
        "uint8": "uint8", "bool": "bool",
    }.items()
}  # fmt: skip


@dataclass(frozen=True)
class InputSample:
    """How to fill one input: a value range (None: the dtype's default) and the length of its variable dims."""

    low: float | None = None
    high: float | None = None
    min_length: int = 1
    max_length: int = 1

    def as_dict(self) -> dict[str, float | int]:
        values = {"low": self.low, "high": self.high, "min_length": self.min_length, "max_length": self.max_length}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class TensorShape:
    """One input as a request needs it: name, numpy dtype, one sample's dims (-1 for a variable one)."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]


@dataclass(frozen=True)
class SampleSpec:
    """The ``TRITONKIT_SAMPLES`` parameter: per input name, how to make its values."""

    inputs: Mapping[str, InputSample] = field(default_factory=dict)

    def to_parameter(self) -> str:
        return json.dumps({name: sample.as_dict() for name, sample in self.inputs.items()}, sort_keys=True)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], *, model: str = "the model") -> SampleSpec:
        """From a config's parameters (string values); an absent parameter is an empty spec."""
        text = parameters.get(SAMPLES_PARAMETER)
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            inputs = {str(name): InputSample(**entry) for name, entry in raw.items()}
        except (ValueError, TypeError, AttributeError) as error:
            raise ConfigError(f"model {model!r}: parameter {SAMPLES_PARAMETER} is not valid: {error}") from None
        for name, sample in inputs.items():
            _check_sample(name, sample)
        return cls(inputs)

    def sample(self, name: str) -> InputSample:
        return self.inputs.get(name, InputSample())

    def with_lengths(self, names: Sequence[str], low: int, high: int) -> SampleSpec:
        """The same spec with the lengths of ``names`` (the inputs with variable dims) set to low..high."""
        inputs = dict(self.inputs)
        for name in names:
            sample = inputs.get(name, InputSample())
            inputs[name] = InputSample(sample.low, sample.high, low, high)
        return SampleSpec(inputs)


def _check_sample(name: str, sample: InputSample) -> None:
    if sample.low is not None and sample.high is not None and sample.low > sample.high:
        raise ConfigError(f"input {name!r}: LOW {sample.low:g} is above HIGH {sample.high:g}")
    if not 1 <= sample.min_length <= sample.max_length:
        raise ConfigError(
            f"input {name!r}: lengths {sample.min_length}:{sample.max_length} must satisfy 1 <= MIN <= MAX"
        )


def parse_length(text: str) -> tuple[int, int]:
    """``"8:128"`` -> (8, 128); ``"32"`` -> (32, 32)."""
    parts = text.split(":")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        low, high = 0, 0
    if not 1 <= low <= high:
        raise ConfigError(f"--length {text!r} is not MIN:MAX with 1 <= MIN <= MAX, e.g. 8:128")
    return low, high


def parse_input_option(text: str) -> tuple[str, np.dtype, tuple[int, ...], InputSample]:
    """``NAME:DTYPE:DIMS[:LOW:HIGH]`` -> (name, dtype, sample dims, value range); errors name the part."""
    parts = text.split(":")
    form = "NAME:DTYPE:DIMS[:LOW:HIGH], e.g. input_ids:int64:-1:0:29999"
    if len(parts) not in (3, 5):
        raise ConfigError(f"--input {text!r} is not of the form {form}")
    name, dtype_text, dims_text = parts[:3]
    if not _NAME.match(name):
        raise ConfigError(f"--input {text!r}: {name!r} is not a tensor name (letters, digits, '_', '.', '-')")
    dtype = DTYPES.get(dtype_text.lower())
    if dtype is None:
        raise ConfigError(f"--input {text!r}: dtype {dtype_text!r} is not one of {', '.join(sorted(set(DTYPES)))}")
    try:
        dims = tuple(int(d) for d in dims_text.split(",")) if dims_text else ()
    except ValueError:
        raise ConfigError(f"--input {text!r}: DIMS {dims_text!r} is not a comma-separated list of integers") from None
    if any(d == 0 or d < -1 for d in dims):
        raise ConfigError(f"--input {text!r}: each dim is >= 1, or -1 for a variable one")
    low = high = None
    if len(parts) == 5:
        try:
            low, high = float(parts[3]), float(parts[4])
        except ValueError:
            raise ConfigError(f"--input {text!r}: LOW and HIGH must be numbers") from None
        if dtype.kind in "iub" and (not low.is_integer() or not high.is_integer()):
            raise ConfigError(f"--input {text!r}: an integer input takes whole LOW and HIGH")
    sample = InputSample(low, high)
    _check_sample(name, sample)
    return name, dtype, dims, sample


def default_range(dtype: np.dtype) -> tuple[float, float] | None:
    """The value range used when none is given: None for floats (standard normal)."""
    if dtype.kind == "b":
        return (0, 1)
    if dtype.kind == "u" and dtype.itemsize == 1:
        return (0, 255)  # pixels
    if dtype.kind in "iu":
        return (0, 99)  # ids, lengths, indices: valid for any embedding of at least 100 rows
    return None


def length_range(tensors: Sequence[TensorShape], spec: SampleSpec) -> tuple[int, int] | None:
    """The lengths that every input with a variable dim allows (low, high); None if no input has one."""
    variable = [spec.sample(t.name) for t in tensors if any(d < 0 for d in t.dims)]
    if not variable:
        return None
    low = max(s.min_length for s in variable)
    return low, max(low, min(s.max_length for s in variable))


def make_batch(
    tensors: Sequence[TensorShape],
    spec: SampleSpec,
    rows: int | None,
    rng: np.random.Generator,
    *,
    length: int | None = None,
) -> dict[str, np.ndarray]:
    """One request's arrays: ``rows`` samples (None: no batch dim), variable dims all of one length.

    The length is ``length`` or drawn from the inputs' min..max lengths (the widest range of the inputs that have
    variable dims), so that ids and their mask agree.
    """
    if length is None:
        unknown = [t.name for t in tensors if any(d < 0 for d in t.dims) and t.name not in spec.inputs]
        if unknown:
            raise ConfigError(
                f"input {unknown[0]!r} has a variable dim and the model says no lengths for it: export with "
                "--input/--length, give --length MIN:MAX, or set the TRITONKIT_SAMPLES parameter"
            )
        span = length_range(tensors, spec)
        if span is not None:
            length = int(rng.integers(span[0], span[1] + 1))
    arrays = {}
    for tensor in tensors:
        dims = tuple(length if d < 0 else d for d in tensor.dims) if length else tensor.dims
        if any(d is None or d < 0 for d in dims):
            raise ConfigError(f"input {tensor.name!r} has a variable dim and no length was given")
        shape = ((rows,) if rows is not None else ()) + tuple(int(d) for d in dims)
        arrays[tensor.name] = _values(tensor, spec.sample(tensor.name), shape, rng)
    return arrays


def _values(tensor: TensorShape, sample: InputSample, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = tensor.dtype
    if dtype.kind not in "fiub":
        raise ConfigError(f"input {tensor.name!r}: random values cannot fill a {dtype} tensor")
    given = (sample.low, sample.high) if sample.low is not None and sample.high is not None else None
    bounds = given or default_range(dtype)
    if dtype.kind == "f":
        if bounds is None:
            return rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        return rng.uniform(bounds[0], bounds[1], size=shape).astype(dtype)
    assert bounds is not None
    low, high = math.floor(bounds[0]), math.floor(bounds[1])
    values = rng.integers(low, high + 1, size=shape, dtype=np.int64)
    return values.astype(dtype)


def pad_to_bucket(
    arrays: Mapping[str, np.ndarray], variable: Mapping[str, Sequence[int]], buckets: Sequence[int]
) -> tuple[dict[str, np.ndarray], int | None, int | None]:
    """Pad every variable dim of a request to the smallest bucket that holds it, with zeros.

    ``variable`` gives, per input name, the axes (of the batched array) that are variable; they must all have one
    length (ids and their mask). Zeros are what a padding token id and a masked-out position are in the models
    this is for: pass the attention mask, or the padding changes the answer. Returns the padded arrays, the
    length and the padded length (None, None when nothing is variable).
    """
    lengths = {int(arrays[name].shape[axis]) for name, axes in variable.items() if name in arrays for axis in axes}
    if not lengths:
        return dict(arrays), None, None
    if len(lengths) > 1:
        raise ConfigError(f"the variable dims of one request have different lengths {sorted(lengths)}")
    length = lengths.pop()
    target = next((bucket for bucket in sorted(buckets) if bucket >= length), None)
    if target is None:
        raise ConfigError(f"length {length} is over the largest padding bucket {max(buckets)}")
    padded = {}
    for name, array in arrays.items():
        widths = [(0, 0)] * array.ndim
        for axis in variable.get(name, ()):
            widths[axis] = (0, target - length)
        padded[name] = np.pad(array, widths) if target != length and name in variable else array
    return padded, length, target


def unpad(
    outputs: Mapping[str, np.ndarray], variable: Mapping[str, Sequence[int]], length: int
) -> dict[str, np.ndarray]:
    """Outputs back at the request's own length: each variable axis of ``variable`` cut to ``length``."""
    result = {}
    for name, array in outputs.items():
        for axis in variable.get(name, ()):
            array = np.take(array, np.arange(length), axis=axis)
        result[name] = array
    return result
