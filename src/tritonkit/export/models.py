"""Turning a MODEL reference into an eval-mode ``nn.Module``, and the uint8 frame wrapper.

A reference is either a torchvision model name (``resnet50``) or ``package.module:factory`` naming a
zero-argument callable that returns an ``nn.Module``. Weights are random unless a state dict is given;
the random initialisation is seeded so that two exports of the same reference are identical.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from tritonkit.errors import ExportError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "UInt8Frames",
    "load_model",
    "load_weights",
    "safe_model_name",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# Error messages list this many keys; a wrong checkpoint can have hundreds.
_KEYS_SHOWN = 5


def load_model(ref: str, *, weights: Path | None = None, seed: int = 0) -> nn.Module:
    """Build the model ``ref`` names, in eval mode, with seeded random or loaded weights.

    The global RNG is left untouched: the seed applies to a forked RNG only.
    """
    factory, label = _resolve(ref)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = factory()
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"building {label} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ExportError(f"{label} returned {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(module, weights)
    return module.eval()


def load_weights(module: nn.Module, path: Path) -> nn.Module:
    """Load the state dict saved at ``path`` into ``module`` (in place), strictly."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"weights file {path} does not exist")
    try:
        # weights_only: a weights file must not be able to run code when it is read.
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    state = _state_dict_of(saved, path)
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_some(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_some(unexpected)}")
        hint = ""
        if unexpected and all(key.startswith("module.") for key in unexpected):
            hint = " (saved from a DataParallel wrapper? strip the 'module.' prefix)"
        raise ExportError(f"weights file {path} does not fit the model: {'; '.join(parts)}{hint}")
    mismatched = [
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if tuple(state[key].shape) != tuple(value.shape)
    ]
    if mismatched:
        raise ExportError(f"weights file {path} has tensors of the wrong shape: {_some(mismatched)}")
    module.load_state_dict(state, strict=True)
    return module


def safe_model_name(ref: str) -> str:
    """A Triton model (directory) name for ``ref``: ``pkg.mod:build`` -> ``pkg_mod_build``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", ref.strip())


class UInt8Frames(nn.Module):
    """Takes raw uint8 frames ``(N, H, W, C)`` and feeds ``module`` normalised float ``(N, C, H, W)``.

    Doing the conversion inside the graph lets clients send a quarter of the bytes of FP32 and
    keeps the preprocessing identical to training, whatever language the client is written in.
    """

    # Buffers, registered in __init__; declared so that they read as tensors, not as any attribute of a Module.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        module: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ExportError(f"mean has {len(mean)} channels but std has {len(std)}")
        self.module = module
        # Not persistent: they are constants of the preprocessing, not weights of the model.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = frames.permute(0, 3, 1, 2).float().div(255.0)
        result: torch.Tensor | tuple[torch.Tensor, ...] = self.module((x - self.mean) / self.std)
        return result


def _resolve(ref: str) -> tuple[Callable[[], object], str]:
    ref = ref.strip()
    if ":" in ref:
        return _resolve_factory(ref)
    return _resolve_torchvision(ref)


def _resolve_torchvision(name: str) -> tuple[Callable[[], object], str]:
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise ExportError(
            f"unknown torchvision model {name!r}; {hint} (for your own model use 'package.module:factory')"
        )
    # weights=None always: tritonkit never downloads weights, --weights loads a local state dict.
    return (lambda: torchvision.models.get_model(name, weights=None)), f"torchvision model {name!r}"


def _resolve_factory(ref: str) -> tuple[Callable[[], object], str]:
    module_name, _, attr_path = ref.partition(":")
    if not _DOTTED.match(module_name) or not _DOTTED.match(attr_path):
        raise ExportError(f"bad model reference {ref!r}; expected a torchvision model name or 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ExportError(
                f"cannot import module {module_name!r} of model reference {ref!r}: {exc}; "
                "is its directory on PYTHONPATH?"
            ) from exc
        raise ExportError(f"importing {module_name!r} failed: a module it imports is missing: {exc}") from exc
    except Exception as exc:
        raise ExportError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    target: object = module
    walked = module_name
    for part in attr_path.split("."):
        if not hasattr(target, part):
            public = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(part, public, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ExportError(f"{walked!r} has no attribute {part!r}{hint}")
        target = getattr(target, part)
        walked = f"{walked}.{part}"
    if not callable(target):
        raise ExportError(f"{ref!r} is a {type(target).__name__}, not a callable that builds an nn.Module")
    return target, f"factory {ref!r}"


def _state_dict_of(saved: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(saved, Mapping):
        if saved and all(isinstance(v, torch.Tensor) for v in saved.values()):
            return saved
        # Training checkpoints (Lightning and most hand-rolled loops) nest the weights.
        nested = saved.get("state_dict")
        if isinstance(nested, Mapping) and all(isinstance(v, torch.Tensor) for v in nested.values()):
            return nested
    raise ExportError(f"weights file {path} holds {type(saved).__name__}, not a state dict (save model.state_dict())")


def _some(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_KEYS_SHOWN])
    rest = len(items) - _KEYS_SHOWN
    return f"{shown} (and {rest} more)" if rest > 0 else shown
