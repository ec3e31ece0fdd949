"""Live sessions and break-glass in the console: who may watch, kill and acknowledge; the
event stream showing a real SSH session open and end; a kill reaching the ssh client with
its reason, as `bastion sessions kill` does."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest

from bastion.audit import NewGrant
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from tests.realssh import OpenSSHClient, Sshd, SshResult
from tests.web.conftest import PASSWORDS, Console, detail, running

KILL_REASON = "INC-7: credentials leaked in chat"


def with_web1(sshd: Sshd) -> Callable[[Core, SecretBox], None]:
    """web-1 is the test's sshd (host key pinned); alice holds a grant on it."""

    def before(core: Core, box: SecretBox) -> None:
        key = asyncssh.read_private_key(sshd.client_key_path)
        sealed = box.seal(key.export_private_key("openssh"), context="target:web-1")
        core.store.add_target(
            name="web-1",
            kind="ssh",
            host=sshd.host,
            port=sshd.port,
            login=sshd.login,
            database=None,
            secret_sealed=sealed,
            actor="test",
        )
        core.store.set_host_key("web-1", sshd.host_key_pub, sshd.host_key_fingerprint, "test")
        core.access.grant(
            user="alice",
            target="web-1",
            duration=timedelta(hours=2),
            mode="read",
            reason="on call this week",
            actor="ada",
        )

    return before


@pytest.fixture
async def live(tmp_path: Path, sshd: Sshd) -> AsyncIterator[Console]:
    async with running(tmp_path / "bastion", before=with_web1(sshd)) as found:
        yield found


def alice_ssh(console: Console, workdir: Path) -> OpenSSHClient:
    """OpenSSH's ssh as alice (password, then a code), pinned to the bastion's host key."""
    workdir.mkdir(parents=True, exist_ok=True)
    known = workdir / "known_hosts"
    public = Path(f"{console.core.config.paths.ssh_host_key}.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{console.ssh_port} {public[0]} {public[1]}\n")
    return OpenSSHClient(
        "127.0.0.1", console.ssh_port, "alice", workdir=workdir, known_hosts=known, identity=None
    )


def answers(console: Console) -> Callable[[str], str | None]:
    def answer(prompt: str) -> str | None:
        if "Verification code" in prompt:
            return console.code("alice")
        return PASSWORDS["alice"] if "password" in prompt.lower() else None

    return answer


def start_long_session(console: Console, workdir: Path) -> asyncio.Task[SshResult]:
    """alice on web-1 running a command that would last a minute (the kill ends it first)."""
    client = alice_ssh(console, workdir)
    run = client.run_ssh_async(
        "echo started; sleep 60", login="alice+web-1", answers=answers(console), timeout=90
    )
    return asyncio.ensure_future(run)


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """The stream's server-sent events as (name, data), as they arrive."""
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def next_list(
    stream: AsyncIterator[tuple[str, Any]], wanted: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The first list of sessions on the stream that `wanted` accepts."""
    async with asyncio.timeout(60):  # a bound on a fault, not a wait: events wake this
        async for name, data in stream:
            assert name == "sessions", (name, data)
            if wanted(data):
                return list(data)
    raise AssertionError("the stream ended")


async def sign_in_api(console: Console, http: aiohttp.ClientSession, user: str) -> str:
    await console.sign_in(http, user)
    async with http.get("/api/v1/me") as me:
        return str((await me.json())["csrf_token"])


async def test_the_stream_shows_a_real_ssh_session_open_and_end(
    live: Console, tmp_path: Path
) -> None:
    console = live
    async with console.http() as admin:
        csrf = await sign_in_api(console, admin, "ada")
        async with admin.get("/live/events") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            stream = events(response)
            assert await next_list(stream, lambda rows: True) == []
            ssh = start_long_session(console, tmp_path / "ssh")
            [row] = await next_list(stream, bool)
            assert (row["user"], row["target"], row["door"], row["client"]) == (
                "alice",
                "web-1",
                "ssh",
                "127.0.0.1",
            )
            assert row["grant"].startswith("#1 read until ") and row["idle_seconds"] is not None
            assert row["node"] == console.core.node  # which node holds it
            kill = {"session_id": row["id"], "reason": KILL_REASON}
            async with admin.post(
                "/api/v1/live-sessions/kill", json=kill, headers={"X-CSRF-Token": csrf}
            ) as done:
                assert done.status == 201, await done.text()
                assert (await done.json())["kill_requested"] is True
            assert await next_list(stream, lambda rows: not rows) == []
        result = await ssh
        async with admin.post("/api/v1/live-sessions/kill", json=kill,
                              headers={"X-CSRF-Token": csrf}) as again:  # fmt: skip
            assert again.status == 409 and "ended already" in (await again.json())["error"]
    assert result.returncode != 0
    assert f"session ended by ada: {KILL_REASON}" in result.err
    [closed] = console.store.sessions()
    assert (closed.state, closed.end_reason) == ("killed", f"session ended by ada: {KILL_REASON}")
    [asked] = console.events("session.kill_requested")  # the event `sessions kill` writes
    assert (asked.actor, asked.subject, asked.session_id) == ("ada", "alice", row["id"])
    assert detail(asked) == {"reason": KILL_REASON, "target": "web-1"}


async def test_roles_on_live_sessions_and_break_glass(console: Console) -> None:
    """Engineers see none of it; reviewers watch but do not kill; every route says so."""
    async with console.http() as engineer, console.http() as reviewer:
        await console.sign_in(engineer, "alice")
        for path in (
            "/live",
            "/live/events",
            "/api/v1/live-sessions",
            "/break-glass",
            "/api/v1/break-glass",
        ):
            async with engineer.get(path, allow_redirects=False) as refused:
                assert refused.status == 403, path
        csrf = await sign_in_api(console, engineer, "alice")
        for path, body in (
            ("/api/v1/live-sessions/kill", {"session_id": "x", "reason": "r"}),
            ("/api/v1/break-glass/ack", {"grant_id": "1"}),
        ):
            async with engineer.post(path, json=body, headers={"X-CSRF-Token": csrf}) as refused:
                assert refused.status == 403, path
        rcsrf = await sign_in_api(console, reviewer, "rita")
        async with reviewer.get("/live") as page:
            text = await page.text()
            assert page.status == 200 and "Live sessions" in text
            assert "/live/kill" not in text  # no kill button for a reviewer
        async with reviewer.post(
            "/api/v1/live-sessions/kill",
            json={"session_id": "x", "reason": "r"},
            headers={"X-CSRF-Token": rcsrf},
        ) as refused:
            assert refused.status == 403
            assert "it is for admin" in (await refused.json())["error"]
    assert console.events("session.kill_requested") == []


async def test_a_kill_without_its_csrf_token_is_refused(live: Console, tmp_path: Path) -> None:
    console = live
    ssh = start_long_session(console, tmp_path / "ssh")
    async with console.http() as admin:
        csrf = await console.sign_in(admin, "ada")
        async with admin.get("/live/events") as response:
            [row] = await next_list(events(response), bool)
        form = {"session_id": row["id"], "reason": "no token"}
        async with admin.post("/live/kill", data=form) as refused:
            assert refused.status == 403 and "no valid CSRF token" in await refused.text()
        async with admin.post("/live/kill", data={**form, "csrf": "forged"}) as refused:
            assert refused.status == 403
        async with admin.post("/api/v1/live-sessions/kill", json=form) as refused:
            assert refused.status == 403
        assert console.events("session.kill_requested") == []
        async with admin.post(
            "/live/kill", data={**form, "csrf": csrf, "reason": "\x1b]0;owned\x07"}
        ) as bad:
            assert bad.status == 400 and "printable" in await bad.text()
        async with admin.post("/live/kill", data={**form, "csrf": csrf, "reason": "  "}) as bad:
            assert bad.status == 400 and "give a reason" in await bad.text()
        assert console.events("session.kill_requested") == []
        async with admin.post(
            "/live/kill", data={**form, "csrf": csrf, "reason": "the right way"}
        ) as done:
            assert done.status == 200 and done.url.path == "/live"
            # the sign-ins stepped the test's clock past the node's presence until its next
            # renewal: whether it reads "alive" is the next test's; here, that it was asked
            assert (f"asked node {console.core.node} to end session {row['id']} (alice on"
                    " web-1)") in await done.text()  # fmt: skip
    result = await ssh
    assert "session ended by ada: the right way" in result.err


async def test_the_kill_notice_names_the_node_asked_and_says_when_it_is_gone(
    console: Console,
) -> None:
    """In `bastion sessions kill`'s words: the node holding the session is named; one whose
    presence on the store ran out is said to be ending nothing now."""
    for session_id, node in (("s-here", console.core.node), ("s-gone", "gone")):
        console.store.open_session(session_id=session_id, user="alice", target="web-1",
                                   grant_id=None, protocol="ssh", client_addr="10.0.0.7",
                                   node=node)  # fmt: skip
    async with console.http() as admin:
        csrf = await console.sign_in(admin, "ada")
        async with admin.get("/live?killed=s-here") as made_up:  # nobody asked for this kill
            assert made_up.status == 200 and "end session s-here" not in await made_up.text()
        said = {}
        for session_id in ("s-here", "s-gone"):
            form = {"session_id": session_id, "reason": "INC-12", "csrf": csrf}
            async with admin.post("/live/kill", data=form) as done:
                assert done.status == 200 and done.url.path == "/live"
                said[session_id] = " ".join(html.unescape(await done.text()).split())
    here = f"asked node {console.core.node} to end session s-here (alice on web-1)"
    assert f"{here}; it ends within a few seconds" in said["s-here"]
    assert "not alive" not in said["s-here"]
    gone = said["s-gone"]
    assert (
        "asked node gone to end session s-gone (alice on web-1), but that node is not"
        " alive on the store: it ended its sessions when it lost the store, or it stopped;"
        " the session closes as interrupted when node gone starts again" in gone
    )
    assert "within a few seconds" not in gone
    assert len(console.events("session.kill_requested")) == 2


async def test_break_glass_is_acknowledged_by_someone_else(console: Console) -> None:
    """The CLI's call and its rules: never one's own, once, and the event it writes."""
    now = console.clock.now()
    made = console.store.add_grant(
        NewGrant(
            target="web-1",
            mode="read",
            starts_at=now,
            ends_at=now + timedelta(minutes=30),
            reason="outage",
            actor="ada",
            user="ada",
            break_glass=True,
        )
    )
    async with console.http() as ada, console.http() as rita:
        acsrf = await sign_in_api(console, ada, "ada")
        body = {"grant_id": str(made.id), "note": "seen"}
        async with ada.post(
            "/api/v1/break-glass/ack", json=body, headers={"X-CSRF-Token": acsrf}
        ) as own:
            assert own.status == 403 and "someone else" in (await own.json())["error"]
        csrf = await console.sign_in(rita, "rita")
        async with rita.get("/break-glass") as page:
            assert "outage" in await page.text() and "Acknowledge" in await page.text()
        form = {"grant_id": str(made.id), "note": "looked at it", "csrf": csrf}
        async with rita.post("/break-glass/ack", data=form) as done:
            text = await done.text()
            assert done.status == 200 and f"break-glass grant {made.id} acknowledged" in text
            assert "by rita at" in text
        async with rita.post("/break-glass/ack", data=form) as again:
            assert again.status == 400 and "acknowledged by rita already" in await again.text()
        async with rita.get("/api/v1/break-glass") as listed:
            [shown] = await listed.json()
            assert shown["acknowledged_by"] == "rita"
    [event] = console.events("breakglass.acknowledged")
    assert (event.actor, detail(event)["note"]) == ("rita", "looked at it")


async def test_the_stream_ends_when_the_watcher_is_signed_out(console: Console) -> None:
    async with console.http() as admin, console.http() as other:
        await console.sign_in(admin, "ada")
        async with admin.get("/live/events") as response:
            stream = events(response)
            assert await anext(stream) == ("sessions", [])
            csrf = await console.sign_in(other, "ada")  # the same person, elsewhere
            async with other.post("/signout-everywhere", data={"csrf": csrf}) as out:
                assert out.status == 200
            console.core.sessions_changed()  # wake the stream now rather than at its refresh
            async with asyncio.timeout(60):  # a bound on a fault; the change wakes it
                name, _ = await anext(stream)
            assert name == "signedout"


async def test_open_streams_end_when_the_server_stops(console: Console) -> None:
    """A watcher's open page never holds `bastion serve` up on its way out."""
    async with console.http() as admin:
        await console.sign_in(admin, "ada")
        async with admin.get("/live/events") as response:
            stream = events(response)
            assert await anext(stream) == ("sessions", [])
            async with asyncio.timeout(30):  # aiohttp itself would wait 60s for the handler
                await console.server.stop()
                assert [event async for event in stream] == []
