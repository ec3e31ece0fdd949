"""schemathesis against the served OpenAPI document: every API operation, with generated
and hostile inputs (bodies, query parameters and path placeholders alike), signed in as an
engineer, and the reviewer's (the audit log's too) over recorded sessions and a built week
signed in as a reviewer, answers without a server error."""

from __future__ import annotations

from pathlib import Path

from tests.web.conftest import Console, running
from tests.web.fuzz import fuzz
from tests.web.review_world import reviewed_world


async def test_no_operation_answers_with_a_server_error(console: Console, tmp_path: Path) -> None:
    # signing out would end the session the run signs in with
    await fuzz(console, tmp_path, "alice", seed=1, examples=12,
               paths=("--exclude-path-regex", "signout"))  # fmt: skip


async def test_no_review_operation_answers_with_a_server_error(tmp_path: Path) -> None:
    async with running(tmp_path / "bastion", before=reviewed_world) as console:
        await fuzz(console, tmp_path, "rita", seed=3, examples=25,
                   paths=("--include-path-regex", "^/api/v1/(review/|events)"))  # fmt: skip
