"""No module under src/tritonkit imports one that imports it back, directly or through others.

The graph is read from the source with ``ast``, nothing is imported. What counts as an edge:

- every ``import tritonkit.x`` / ``from tritonkit.x import y`` / relative import, at module level, inside functions
  and under ``if TYPE_CHECKING:`` alike. A function-level import still runs the other module on that call path, and
  a TYPE_CHECKING import still ties the two modules' types together: moving an import into a function hides a
  circle, it does not cut it.
- ``from package import name`` points at ``package.name`` when that is a module, else at the package.
- The parent packages Python runs first (``tritonkit/__init__.py`` before ``tritonkit.client``) are not edges: every
  module would otherwise sit in a circle with its package's re-exports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"
ROOT_PACKAGE = "tritonkit"

Graph = dict[str, set[str]]


def module_names(source: Path) -> dict[str, Path]:
    """Every module under ``source``/tritonkit by dotted name (a package by its own name, not ``.__init__``)."""
    modules = {}
    for path in sorted((source / ROOT_PACKAGE).rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """(the module named, the names taken from it) for each import in ``node``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    yield base, [alias.name for alias in node.names]


def import_graph(source: Path = SOURCE) -> Graph:
    modules = module_names(source)
    graph: Graph = {name: set() for name in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in _imported(node, module, path.name == "__init__.py"):
                submodules = [f"{target}.{name}" for name in names if f"{target}.{name}" in modules]
                # "from package import a, b": a module per submodule named, and the package for any other name.
                found = submodules + ([target] if len(submodules) < len(names) or not names else [])
                graph[module].update(name for name in found if name in modules and name != module)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan), each as a path back to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_in(graph, group) for group in groups]


def _circle_in(graph: Graph, group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, staying inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for neighbour in sorted(graph[node] & group):
                if neighbour == start:
                    return [*paths[node], start]
                if neighbour not in paths:
                    paths[neighbour] = [*paths[node], neighbour]
                    following.append(neighbour)
        frontier = following
    raise AssertionError(f"no circle in {sorted(group)}")


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(import_graph())
    assert not found, "import circles under src/tritonkit:\n" + "\n".join(" -> ".join(c) for c in found)


# --- the graph reader itself, on a made-up tree --------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / ROOT_PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_every_kind_of_import_is_an_edge(tmp_path: Path):
    source = write_tree(
        tmp_path,
        {
            "__init__.py": "from tritonkit.a import thing\n",
            "a/__init__.py": "from .inner import thing\n",
            "a/inner.py": "def thing():\n    from tritonkit import lazy\n",
            "lazy.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tritonkit.typed\n",
            "typed.py": "from ..tritonkit_outside import nothing\nimport os\n",
            "b.py": "from tritonkit.a import inner, thing\n",
        },
    )
    assert import_graph(source) == {
        "tritonkit": {"tritonkit.a"},
        "tritonkit.a": {"tritonkit.a.inner"},
        "tritonkit.a.inner": {"tritonkit.lazy"},
        "tritonkit.lazy": {"tritonkit.typed"},
        "tritonkit.typed": set(),
        "tritonkit.b": {"tritonkit.a", "tritonkit.a.inner"},
    }


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"x.py": "import tritonkit.y\n", "y.py": "import tritonkit.x\n"},
            [["tritonkit.x", "tritonkit.y", "tritonkit.x"]],
        ),
        (
            {
                "x.py": "from tritonkit import y\n",
                "y.py": "def f():\n    from tritonkit.z import q\n",
                "z.py": "from . import x\n",
            },
            [["tritonkit.x", "tritonkit.y", "tritonkit.z", "tritonkit.x"]],
        ),
        ({"x.py": "import tritonkit.y\n", "y.py": "import os\n"}, []),
    ],
)
def test_circles_are_found_and_printed_as_paths(tmp_path: Path, files: dict[str, str], expected: list[list[str]]):
    assert cycles(import_graph(write_tree(tmp_path, {"__init__.py": "", **files}))) == expected
