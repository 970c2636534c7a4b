"""The package's shape: layers that depend one way, no import cycles, no private reach-ins.

The import graph is read from the source (every ``import`` of a wsiarray module, including
those inside functions; not those under ``if TYPE_CHECKING:``, which never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wsiarray

PACKAGE = Path(wsiarray.__file__).parent

#: Each layer may import its own and the layers before it, never a later one (DESIGN.md §2).
LAYERS = [
    # pure: no I/O, nothing of wsiarray but errors
    {"errors", "units", "chunks", "resample", "_version", "_jpeg_markers"},
    {"geometry", "ngff"},
    {"sources"},  # readers, the registry, the cache of open slides
    {"arrays"},  # lazy array adaptors over sources
    {"tree"},  # xarray objects
    {"slide", "_display"},
    {"api", "tiling", "export", "tissue"},  # built on the public Slide
    {"backend", "compat", "cli", "cohort", "datasets", "synthetic", "__init__", "__main__"},
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def _imports(path: Path) -> set[str]:
    """The wsiarray modules a module imports (a ``from M import name`` of a submodule counts
    as that submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "wsiarray")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "wsiarray":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)  # type: ignore[arg-type]
    return found


GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    pytest.fail(f"{module} is in no layer of tests/test_package.py: place it")


def test_every_import_goes_down_the_layers() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target != "wsiarray" and _layer(target) > _layer(module)
    ]
    assert upward == []


def test_slide_imports_neither_tiling_nor_export() -> None:
    assert {"wsiarray.tiling", "wsiarray.export"}.isdisjoint(GRAPH["wsiarray.slide"])


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: any with more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in GRAPH.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert cycles == []


def _private_reach_ins(module: str, path: Path) -> list[str]:
    """Private names of other modules used here: ``from M import _name`` (not a module), a
    private module outside its package, ``obj._attr`` on anything but ``self``/``cls``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wsiarray"):
            for alias in node.names:
                private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                if private_name and f"{node.module}.{alias.name}" not in MODULES:
                    found.append(f"from {node.module} import {alias.name}")
        if isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in filter(None, names):
                parts = name.split(".")
                for depth, part in enumerate(parts):
                    owner = ".".join(parts[:depth])
                    private = part.startswith("_") and not part.startswith("__")
                    if private and not (package == owner or package.startswith(owner + ".")):
                        found.append(f"imports the private module {name}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and not (isinstance(node.value, ast.Call) and ast.unparse(node.value) == "super()")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_reach_ins_across_modules() -> None:
    reach_ins = {
        module: found
        for module, path in MODULES.items()
        if (found := _private_reach_ins(module, path))
    }
    assert reach_ins == {}
