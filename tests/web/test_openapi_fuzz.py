"""schemathesis against the served OpenAPI document: every API operation, with generated
and hostile inputs, signed in as an engineer, answers without a server error."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.web.conftest import PASSWORDS, Console

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def test_no_operation_answers_with_a_server_error(console: Console, tmp_path: Path) -> None:
    async with console.http() as http:
        body = {"username": "alice", "password": PASSWORDS["alice"],
                "code": console.code("alice")}  # fmt: skip
        async with http.post("/api/v1/signin", json=body) as r:
            csrf = (await r.json())["csrf_token"]
        cookie = console.cookie(http)
    argv = [str(SCHEMATHESIS), "run", f"{console.url}/api/v1/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", "12", "--workers", "1",
            "--seed", "1", "--tls-verify", str(console.core.config.paths.tls_ca),
            "--exclude-path-regex", "signout",  # would end the session the run signs in with
            "-H", f"Cookie: __Host-bastion={cookie}", "-H", f"X-CSRF-Token: {csrf}",
            "--report-dir", str(tmp_path / "schemathesis")]  # fmt: skip
    run = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})  # fmt: skip
    out, _ = await run.communicate()
    text = out.decode()
    assert run.returncode == 0, text[-4000:]
    assert "No issues found" in text or "passed" in text, text[-2000:]
