"""Request arrays for a load test, built once from the model's metadata and then reused for every request.

Building them once keeps the load generator's CPU on sending requests, not on making data. A payload is:

* ``random``: valid values for every input, as the model's ``TRITONKIT_SAMPLES`` parameter says (value ranges,
  lengths of variable dims; :mod:`tritonkit.repository.samples`), else by dtype (N(0, 1) for floats, the full
  range for uint8); with variable dims, up to ``MAX_BATCHES`` batches of lengths drawn from the model's range or
  ``--length``; or real rows from a ``--samples`` file (:mod:`tritonkit.repository.payload_spec`);
* ``uint8``: random uint8 frames, for models exported with ``--uint8-input`` (NHWC);
* a directory, file or glob of images: decoded with Pillow, resized to the model's input, laid out as it takes
  them (NCHW float normalised with the ImageNet mean and std, as tritonkit's FP32 exports expect, or NHWC uint8).
"""

from __future__ import annotations

import glob
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tritonkit.client import InputSpec
from tritonkit.errors import ConfigError, InvalidInput, TritonkitError
from tritonkit.repository.payload_spec import PayloadSpec
from tritonkit.repository.samples import SampleSpec, TensorShape

__all__ = ["IMAGE_SUFFIXES", "MAX_BATCHES", "Payload", "build_payload", "find_images", "image_layout"]

# The same constants as tritonkit.export.models, repeated so that a load generator does not import torch.
_IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), dtype=np.float32)
_IMAGENET_STD = np.array((0.229, 0.224, 0.225), dtype=np.float32)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
# Distinct batches an image payload cycles through: enough variety, bounded memory for large inputs.
MAX_BATCHES = 16

Layout = Literal["CHW", "HWC"]


@dataclass(frozen=True)
class Payload:
    """The request arrays: one or more batches, each a dict of input name to array, sent in turn."""

    source: str
    batches: tuple[dict[str, np.ndarray], ...]

    @property
    def batch_size(self) -> int:
        first = next(iter(self.batches[0].values()))
        return int(first.shape[0]) if first.ndim else 1

    @property
    def nbytes(self) -> int:
        """Bytes of one request's inputs."""
        return sum(array.nbytes for array in self.batches[0].values())

    def cycle(self) -> Iterator[dict[str, np.ndarray]]:
        return itertools.cycle(self.batches)

    def describe(self) -> str:
        shapes = ", ".join(
            f"{name} {array.dtype}[{','.join(map(str, array.shape))}]" for name, array in self.batches[0].items()
        )
        return f"{self.source} payload: {shapes} ({len(self.batches)} distinct batch(es))"


def build_payload(
    inputs: Sequence[InputSpec],
    max_batch_size: int,
    batch_size: int,
    source: str = "random",
    *,
    model: str = "the model",
    seed: int = 0,
    samples: SampleSpec | None = None,
    requests: PayloadSpec | None = None,
) -> Payload:
    """Arrays for ``batch_size``-row requests to a model with these inputs; InvalidInput if they cannot fit.

    ``requests`` (``--length``, ``--samples``) goes with the random payload only.
    """
    if max_batch_size > 0 and batch_size > max_batch_size:
        raise InvalidInput(f"batch size {batch_size} is over the max_batch_size {max_batch_size} of model {model!r}")
    if max_batch_size == 0 and batch_size != 1:
        raise InvalidInput(f"model {model!r} does not batch (max_batch_size 0): use batch size 1")
    rng = np.random.default_rng(seed)
    requests = requests or PayloadSpec()
    if requests != PayloadSpec() and source != "random":
        raise InvalidInput(f"--payload {source}: {requests.describe()} go with --payload random only")
    if source in ("random", "uint8"):
        if source == "uint8":
            for spec in inputs:
                if spec.datatype != "UINT8":
                    raise InvalidInput(
                        f"--payload uint8 sends uint8 frames, but input {spec.name!r} of model {model!r} takes "
                        f"{spec.datatype}: export the model with --uint8-input, or use --payload random"
                    )
        return _random_payload(
            source, inputs, max_batch_size, batch_size, samples or SampleSpec(), requests, rng, model
        )
    samples_by_name = {spec.name: _sample_shape(spec, max_batch_size, model) for spec in inputs}
    rows = (batch_size,) if max_batch_size > 0 else ()
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise InvalidInput(f"image payloads fill one input, but model {model!r} takes {len(inputs)} ({names})")
    spec = inputs[0]
    layout, channels, height, width = image_layout(spec, samples_by_name[spec.name], model)
    files = find_images(source)
    # Only as many files as the distinct batches use are decoded: a directory of 10k images stays cheap.
    wanted = min(len(files), MAX_BATCHES * batch_size)
    images = [_load_image(path, channels, height, width) for path in files[:wanted]]
    count = min(math.ceil(len(images) / batch_size), MAX_BATCHES)
    batches = []
    for index in range(count):
        frames = np.stack([images[(index * batch_size + row) % len(images)] for row in range(batch_size)])
        array = _to_layout(frames, layout, spec)
        batches.append({spec.name: array if rows else array[0]})
    return Payload(f"{len(images)} image(s) from {source}", tuple(batches))


def _random_payload(
    source: str,
    inputs: Sequence[InputSpec],
    max_batch_size: int,
    batch_size: int,
    samples: SampleSpec,
    requests: PayloadSpec,
    rng: np.random.Generator,
    model: str,
) -> Payload:
    """Valid random requests (one batch for fixed shapes, up to MAX_BATCHES of drawn lengths for variable ones),
    or up to MAX_BATCHES requests of real rows from ``requests``' samples file."""
    tensors = []
    for spec in inputs:
        dims = tuple(spec.shape[1:] if max_batch_size > 0 else spec.shape)
        if spec.dtype is None or spec.dtype == np.dtype(object):
            raise InvalidInput(f"random payloads cannot fill {spec.datatype} input {spec.name!r} of model {model!r}")
        tensors.append(TensorShape(spec.name, spec.dtype, dims))
    rows = batch_size if max_batch_size > 0 else None
    try:
        batches = tuple(requests.requests(tensors, samples, rows, rng, count=MAX_BATCHES, model=model))
    except ConfigError as error:
        raise InvalidInput(f"model {model!r}: {error}") from None
    return Payload(requests.describe() if source == "random" else source, batches)


def _sample_shape(spec: InputSpec, max_batch_size: int, model: str) -> tuple[int, ...]:
    sample = spec.shape[1:] if max_batch_size > 0 else spec.shape
    if any(dim < 0 for dim in sample):
        raise InvalidInput(
            f"input {spec.name!r} of model {model!r} has a variable dimension {list(spec.shape)}: "
            "load payloads need fixed shapes"
        )
    return tuple(sample)


def image_layout(spec: InputSpec, sample: Sequence[int], model: str = "the model") -> tuple[Layout, int, int, int]:
    """(layout, channels, height, width) of an image input: uint8 inputs are read as HWC, float ones as CHW."""
    dtype = spec.dtype
    floating = dtype is not None and np.issubdtype(dtype, np.floating)
    if dtype is None or not (floating or dtype == np.uint8):
        raise InvalidInput(f"image payloads need a float or uint8 input; {spec.name!r} of {model!r} is {spec.datatype}")
    if len(sample) == 3:
        chw_fits, hwc_fits = sample[0] in (1, 3), sample[2] in (1, 3)
        # tritonkit's exports take float NCHW or uint8 NHWC; a model that fits only the other layout gets that one.
        if chw_fits and (floating or not hwc_fits):
            return "CHW", sample[0], sample[1], sample[2]
        if hwc_fits:
            return "HWC", sample[2], sample[0], sample[1]
    raise InvalidInput(
        f"input {spec.name!r} of model {model!r} has shape {list(spec.shape)}, not an image "
        "(C,H,W or H,W,C with 1 or 3 channels): use --payload random"
    )


def find_images(source: str) -> list[Path]:
    """The image files a directory, file or glob names, sorted; raises InvalidInput if there are none."""
    path = Path(source).expanduser()
    if path.is_dir():
        candidates = sorted(item for item in path.iterdir() if item.is_file())
    else:
        candidates = sorted(Path(item) for item in glob.glob(str(path), recursive=True) if Path(item).is_file())
    images = [item for item in candidates if item.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        what = "in directory" if path.is_dir() else "matching"
        raise InvalidInput(
            f"--payload {source!r}: no image files {what} it ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "give random, uint8, a directory of images or a glob such as 'images/*.jpg'"
        )
    return images


def _load_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise TritonkitError("image payloads need Pillow: pip install 'tritonkit[client]'") from None
    try:
        with Image.open(path) as image:
            converted = image.convert("RGB" if channels == 3 else "L")
            resized = converted.resize((width, height), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInput(f"{path}: not an image Pillow can read ({error})") from error
    frame = np.asarray(resized, dtype=np.uint8)
    return frame if frame.ndim == 3 else frame[:, :, None]


def _to_layout(frames: np.ndarray, layout: Layout, spec: InputSpec) -> np.ndarray:
    """(N, H, W, C) uint8 frames -> the input's layout and dtype."""
    if spec.dtype == np.uint8:
        out = frames if layout == "HWC" else frames.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(out)
    scaled = frames.astype(np.float32) / 255.0
    if frames.shape[-1] == 3:
        scaled = (scaled - _IMAGENET_MEAN) / _IMAGENET_STD
    out = scaled if layout == "HWC" else scaled.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out, dtype=spec.dtype)
