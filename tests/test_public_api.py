"""Every public module says what it exports, and exports exactly what it defines or re-exports."""

from __future__ import annotations

import importlib
import inspect

import pytest

import tritonkit

PUBLIC_MODULES = [
    "tritonkit",
    "tritonkit.errors",
    "tritonkit.client",
    "tritonkit.repository",
    "tritonkit.server",
    "tritonkit.export",
    "tritonkit.bench",
    "tritonkit.loadtest",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_lists_only_existing_public_names(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    assert len(module.__all__) == len(set(module.__all__)), "duplicates in __all__"
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names {exported!r}, which it lacks"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_class_and_function_is_in_all(name):
    module = importlib.import_module(name)
    defined_here = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("tritonkit")
    }
    assert defined_here <= set(module.__all__), f"{name} exports {defined_here - set(module.__all__)} silently"


def test_exception_tree_is_rooted_and_drawn():
    from tritonkit import errors

    for exported in errors.__all__:
        error_class = getattr(errors, exported)
        assert issubclass(error_class, errors.TritonkitError)
        assert exported in errors.__doc__, f"{exported} is missing from the tree in the errors docstring"


def test_package_is_typed():
    from pathlib import Path

    assert (Path(tritonkit.__file__).parent / "py.typed").is_file()
