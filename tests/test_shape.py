"""The codebase keeps its shape: module purposes, sizes, SQL only in bastion/audit, tasks held."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bastion"
MODULES = sorted(PACKAGE.rglob("*.py"))
SQL = re.compile(r"\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.I)


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_module_has_a_one_line_purpose(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc, f"{rel(path)} has no module docstring"
    assert len(doc.splitlines()[0]) <= 100


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_module_and_function_sizes(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 500, f"{rel(path)} is over 500 lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 60, f"{rel(path)}:{node.lineno} {node.name} is {length} lines"


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_sql_lives_only_in_the_audit_package(path: Path) -> None:
    if path.is_relative_to(PACKAGE / "audit"):
        return
    text = path.read_text(encoding="utf-8")
    assert "sqlite3" not in text and "sqlite_utils" not in text, f"{rel(path)} opens the store"
    assert not SQL.search(text), f"{rel(path)} contains SQL"


DRIVERS = {"sqlite3", "sqlite_utils", "asyncpg"}
ADAPTERS = {"sqlconn.py", "pgconn.py", "listen.py", "evidence_db.py"}  # evidence_db: a file


def imported(tree: ast.AST) -> set[str]:
    """The top-level packages a module imports, wherever in it (also inside a function)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "audit").rglob("*.py")), ids=rel)
def test_only_the_adapters_import_a_database_driver(path: Path) -> None:
    """The store's modules speak to `Conn` (bastion/audit/sqlconn.py), whichever engine holds
    the store; only the adapters import a driver."""
    if path.name in ADAPTERS and path.parent == PACKAGE / "audit":
        return
    drivers = imported(ast.parse(path.read_text(encoding="utf-8"))) & DRIVERS
    assert not drivers, (
        f"{rel(path)} imports {', '.join(sorted(drivers))}: use bastion.audit.sqlconn"
    )


TASK_STARTERS = {"create_task", "ensure_future"}


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_background_tasks_start_only_through_the_helper(path: Path) -> None:
    """A bare create_task leaves the task held only weakly and its exception unseen: every
    background task goes through bastion.tasks.spawn, which holds it and logs its failure."""
    if path == PACKAGE / "tasks.py":
        return
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in TASK_STARTERS, (
                f"{rel(path)}:{node.lineno} starts a task with {name}: use bastion.tasks.spawn"
            )
