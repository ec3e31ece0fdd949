"""The doors go through Core: none of them reaches for the store, and each login step is the
shared admission's (bastion/access/admission.py), not a door's own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bastion"
DOOR_MODULES = sorted([*(PACKAGE / "ssh").glob("*.py"), *(PACKAGE / "pgproxy").glob("*.py"),
                       PACKAGE / "web" / "__init__.py", PACKAGE / "summaries.py"])  # fmt: skip
DOORS = ("web", "ssh", "pgproxy")
DOOR_PACKAGES = sorted(path for door in DOORS for path in (PACKAGE / door).rglob("*.py"))
STORE = re.compile(r"\bcore\.store\b|\.store\.")
OWN_STEPS = re.compile(
    r"identity\.check_totp|\.check_password\(|\"access\.denied\"|\"auth\.failed\""
)


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", DOOR_MODULES, ids=rel)
def test_a_door_never_calls_the_store(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert not STORE.search(line), f"{rel(path)}:{number} calls the store: {line.strip()}"


def store_reads(source: str) -> list[int]:
    """The lines where `source` reads an attribute named `store` (`core.store`, `self.store`,
    any `x.store`, or getattr(x, "store"))."""
    found = []
    for node in ast.walk(ast.parse(source)):
        named = isinstance(node, ast.Attribute) and node.attr == "store"
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr":
            named = any(isinstance(a, ast.Constant) and a.value == "store" for a in node.args)
        if named:
            found.append(getattr(node, "lineno", 0))
    return found


@pytest.mark.parametrize("path", DOOR_PACKAGES, ids=rel)
def test_no_door_module_reads_the_store(path: Path) -> None:
    """The web, SSH and PostgreSQL doors reach the store only through Core's calls and the
    use cases outside the doors (bastion/console), which the doors run in Core.run's thread:
    nothing on the event loop touches SQLite, and no door grows its own store call."""
    lines = store_reads(path.read_text(encoding="utf-8"))
    assert not lines, f"{rel(path)} reads the store at line(s) {lines}: go through the core"


@pytest.mark.parametrize(
    "source",
    ["core.store.user(name)", "await core.run(core.store.user, name)", "s = self.store",
     "getattr(core, 'store')", "f(lambda c: c.store.grant(1))"],
)  # fmt: skip
def test_the_walk_sees_every_way_of_naming_the_store(source: str) -> None:
    assert store_reads(source) == [1]


@pytest.mark.parametrize("path", DOOR_MODULES, ids=rel)
def test_a_door_takes_no_login_step_of_its_own(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert not OWN_STEPS.search(line), f"{rel(path)}:{number} logs in on its own: {line}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "console").rglob("*.py")), ids=rel)
def test_the_console_use_cases_import_no_door(path: Path) -> None:
    """bastion/console is the core's side of the web door: it never reaches back into a door."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names or [a.name for a in node.names]:
            assert not name.startswith(tuple(f"bastion.{door}" for door in DOORS)), (
                f"{rel(path)}:{node.lineno} imports {name}, a door"
            )


SERVICES = frozenset({"access", "requests", "tickets", "identity", "unmasking", "store"})


def service_calls(source: str) -> list[str]:
    """`core.SERVICE` reads in `source`: a door reaching past Core's calls and the use cases."""
    return [f"{node.lineno}: core.{node.attr}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr in SERVICES
            and isinstance(node.value, ast.Name) and node.value.id == "core"]  # fmt: skip


def test_the_ssh_self_service_only_parses_and_prints() -> None:
    """Its commands' use cases live in bastion/console/selfservice.py (the web's use cases'
    home): the SSH door reads the command line, runs one of them, and prints the answer."""
    path = PACKAGE / "ssh" / "selfservice.py"
    assert service_calls(path.read_text(encoding="utf-8")) == []
    assert service_calls("core.requests.cancel(1, 'a')") == ["1: core.requests"]
