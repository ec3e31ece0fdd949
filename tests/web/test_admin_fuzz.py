"""schemathesis against the admin's operations of the served OpenAPI document, signed in as an
admin: generated and hostile inputs to every /api/v1/admin route answer without a server
error."""

from __future__ import annotations

from pathlib import Path

from tests.web.conftest import Console
from tests.web.fuzz import fuzz


async def test_no_admin_operation_answers_with_a_server_error(
    console: Console, tmp_path: Path
) -> None:
    await fuzz(console, tmp_path, "ada", seed=2, examples=10,
               paths=("--include-path-regex", "^/api/v1/admin/"))  # fmt: skip
    assert console.store.user("ada").disabled_at is None  # it ran signed in throughout
