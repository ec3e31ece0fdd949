"""schemathesis run against the served OpenAPI document, signed in as one person: the
shared part of the fuzz tests (each names who signs in and which operations it covers)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.web.conftest import PASSWORDS, Console

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def fuzz(console: Console, tmp_path: Path, who: str, *, seed: int, examples: int,
               paths: tuple[str, ...]) -> None:  # fmt: skip
    """Sign `who` in, run schemathesis with `paths` (its path filters) and assert that no
    operation answered with a server error."""
    async with console.http() as http:
        body = {"username": who, "password": PASSWORDS[who], "code": console.code(who)}
        async with http.post("/api/v1/signin", json=body) as r:
            csrf = (await r.json())["csrf_token"]
        cookie = console.cookie(http)
    argv = [str(SCHEMATHESIS), "run", f"{console.url}/api/v1/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", str(examples), "--workers", "1",
            "--seed", str(seed), "--tls-verify", str(console.core.config.paths.tls_ca), *paths,
            "-H", f"Cookie: __Host-bastion={cookie}", "-H", f"X-CSRF-Token: {csrf}",
            "--report-dir", str(tmp_path / "schemathesis")]  # fmt: skip
    run = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})  # fmt: skip
    out, _ = await run.communicate()
    text = out.decode()
    assert run.returncode == 0, text[-4000:]
    assert "No issues found" in text or "passed" in text, text[-2000:]
