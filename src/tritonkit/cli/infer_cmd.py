"""``tritonkit infer``: send random frames or images to a served model; print what came back and how long it took."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from tritonkit.cli.common import console, fail_cleanly
from tritonkit.errors import InvalidInput, TritonkitError

if TYPE_CHECKING:
    from tritonkit.client.model import ModelInfo

__all__ = ["infer", "load_images"]

_DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
# The constants of tritonkit.export.models, repeated so that this command does not import torch.
_IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), dtype=np.float32)
_IMAGENET_STD = np.array((0.229, 0.224, 0.225), dtype=np.float32)
_TOP = 5
_FIRST_VALUES = 4


def infer(
    model: str = typer.Argument(..., help="Name of the model on the server."),
    images: list[Path] = typer.Argument(None, help="Image files (decoded with Pillow, resized to the input)."),
    url: str = typer.Option(None, help="Server host:port (default 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP)."),
    protocol: str = typer.Option("grpc", help="grpc or http."),
    random: bool = typer.Option(False, "--random", help="Send random valid values for every input."),
    arrays: list[str] = typer.Option(
        None, "--input", help="NAME=FILE.npy: real data for one input (repeat; the others get random values)."
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Samples per request (with --random: the samples sent)."),
    length: str | None = typer.Option(None, help="With --random: the length of variable dims, N or MIN:MAX."),
    timeout_s: float = typer.Option(60.0, "--timeout-s", help="Client timeout per request, in seconds."),
) -> None:
    """Query a served model once; print each output (top-5 classes for [batch, N] float scores) and the round trip."""
    from tritonkit.client import Client
    from tritonkit.repository.payload_spec import PayloadSpec

    if protocol not in _DEFAULT_PORTS:
        raise typer.BadParameter(f"{protocol!r} is neither grpc nor http", param_hint="--protocol")
    if (random or bool(arrays)) == bool(images):
        raise typer.BadParameter("give --random, --input NAME=FILE.npy, or image files", param_hint="IMAGES")
    address = url or f"127.0.0.1:{_DEFAULT_PORTS[protocol]}"
    # Ignored: typer gives a str, checked against _DEFAULT_PORTS' keys above.
    with fail_cleanly(), Client(address, model, protocol=protocol, timeout_s=timeout_s) as client:  # type: ignore[arg-type]
        info = client.info()
        feed: dict[str, np.ndarray] | np.ndarray
        if images:
            if len(info.inputs) != 1:
                names = ", ".join(spec.name for spec in info.inputs)
                raise InvalidInput(f"images fill one input; model {model!r} takes {len(info.inputs)} ({names})")
            spec = info.inputs[0]
            sample = spec.shape[1:] if info.max_batch_size > 0 else spec.shape
            feed = load_images(images, spec.dtype, sample, spec.name)
            labels = [str(path) for path in images]
            if info.max_batch_size == 0:
                feed = feed[0]  # a model without a batch axis takes one sample
        else:
            given = _read_arrays(arrays or [], [spec.name for spec in info.inputs], model)
            rows = next((len(a) for a in given.values()), batch) if info.max_batch_size > 0 else 1
            fixed = _given_length(given, info) if given else None
            # --length draws from its range (within the model's limit) through the one sample maker.
            samples = PayloadSpec.parse(length).sample_spec(info.tensor_shapes(), info.sample_spec(), model)
            feed = {**info.random_request(rows, np.random.default_rng(0), spec=samples, length=fixed), **given}
            labels = [f"sample #{index}" for index in range(rows)]
        started = time.perf_counter()
        if isinstance(feed, np.ndarray) and info.max_batch_size > 0 and len(feed) > batch:
            outputs = client.infer_many(feed, batch_size=batch, max_in_flight=1)
        else:
            outputs = client.infer(feed)
        elapsed_s = time.perf_counter() - started
    requests = -(-len(labels) // batch) if images and info.max_batch_size > 0 else 1
    _report(model, labels, outputs, elapsed_s, requests, protocol)


def _read_arrays(items: list[str], names: list[str], model: str) -> dict[str, np.ndarray]:
    """``NAME=FILE.npy`` options -> arrays, each checked against the model's input names."""
    arrays = {}
    for item in items:
        name, _, path = item.partition("=")
        if not path:
            raise InvalidInput(f"--input {item!r} is not NAME=FILE.npy")
        if name not in names:
            raise InvalidInput(f"--input {item!r}: model {model!r} has no input {name!r}; its inputs are {names}")
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InvalidInput(f"--input {item!r}: cannot read {path} as a .npy array ({error})") from None
    return arrays


def _given_length(given: dict[str, np.ndarray], info: ModelInfo) -> int | None:
    """The length of the variable dim in the arrays given, so that the random inputs match them."""
    for tensor in info.tensor_shapes():
        array = given.get(tensor.name)
        if array is None:
            continue
        sample = array.shape[1:] if info.max_batch_size > 0 else array.shape
        for want, got in zip(tensor.dims, sample):
            if want < 0:
                return int(got)
    return None


def load_images(paths: list[Path], dtype: np.dtype | None, sample: tuple[int, ...], name: str) -> np.ndarray:
    """Decode, resize and lay out images for an input: float C,H,W (ImageNet-normalised) or uint8 H,W,C.

    That is what tritonkit's exports take: the FP32 default, and ``--uint8-input`` frames.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise TritonkitError("image files need Pillow: pip install 'tritonkit[client]'") from None
    floating = dtype is not None and dtype.kind == "f"
    if len(sample) != 3 or not (floating or dtype == np.uint8):
        raise InvalidInput(f"input {name!r} takes {dtype} {list(sample)}, not an image; use --random or --input")
    channels_first = floating and sample[0] in (1, 3)
    channels, height, width = sample if channels_first else (sample[2], sample[0], sample[1])
    if channels not in (1, 3) or height < 1 or width < 1:
        raise InvalidInput(f"input {name!r} of shape {list(sample)} is not C,H,W or H,W,C with 1 or 3 channels")
    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                mode = "RGB" if channels == 3 else "L"
                resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError) as error:
            raise InvalidInput(f"{path}: not an image Pillow can read ({error})") from error
        pixels = np.asarray(resized, dtype=np.uint8)
        frames.append(pixels if pixels.ndim == 3 else pixels[:, :, None])
    stacked = np.stack(frames)  # N,H,W,C uint8
    if not floating:
        return np.ascontiguousarray(stacked)
    scaled = stacked.astype(np.float32) / 255.0
    if channels == 3:
        scaled = (scaled - _IMAGENET_MEAN) / _IMAGENET_STD
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2), dtype=dtype)


def _values_summary(values: np.ndarray) -> str:
    """The first few values and the range of an output that is not [batch, N] float scores."""
    if values.dtype.kind not in "fiub" or not values.size:
        return ""
    first = ", ".join(f"{float(v):.4g}" for v in values.reshape(-1)[:_FIRST_VALUES])
    more = ", ..." if values.size > _FIRST_VALUES else ""
    return (f": [{first}{more}] (min {float(values.min()):.4g}, mean {float(values.mean()):.4g}, "
            f"max {float(values.max()):.4g})")  # fmt: skip


def _report(
    model: str, labels: list[str], outputs: dict[str, np.ndarray], elapsed_s: float, requests: int, protocol: str
) -> None:
    for name, values in outputs.items():
        if values.ndim == 2 and values.shape[1] > 1 and values.dtype.kind == "f" and len(values) == len(labels):
            top = min(_TOP, values.shape[1])
            console.print(f"{model}: {name} {list(values.shape)}; top-{top} classes (score) per input:", soft_wrap=True)
            for label, row in zip(labels, values):
                best = np.argsort(row)[::-1][:top]
                classes = ", ".join(f"{int(i)} ({float(row[i]):.3f})" for i in best)
                console.print(f"  {label}: {classes}", soft_wrap=True, markup=False)
        else:
            summary = _values_summary(values)
            console.print(f"{model}: {name} {list(values.shape)} {values.dtype}{summary}", soft_wrap=True)
    per_request = f", {elapsed_s * 1000 / requests:.1f} ms per request" if requests > 1 else ""
    console.print(
        f"round trip: {elapsed_s * 1000:.1f} ms for {len(labels)} sample(s) in {requests} request(s) "
        f"over {protocol}{per_request}"
    )
