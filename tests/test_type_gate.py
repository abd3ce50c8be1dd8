"""The type checker's gate stays honest: no blanket ignores in its config, and every ignore in src/ says why.

mypy itself runs in the README's test command; these checks keep its config from passing by switching checks off.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "tritonkit"
# Present only inside Triton's python backend stub, so it is never installed where mypy runs.
STUB_ONLY = {"triton_python_backend_utils"}
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<code>\[[\w\-, ]+\])?")


def mypy_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def test_mypy_checks_every_module_with_typed_defs() -> None:
    config = mypy_config()
    assert config["files"] == ["src/tritonkit"]
    for flag in ("disallow_untyped_defs", "check_untyped_defs", "warn_unused_ignores", "warn_return_any"):
        assert config.get(flag) is True, flag
    assert "ignore_errors" not in config and "ignore_missing_imports" not in config


def test_missing_imports_are_ignored_only_for_named_packages_without_types() -> None:
    for override in mypy_config().get("overrides", []):
        assert "ignore_errors" not in override, override
        if not override.get("ignore_missing_imports"):
            continue
        for module in override["module"]:
            package = module.removesuffix(".*")
            assert package and "*" not in package, f"{module!r} is not one named package"
            if package in STUB_ONLY:
                continue
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.origin is not None, f"{package} is not installed"
            assert not (Path(spec.origin).parent / "py.typed").exists(), f"{package} ships types; check them"


def test_every_type_ignore_in_src_names_its_error_and_a_reason() -> None:
    problems = []
    for path in sorted(SOURCE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            found = IGNORE.search(line)
            if found is None:
                continue
            where = f"{path.relative_to(ROOT)}:{number}"
            if found.group("code") is None:
                problems.append(f"{where}: no error code")
            trailing = line[found.end() :].strip().startswith("#")
            if not trailing and not any(c.startswith("# Ignored") for c in _comments_above(lines, number)):
                problems.append(f"{where}: no reason (a comment after it, or one above starting '# Ignored')")
    assert not problems, "\n".join(problems)


def _comments_above(lines: list[str], number: int) -> list[str]:
    """The nearest comment lines above line ``number`` (1-based) in its paragraph (no blank line between)."""
    comments: list[str] = []
    for line in reversed(lines[: number - 1]):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
        elif comments or not stripped:
            break
    return comments
