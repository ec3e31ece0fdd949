"""The webhook sink against a real aiohttp server that fails, then takes batches; and a sink
that hangs never holds a login up (the chain is the outbox, the sink only reads it)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bastion.pki import make_tls
from bastion.web import healthz
from bastion.web.app import build_app
from tests.export.receivers import TOKEN, Hook
from tests.export.test_syslog_outage import activity, chained, wait_until
from tests.harness import Bastion
from tests.realssh import Sshd


def test_a_webhook_gets_every_event_once_in_order_after_it_failed(
    tmp_path: Path, hook: Hook
) -> None:
    url = f"http://127.0.0.1:{hook.port}/hook?token={TOKEN}"
    config = (f'[export.hook]\nkind = "webhook"\nurl = "{url}"\nretry_after = "1s"\n'
              'retry_max = "1s"\nbatch = 7\n')  # fmt: skip
    b = Bastion(tmp_path / "bastion", config)
    hook.down = True
    b.start()
    try:
        activity(b, range(0, 12))
        exporter = b.core.exporting
        assert exporter is not None
        wait_until(lambda: hook.refused >= 2, "refused posts")
        [state] = exporter.health()
        assert (state["status"], state["error"]) == ("failing", "HTTP 503")
        assert TOKEN not in json.dumps(state) and str(hook.port) not in json.dumps(state)
        status, body = b.call(ask_healthz(b))
        assert (status, body["status"], body["export"]) == (200, "degraded", exporter.health())
        assert TOKEN not in json.dumps(body) and str(hook.port) not in json.dumps(body)
        hook.down = False
        wait_until(lambda: hook.seqs()[-1:] == [b.store.chain_head()[0]], "every event")
    finally:
        b.stop()
    stored = chained(b)
    assert hook.seqs() == [e.seq for e in stored[: len(hook.seqs())]]  # once each, in order
    assert all(len(batch["events"]) <= 7 and batch["sink"] == "hook" for batch in hook.batches)
    first = hook.batches[0]["events"][0]
    assert first["mac"] == stored[0].row_hash and first["prev"] == stored[0].prev_hash


async def ask_healthz(b: Bastion) -> tuple[int, dict[str, Any]]:
    """GET /healthz from the web console's app, served on loopback for this question."""
    app = build_app(b.core, {"/healthz": healthz})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/healthz")
        return response.status, await response.json()


def black_hole() -> socket.socket:
    """A listener that never accepts: connections open, and nothing ever answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def test_a_hung_sink_never_holds_a_login_up(tmp_path: Path, sshd: Sshd) -> None:
    hole = black_hole()
    ca = make_tls(tmp_path / "tls").ca_cert
    config = (f'[export.siem]\nkind = "syslog"\naddress = "127.0.0.1:{hole.getsockname()[1]}"\n'
              f'tls_ca = "{ca}"\ntimeout = "10m"\n')  # fmt: skip
    b = Bastion(tmp_path / "bastion", config)
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.start()
    try:
        for n in range(3):  # each login while the sink's TLS handshake hangs
            ssh = b.openssh("alice", tmp_path / f"client{n}")
            result = ssh.run_ssh("echo through", login="alice+web-1", answers=b.answers("alice"))
            assert result.returncode == 0 and "through" in result.out
        exporter = b.core.exporting
        assert exporter is not None and exporter.health()[0]["status"] == "starting"
        assert b.store.export_cursor("siem") == 0  # nothing delivered, nothing lost
        assert len(b.events("session.opened")) == 3
    finally:
        b.stop()
        hole.close()
