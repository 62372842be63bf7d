"""The layout keeps the architecture readable (docs/ARCHITECTURE.md): every module has a file
name of its own, dependencies point one way, and module imports form no cycle.

Read from the source with `ast`, nothing imported: a rule broken shows the module and the
import that broke it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("node", "rest", "pathology", "dicomdir")
# Command-line entry points start the whole node: they may import every layer.
ENTRY_POINTS = ("node.commands.", "node.cli", "node.__main__")
# Layer -> the layers it must not import.
FORBIDDEN = {
    "node": ("rest", "pathology", "dicomdir"),
    "pathology": ("rest", "dicomdir"),
    "dicomdir": ("rest", "pathology"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, imported module or name) of every absolute import, lazy ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def _module_level_targets(path: Path) -> set[str]:
    """The project modules a module imports when it is loaded (not under TYPE_CHECKING, not
    inside functions)."""
    targets = set()
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            continue
        if not isinstance(statement, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
            continue
        for _, name in _imports(statement):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                targets.add(name)
    return targets


def test_no_two_modules_share_a_file_name() -> None:
    names: dict[str, list[str]] = {}
    for package in (*PACKAGES, "bench"):
        for path in (REPO / package).rglob("*.py"):
            if path.name != "__init__.py" and "migrations" not in path.parts:
                names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    shared = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert shared == {}


def test_dependencies_point_one_way() -> None:
    broken = []
    for module, path in MODULES.items():
        if module.startswith(ENTRY_POINTS):
            continue
        forbidden = FORBIDDEN.get(module.split(".")[0], ())
        for line, name in _imports(ast.parse(path.read_text())):
            if name.split(".")[0] in forbidden:
                broken.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert broken == []


def test_module_imports_form_no_cycle() -> None:
    graph = {module: _module_level_targets(path) - {module} for module, path in MODULES.items()}
    cycles = _cycles(graph)
    assert cycles == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found
