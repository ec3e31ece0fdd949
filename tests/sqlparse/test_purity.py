"""bastion.sqlparse stays pure: it imports only the standard library and pglast, and does no I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import bastion.sqlparse

PACKAGE = Path(bastion.sqlparse.__file__).resolve().parent
IO_MODULES = {
    "asyncio",
    "io",
    "logging",
    "multiprocessing",
    "os",
    "pathlib",
    "selectors",
    "shutil",
    "socket",
    "sqlite3",
    "ssl",
    "subprocess",
    "tempfile",
    "threading",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_imports_are_stdlib_or_pglast_only() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "bastion":
                assert name.startswith("bastion.sqlparse"), f"{path.name} imports {name}"
                continue
            assert top == "pglast" or top in sys.stdlib_module_names, f"{path.name}: {name}"
            assert top not in IO_MODULES, f"{path.name} imports {name}, which does I/O"


def test_no_file_or_print_calls() -> None:
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "input"}, (
                    f"{path.name}: {node.func.id}"
                )
