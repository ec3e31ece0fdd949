"""Red team of reload and stop: a reload never claims to apply what the running node keeps
(the metrics token read at start), and a drain ends a session that was opening as it began."""

from __future__ import annotations

from pathlib import Path

from bastion.server import Server
from tests.test_metrics_access import TOKEN, get, serving, write_token

NEW_TOKEN = "another-metrics-token-9876543210"


async def test_a_reload_that_changes_the_metrics_token_says_it_needs_a_restart(
    tmp_path: Path,
) -> None:
    """The token is read once at start: a reload must not say "applied" while the old (maybe
    leaked) token still opens /metrics and the new one does not."""
    write_token(tmp_path)
    (tmp_path / "metrics2.token").write_text(NEW_TOKEN + "\n")
    (tmp_path / "metrics2.token").chmod(0o600)
    async with serving(tmp_path, 'token_file = "metrics.token"') as (port, core):
        config = core.config.path
        config.write_text(config.read_text().replace('"metrics.token"', '"metrics2.token"'))
        server = Server(core)  # the lifecycle of a server on this core reads the same file
        line = await server.lifecycle.reload()
        assert line == "reloaded: metrics.token_file changed: needs a restart; the rest applied"
        assert core.config.metrics.token_file == "metrics.token"  # what is in force, said so
        url = f"http://127.0.0.1:{port}/metrics"
        assert (await get(url, TOKEN))[0] == 200
