"""The doors go through Core: none of them reaches for the store, and each login step is the
shared admission's (bastion/access/admission.py), not a door's own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bastion"
DOOR_MODULES = sorted([*(PACKAGE / "ssh").glob("*.py"), *(PACKAGE / "pgproxy").glob("*.py"),
                       PACKAGE / "web" / "__init__.py", PACKAGE / "summaries.py"])  # fmt: skip
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


@pytest.mark.parametrize("path", DOOR_MODULES, ids=rel)
def test_a_door_takes_no_login_step_of_its_own(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert not OWN_STEPS.search(line), f"{rel(path)}:{number} logs in on its own: {line}"
