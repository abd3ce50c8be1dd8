"""What ``tritonkit load`` and ``tritonkit bench`` send besides the model's own ranges: ``--length`` and ``--samples``.

* ``--length MIN:MAX`` (or ``N``) replaces the lengths of the variable dims that the model's ``TRITONKIT_SAMPLES``
  gives, within the longest the model takes (a longer request would be refused by the client anyway).
* ``--samples FILE.npz`` sends real requests: one array per input, named after it, of shape ``[rows, *dims]``
  (the variable dims at one length per file), in the input's dtype; a ``.npy`` file feeds a one-input model. The
  rows are cut into requests of the batch size, in order, wrapping round when the file has fewer.

Random requests still come from the one sample maker, :func:`tritonkit.repository.samples.make_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonkit.errors import ConfigError
from tritonkit.repository.samples import InputSample, SampleSpec, TensorShape, make_batch, parse_length

__all__ = ["PayloadSpec"]


@dataclass(frozen=True)
class PayloadSpec:
    """The lengths to draw (None: the model's) or a file of real requests (None: random ones)."""

    length: tuple[int, int] | None = None
    samples_file: Path | None = None

    @classmethod
    def parse(cls, length: str | None = None, samples_file: str | Path | None = None) -> PayloadSpec:
        if length and samples_file:
            raise ConfigError("--length and --samples both say how long requests are: give one of them")
        return cls(parse_length(length) if length else None, Path(samples_file) if samples_file else None)

    def describe(self) -> str:
        if self.samples_file is not None:
            return f"samples from {self.samples_file}"
        return f"lengths {self.length[0]}:{self.length[1]}" if self.length else "random"

    def sample_spec(self, tensors: Sequence[TensorShape], spec: SampleSpec, model: str) -> SampleSpec:
        """The model's spec with ``--length`` in place of its lengths; a length over the model's limit is refused."""
        if self.length is None:
            return spec
        low, high = self.length
        variable = [t.name for t in tensors if any(d < 0 for d in t.dims)]
        if not variable:
            raise ConfigError(f"--length {low}:{high}: model {model!r} has no variable dims to set")
        for name in variable:
            if name in spec.inputs and high > spec.inputs[name].max_length:
                raise ConfigError(
                    f"--length {low}:{high}: input {name!r} of model {model!r} takes at most "
                    f"{spec.inputs[name].max_length} (its TRITONKIT_SAMPLES parameter)"
                )
        return spec.with_lengths(variable, low, high)

    def requests(
        self,
        tensors: Sequence[TensorShape],
        spec: SampleSpec,
        rows: int | None,
        rng: np.random.Generator,
        *,
        count: int,
        model: str = "the model",
    ) -> list[dict[str, np.ndarray]]:
        """Up to ``count`` requests of ``rows`` samples (None: no batch dim); one when every shape is fixed."""
        if self.samples_file is not None:
            return _file_requests(self.samples_file, tensors, spec, rows, count, model)
        spec = self.sample_spec(tensors, spec, model)
        variable = any(d < 0 for t in tensors for d in t.dims)
        return [make_batch(tensors, spec, rows, rng) for _ in range(count if variable else 1)]


def _file_requests(
    path: Path, tensors: Sequence[TensorShape], spec: SampleSpec, rows: int | None, count: int, model: str
) -> list[dict[str, np.ndarray]]:
    arrays = _read(path, tensors, model)
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"--samples {path}: the arrays have different numbers of rows {sizes}; one row per sample")
    total = next(iter(sizes.values()))
    if total == 0:
        raise ConfigError(f"--samples {path}: the arrays have no rows")
    for tensor in tensors:
        _check(path, tensor, arrays[tensor.name], spec.sample(tensor.name) if tensor.name in spec.inputs else None)
    per_request = rows or 1
    requests = []
    for index in range(min(count, -(-total // per_request))):
        picked = (index * per_request + np.arange(per_request)) % total
        request = {name: np.ascontiguousarray(array[picked]) for name, array in arrays.items()}
        requests.append(request if rows is not None else {name: array[0] for name, array in request.items()})
    return requests


def _read(path: Path, tensors: Sequence[TensorShape], model: str) -> dict[str, np.ndarray]:
    names = [t.name for t in tensors]
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--samples {path}: cannot read it as .npz or .npy ({error})") from None
    if isinstance(loaded, np.ndarray):
        if len(tensors) != 1:
            raise ConfigError(f"--samples {path}: a .npy file fills one input; model {model!r} takes {len(names)} "
                              f"({', '.join(names)}): give a .npz with one array per input")  # fmt: skip
        return {names[0]: loaded}
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ConfigError(f"--samples {path}: no array for input {missing[0]!r} of model {model!r} (the file has "
                          f"{sorted(arrays)}); a .npz holds one array per input, named after it")  # fmt: skip
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise ConfigError(f"--samples {path}: {extra[0]!r} is not an input of model {model!r}; its inputs are {names}")
    return arrays


def _check(path: Path, tensor: TensorShape, array: np.ndarray, sample: InputSample | None) -> None:
    where = f"--samples {path}: input {tensor.name!r}"
    if array.dtype != tensor.dtype:
        raise ConfigError(f"{where} is {array.dtype}; the model takes {tensor.dtype}")
    dims = array.shape[1:]
    fits = len(dims) == len(tensor.dims) and all(want < 0 or want == got for want, got in zip(tensor.dims, dims))
    if not fits:
        raise ConfigError(f"{where} has rows of shape {list(dims)}; the model takes {list(tensor.dims)} (-1: any)")
    longest = max((got for want, got in zip(tensor.dims, dims) if want < 0), default=0)
    if sample is not None and longest > sample.max_length:
        raise ConfigError(f"{where}: length {longest} is over the longest the model takes, {sample.max_length} "
                          "(its TRITONKIT_SAMPLES parameter)")  # fmt: skip
