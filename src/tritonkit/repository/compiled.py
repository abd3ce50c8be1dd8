"""Compiled models: the config keys that ask tritonkit's pytorch backend to compile, and where compiles are kept.

A model exported with ``--compile`` carries, next to the TorchScript ``model.pt`` that Triton's native libtorch
backend loads, the same module as a ``torch.export`` program (``model.pt2``). With ``TRITONKIT_COMPILE`` set,
tritonkit's backend serves the program compiled by inductor instead of the TorchScript file:

- ``"aoti"``: an AOTInductor package, compiled once in a separate process at the first load and kept in the compile
  cache; a restart loads the package and compiles nothing.
- ``"inductor"``: ``torch.compile`` at every load, one static graph per CUDA-graph bucket (where batches come in
  any size, on the CPU or with variable dims, one graph with the batch and those dims dynamic); inductor's own
  caches (in the same folder) shorten later loads.

``TRITONKIT_COMPILE_CACHE`` names the cache folder (relative to the model's directory); by default it is
``$XDG_CACHE_HOME/tritonkit/compile`` (``~/.cache/tritonkit/compile``). ``TRITONKIT_COMPILE_FREEZING`` ("true" by
default) is inductor's ``freezing`` for ``"inductor"``: the weights become constants folded into the graph, which is
what the measured speed-up used; but inductor keeps graphs with frozen weights out of its caches (torch 2.14 does),
so every load compiles them again. Turned off, a restart finds its graphs in the cache (docs/performance.md,
"Compiled models"). The backend's log line for each load says how many graphs the cache gave. Native backends
ignore these keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "CACHE_PARAMETER",
    "COMPILE_MODES",
    "COMPILE_PARAMETER",
    "FALSE_WORDS",
    "FREEZING_PARAMETER",
    "PROGRAM_FILENAME",
    "TRUE_WORDS",
    "CompileMode",
    "CompileSettings",
    "default_cache_dir",
]

COMPILE_PARAMETER = "TRITONKIT_COMPILE"
CACHE_PARAMETER = "TRITONKIT_COMPILE_CACHE"
FREEZING_PARAMETER = "TRITONKIT_COMPILE_FREEZING"
PROGRAM_FILENAME = "model.pt2"
CompileMode = Literal["aoti", "inductor"]
COMPILE_MODES: tuple[CompileMode, ...] = get_args(CompileMode)
# How a config parameter says no, and yes; loading.is_false reads the same words.
FALSE_WORDS = ("false", "0", "no", "off")
TRUE_WORDS = ("true", "1", "yes", "on")
_OFF = ("", *FALSE_WORDS, "none")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tritonkit" / "compile"


@dataclass(frozen=True)
class CompileSettings:
    """Whether and how a model is compiled at load, and the folder its compiles are kept in."""

    mode: CompileMode | None
    cache_dir: Path
    freezing: bool = True

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], model_dir: Path) -> CompileSettings:
        """The settings a config's parameters give; a bad value raises ValueError naming the key."""
        text = parameters.get(COMPILE_PARAMETER, "")
        value = text.strip().lower()
        mode: CompileMode | None = None
        if value not in _OFF:
            if value not in COMPILE_MODES:
                raise ValueError(f"{COMPILE_PARAMETER} {text!r} is not one of {', '.join(COMPILE_MODES)} (or false)")
            mode = "aoti" if value == "aoti" else "inductor"
        cache_text = parameters.get(CACHE_PARAMETER, "").strip()
        cache_dir = (model_dir / Path(cache_text).expanduser()) if cache_text else default_cache_dir()
        freezing_text = parameters.get(FREEZING_PARAMETER, "true")
        freezing = freezing_text.strip().lower()
        if freezing not in (*TRUE_WORDS, *FALSE_WORDS):
            raise ValueError(f"{FREEZING_PARAMETER} {freezing_text!r} is not true or false")
        return cls(mode, cache_dir, freezing in TRUE_WORDS)
