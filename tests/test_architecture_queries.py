"""The index owns the database: SQL is written and run only in node/index/ (pathology's own
tables in pathology/). Routes, the ISO writer, the SCU and the rest of the node call named query
functions; they neither build statements nor run them, nor hold the ORM's mapped classes
(with a mapped class in hand, session.add/get/delete is SQL too).

Read from the source with ast, so that the rule holds for code no test reaches. bench/ and
tests/ are not the node: they look at its database from outside, as an operator would.
pathology/ queries its own tables itself, and the index's through node/index.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import DeclarativeBase

ROOT = Path(__file__).resolve().parents[1]
# The node's own code; node/index/ and pathology/ own the database, the rest asks them.
PACKAGES = ("node", "rest", "dicomdir")
OWNERS = ("node/index/",)

# What a module outside the index may import from sqlalchemy, and why.
ALLOWED_SQLALCHEMY = {
    # Type names of the handles the index's functions take: a caller opens a session or
    # passes the engine along, the query itself stays in the index.
    ("sqlalchemy.ext.asyncio", "AsyncSession"): "type of a session handed to a query function",
    ("sqlalchemy.ext.asyncio", "async_sessionmaker"): "type of NodeServices.sessions",
    ("sqlalchemy.ext.asyncio", "AsyncEngine"): "type of NodeServices.engine",
    ("sqlalchemy.ext.asyncio", "AsyncConnection"): "type of a connection handed to a query",
    ("sqlalchemy", "Engine"): "type of the synchronous engine a worker thread uses",
}

# Methods that run SQL on a session, connection, engine or sqlite3 cursor.
EXECUTING = frozenset({"execute", "executemany", "executescript", "exec_driver_sql", "scalar",
                       "scalars", "stream", "stream_scalars"})


def _modules(packages: tuple[str, ...] = PACKAGES) -> Iterator[tuple[str, ast.Module]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith(OWNERS):
                yield relative, ast.parse(path.read_text(), relative)


def _is_mapped(module: str, name: str) -> bool:
    found = getattr(importlib.import_module(module), name, None)
    return isinstance(found, type) and issubclass(found, DeclarativeBase)


def _absolute(relative: str, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, relative imports resolved from the file's package."""
    if not node.level:
        return node.module or ""
    package = relative.removesuffix(".py").split("/")[:-node.level]
    return ".".join([*package, *([node.module] if node.module else [])])


def _sqlalchemy_imports(relative: str, tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{relative}:{node.lineno} import {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] == "sqlalchemy"]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(relative, node)
            if module.split(".")[0] != "sqlalchemy":
                continue
            found += [f"{relative}:{node.lineno} from {module} import {alias.name}"
                      for alias in node.names if (module, alias.name) not in ALLOWED_SQLALCHEMY]
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (names for annotations only)."""
    for child in ast.iter_child_nodes(tree):
        if _is_type_checking(child):
            assert isinstance(child, ast.If)
            for other in child.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield child
        yield from _runtime_nodes(child)


def _mapped_imports(relative: str, tree: ast.Module, allowed: frozenset[str] = frozenset()
                    ) -> list[str]:
    """Mapped classes of the index imported at run time (but `allowed`); a mapped class named
    in annotations only (imported under TYPE_CHECKING) cannot build or run a statement."""
    found = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(relative, node)
            if module.startswith("node.index"):
                found += [f"{relative}:{node.lineno} from {module} import {alias.name}"
                          for alias in node.names
                          if alias.name not in allowed and _is_mapped(module, alias.name)]
    return found


def _executions(relative: str, tree: ast.Module) -> list[str]:
    return [f"{relative}:{node.lineno} .{node.func.attr}(...)" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTING]


def test_no_module_outside_the_index_imports_the_query_building_api() -> None:
    found = [line for relative, tree in _modules() for line in _sqlalchemy_imports(relative, tree)]
    assert found == [], "sqlalchemy imported outside node/index/:\n" + "\n".join(found)


def test_no_module_outside_the_index_holds_a_mapped_class() -> None:
    found = [line for relative, tree in _modules() for line in _mapped_imports(relative, tree)]
    assert found == [], "ORM classes imported outside node/index/:\n" + "\n".join(found)


def test_pathology_reads_the_index_tables_only_through_the_index() -> None:
    """pathology/ writes SQL for its own tables; the index's (instances, studies...) it asks
    node/index for. `Base` is the metadata its own tables are declared on."""
    found = [line for relative, tree in _modules(("pathology",))
             for line in _mapped_imports(relative, tree, allowed=frozenset({"Base"}))]
    assert found == [], "index tables queried from pathology/:\n" + "\n".join(found)


def test_no_module_outside_the_index_executes_sql() -> None:
    found = [line for relative, tree in _modules() for line in _executions(relative, tree)]
    assert found == [], "SQL executed outside node/index/:\n" + "\n".join(found)


def test_the_rules_see_what_they_forbid() -> None:
    """The checks catch the forms a query takes (so that an empty list above means something)."""
    tree = ast.parse("from sqlalchemy import select\nimport sqlalchemy.orm\n"
                     "from node.index.dicom_models import Study\n"
                     "from sqlalchemy.ext.asyncio import AsyncSession\n"
                     "async def f(s):\n    await s.execute(select(Study))\n"
                     "if TYPE_CHECKING:\n    from node.index.dicom_models import Patient\n")
    assert len(_sqlalchemy_imports("rest/x.py", tree)) == 2
    assert _mapped_imports("rest/x.py", tree) == [
        "rest/x.py:3 from node.index.dicom_models import Study"]
    assert _executions("rest/x.py", tree) == ["rest/x.py:6 .execute(...)"]
