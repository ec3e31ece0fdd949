"""schemathesis against the admin's operations of the served OpenAPI document, signed in as an
admin: generated and hostile inputs to every /api/v1/admin route answer without a server
error."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.web.conftest import PASSWORDS, Console
from tests.web.test_openapi_fuzz import SCHEMATHESIS


async def test_no_admin_operation_answers_with_a_server_error(
    console: Console, tmp_path: Path
) -> None:
    async with console.http() as http:
        body = {"username": "ada", "password": PASSWORDS["ada"], "code": console.code("ada")}
        async with http.post("/api/v1/signin", json=body) as r:
            csrf = (await r.json())["csrf_token"]
        cookie = console.cookie(http)
    argv = [str(SCHEMATHESIS), "run", f"{console.url}/api/v1/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", "10", "--workers", "1",
            "--seed", "2", "--tls-verify", str(console.core.config.paths.tls_ca),
            "--include-path-regex", "^/api/v1/admin/",
            "-H", f"Cookie: __Host-bastion={cookie}", "-H", f"X-CSRF-Token: {csrf}",
            "--report-dir", str(tmp_path / "schemathesis")]  # fmt: skip
    run = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})  # fmt: skip
    out, _ = await run.communicate()
    text = out.decode()
    assert run.returncode == 0, text[-4000:]
    assert "No issues found" in text or "passed" in text, text[-2000:]
    assert console.store.user("ada").disabled_at is None  # it ran signed in throughout
