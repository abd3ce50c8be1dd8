"""Where an export's inputs come from, in order: ``--input``/``--length``, a signature file, ``forward`` itself.

A signature file is JSON, the inputs in ``forward``'s order (JSON objects keep their order)::

    {"inputs": {"input_ids": {"dtype": "int64", "dims": [-1], "low": 0, "high": 29999},
                "attention_mask": {"dtype": "int64", "dims": [-1], "low": 0, "high": 1}},
     "length": "8:128"}

Each entry says what ``--input NAME:DTYPE:DIMS[:LOW:HIGH]`` says, and is turned into that form, so the command
line and the file share one parser (:func:`tritonkit.repository.samples.parse_input_option`). ``forward``'s
parameters give the number and names of the inputs: a declaration is checked against them, and a model whose
``forward`` takes several tensors and is told nothing gets an error naming them, not the image default.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tritonkit.errors import ExportError

__all__ = ["ForwardParameters", "check_declared", "forward_parameters", "read_signature_file", "undeclared_error"]

_ENTRY_KEYS = frozenset({"dtype", "dims", "low", "high"})
_FILE_KEYS = frozenset({"inputs", "length"})
_SHOWN = 4  # forward's parameters named in a message (Hugging Face models take a dozen)
_FORM = "--input NAME:DTYPE:DIMS[:LOW:HIGH] (e.g. input_ids:int64:-1:0:29999; -1 dims need --length MIN:MAX)"


def read_signature_file(path: Path) -> tuple[tuple[str, ...], str | None]:
    """The file's inputs as ``--input`` texts, and its length as ``--length`` text (None if it has none)."""
    try:
        document = json.loads(Path(path).read_text())
    except OSError as error:
        raise ExportError(f"--signature {path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:
        raise ExportError(f"--signature {path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), dict) or not document["inputs"]:
        raise ExportError(
            f'--signature {path}: expected {{"inputs": {{NAME: {{"dtype": ..., "dims": [...]}}, ...}}, '
            '"length": "MIN:MAX"}, the inputs in forward\'s order'
        )
    unknown = sorted(set(document) - _FILE_KEYS)
    if unknown:
        raise ExportError(f"--signature {path}: unknown key(s) {unknown}; the keys are inputs and length")
    texts = tuple(_entry_text(path, str(name), entry) for name, entry in document["inputs"].items())
    length = document.get("length")
    if length is not None and not isinstance(length, (str, int)):
        raise ExportError(f'--signature {path}: "length" is "MIN:MAX" or a whole number, got {length!r}')
    return texts, None if length is None else str(length)


def _entry_text(path: Path, name: str, entry: object) -> str:
    if not isinstance(entry, dict) or "dtype" not in entry or "dims" not in entry:
        raise ExportError(f'--signature {path}: input {name!r} needs "dtype" and "dims", e.g. '
                          '{"dtype": "int64", "dims": [-1]}')  # fmt: skip
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ExportError(f"--signature {path}: input {name!r} has unknown key(s) {unknown}; the keys are "
                          "dtype, dims, low and high")  # fmt: skip
    dims = entry["dims"]
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise ExportError(f"--signature {path}: input {name!r}: dims is a list of whole numbers, got {dims!r}")
    text = f"{name}:{entry['dtype']}:{','.join(str(d) for d in dims)}"
    if ("low" in entry) != ("high" in entry):
        raise ExportError(f"--signature {path}: input {name!r}: give both low and high, or neither")
    if "low" in entry:
        text += f":{entry['low']}:{entry['high']}"
    return text


@dataclass(frozen=True)
class ForwardParameters:
    """``forward``'s positional parameters: every name, how many have no default, and whether it takes ``*args``."""

    names: tuple[str, ...]
    required: int
    varargs: bool

    def describe(self) -> str:
        shown = [name if index < self.required else f"{name}=..." for index, name in enumerate(self.names)]
        if len(shown) > max(self.required, _SHOWN):
            shown = [*shown[: max(self.required, _SHOWN)], "..."]
        return f"forward({', '.join([*shown, *(['*args'] if self.varargs else [])])})"


def forward_parameters(module: nn.Module) -> ForwardParameters:
    """What ``module.forward`` takes; a required parameter annotated as a plain number or string is refused."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return ForwardParameters((), 0, True)  # a C-implemented forward says nothing
    try:
        hints = typing.get_type_hints(module.forward)
    except Exception:
        hints = {}  # annotations that do not resolve say nothing
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    for parameter in required:
        if hints.get(parameter.name) in (int, float, bool, str):
            raise ExportError(
                f"forward's parameter {parameter.name!r} is annotated {hints[parameter.name].__name__}, not a "
                "tensor: tritonkit serves tensor inputs; give that parameter a default"
            )
    varargs = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    return ForwardParameters(tuple(p.name for p in positional), len(required), varargs)


def check_declared(names: Sequence[str], forward: ForwardParameters) -> None:
    """A declaration must give forward's required inputs, at most its parameters, each named after its place."""
    declared = f"the signature declares {len(names)} ({', '.join(names)})"
    if len(names) < forward.required:
        missing = ", ".join(forward.names[len(names) : forward.required])
        raise ExportError(f"{forward.describe()} takes {forward.required} input(s) and {declared}: declare "
                          f"{missing} too, in forward's order, with {_FORM}")  # fmt: skip
    if len(names) > len(forward.names) and not forward.varargs:
        raise ExportError(f"{forward.describe()} takes at most {len(forward.names)} input(s) and {declared}")
    for index, (name, parameter) in enumerate(zip(names, forward.names)):
        if name != parameter:
            raise ExportError(
                f"input {index + 1} is declared {name!r} but forward's parameter {index + 1} is {parameter!r}: "
                f"declare the inputs in forward's order with its names, {forward.describe()}"
            )


def undeclared_error(forward: ForwardParameters) -> ExportError | None:
    """The error for a model told nothing whose forward does not take exactly one tensor; None if it does."""
    if forward.required == 1 or (forward.required == 0 and (forward.varargs or not forward.names)):
        return None
    if forward.required == 0:
        takes = "has no required inputs and nothing declares which of them to feed"
    else:
        takes = f"takes {forward.required} inputs and nothing declares them (the image default 3,224,224 fills one)"
    return ExportError(
        f"{forward.describe()} {takes}: declare each input in forward's order with {_FORM}, or give "
        "--signature FILE.json"
    )
