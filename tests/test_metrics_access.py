"""Who may scrape /metrics, and where: the console serves it only behind the bearer token, a
listener of its own takes it off the console, and a listener other machines reach needs the
token. The alerting rules in the repository check, and name only metrics a scrape has."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bastion.audit import Store
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.core import Core
from bastion.errors import ConfigError
from bastion.identity.sealing import SecretBox
from bastion.metrics import Metrics
from bastion.pki import make_ssh_host_key, make_tls
from bastion.server import ServeError, Server
from tests.metrics_scrape import Scrape, parse
from tests.reals3 import MotoS3
from tests.realssh import free_port

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "docs" / "prometheus" / "alerts.yml"
TOKEN = "s3cr3t-metrics-token-0123456789"


def write_token(home: Path, mode: int = 0o600, text: str = TOKEN) -> None:
    path = home / "metrics.token"
    path.write_text(text + "\n")
    path.chmod(mode)


@asynccontextmanager
async def serving(home: Path, metrics: str, extra: str = "", *,
                  tls: bool = False) -> AsyncIterator[tuple[int, Core]]:  # fmt: skip
    """A bastion with only its web listener, [metrics] as given: (web port, core); with `tls`
    the TLS certificate `bastion init` makes (the console then serves HTTPS only)."""
    port = free_port()
    config_path = home / "bastion.toml"
    config_path.write_text("[listeners.ssh]\nenabled = false\n[listeners.postgres]\n"
                           f"enabled = false\n[listeners.web]\nport = {port}\n"
                           f"[metrics]\n{metrics}\n{extra}")  # fmt: skip
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    make_ssh_host_key(config.paths.ssh_host_key)
    if tls:
        make_tls(config.paths.tls_cert.parent)
    store = Store.create(config.paths.store, SystemClock())
    core = Core(config, store, SecretBox.load(config.paths.secrets_key), SystemClock())
    server = Server(core)
    try:
        await server.start()
        yield port, core
    finally:
        await server.stop()
        await asyncio.get_running_loop().run_in_executor(None, core.shutdown)
        store.close()


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.text()


async def test_the_console_serves_metrics_only_with_the_token(tmp_path: Path) -> None:
    write_token(tmp_path)
    async with serving(tmp_path, 'token_file = "metrics.token"') as (port, _):
        url = f"http://127.0.0.1:{port}/metrics"
        assert (await get(url))[0] == 401
        assert (await get(url, "wrong-" + TOKEN))[0] == 401
        assert (await get(url, TOKEN[:-1]))[0] == 401
        status, text = await get(url, TOKEN)
        assert status == 200 and parse(text).value("bastion_ready") == 1
        assert TOKEN not in text


async def test_without_a_token_the_console_has_no_metrics(tmp_path: Path) -> None:
    async with serving(tmp_path, "") as (port, _):
        status, text = await get(f"http://127.0.0.1:{port}/metrics")
        assert status == 404 and "bastion_" not in text


async def test_a_listener_of_its_own_takes_metrics_off_the_console(tmp_path: Path) -> None:
    write_token(tmp_path)
    metrics_port = free_port()
    settings = f'listen = "127.0.0.1:{metrics_port}"\ntoken_file = "metrics.token"'
    async with serving(tmp_path, settings) as (port, _):
        assert (await get(f"http://127.0.0.1:{port}/metrics", TOKEN))[0] == 404
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert (await get(url))[0] == 401
        status, text = await get(url, TOKEN)
        assert status == 200 and parse(text).has("bastion_store_reachable")
        assert (await get(f"http://127.0.0.1:{metrics_port}/healthz", TOKEN))[0] == 404


async def test_a_token_file_others_can_read_stops_the_start(tmp_path: Path) -> None:
    for name, mode, text, problem in (
        ("open", 0o644, TOKEN, r"metrics.token_file: .* only its owner can read"),
        ("short", 0o600, "short", r"metrics.token_file: .* at least 16 characters"),
    ):
        home = tmp_path / name
        home.mkdir()
        write_token(home, mode, text)
        with pytest.raises(ServeError, match=problem):
            async with serving(home, 'token_file = "metrics.token"'):
                pass


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("0.0.0.0:9108", "not a loopback address"),
        ("[::]:9108", "not a loopback address"),
        ("127.0.0.1", "not HOST:PORT"),
        ("127.0.0.1:99999", "not HOST:PORT"),
    ],
)
def test_a_listener_others_reach_needs_the_token(tmp_path: Path, listen: str,
                                                 problem: str) -> None:  # fmt: skip
    path = tmp_path / "bastion.toml"
    path.write_text(f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "metrics.listen" and problem in caught.value.problem
    path.write_text(f'[metrics]\nlisten = "{listen}"\ntoken_file = "t"\n')
    if problem == "not a loopback address":
        assert load_config(path).metrics.address() == (listen.rpartition(":")[0].strip("[]"),
                                                      9108)  # fmt: skip


def test_two_registries_live_side_by_side_in_one_process() -> None:
    one, two = Metrics("node-a", "1"), Metrics("node-b", "1")
    one.login("ssh")
    assert b'bastion_logins_total{door="ssh"} 1.0' in one.exposition()
    assert b'bastion_logins_total{door="ssh"} 0.0' in two.exposition()
    assert b"node-b" not in one.exposition()


def test_a_door_or_tag_outside_the_known_sets_is_no_label() -> None:
    metrics = Metrics("n", "1")
    metrics.login("gopher")
    metrics.login_refused("ssh", "something a client made up")
    metrics.access_refused("ssh", "alice has no access to web-9 now; ask an admin")
    metrics.access_refused("ssh", "no target named 'x' or 1=1'")

    class End:
        def __init__(self, tag: str | None, sqlstate: str | None = None) -> None:
            self.tag, self.sqlstate = tag, sqlstate

    metrics.statements_ended([End("SELECT 3"), End("X-EVIL-TAG 1"), End("WEIRDTAG 2"),
                              End(None, "42P01"), End("upstream lost")])  # fmt: skip
    found = parse(metrics.exposition().decode())
    assert found.value("bastion_logins_total", door="other") == 1
    assert found.value("bastion_login_refusals_total", door="ssh", reason="other") == 1
    assert found.value("bastion_login_refusals_total", door="ssh", reason="no_grant") == 1
    assert found.value("bastion_login_refusals_total", door="ssh", reason="unknown_target") == 1
    assert found.value("bastion_statements_total", kind="SELECT", outcome="ok") == 1
    assert found.value("bastion_statements_total", kind="OTHER", outcome="ok") == 1
    assert found.value("bastion_statements_total", kind="NONE", outcome="error") == 1
    assert found.value("bastion_statements_total", kind="NONE", outcome="abandoned") == 2
    for text in ("gopher", "made up", "web-9", "1=1", "EVIL", "WEIRDTAG", "upstream lost"):
        assert text not in str(found.text)


# --- the example alerting rules ---------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/test installs Debian's prometheus"
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def rule_metrics() -> set[str]:
    return set(re.findall(r"\bbastion_[a-z0-9_]+", RULES.read_text(encoding="utf-8")))


async def test_every_metric_the_rules_name_is_in_a_real_scrape(tmp_path: Path) -> None:
    """With recordings in an object store (moto), so its series are there too."""
    assert len(rule_metrics()) >= 15
    with MotoS3(tmp_path) as moto:
        moto.start()
        moto.write_credentials(tmp_path / "s3.credentials")
        listen = f'listen = "127.0.0.1:{free_port()}"'
        feed = f'[export.feed]\nkind = "file"\npath = "{tmp_path / "feed.jsonl"}"\n'
        async with serving(tmp_path, listen, moto.config() + feed, tls=True) as (_, core):
            status, text = await get(f"http://{core.config.metrics.listen}/metrics")
    assert status == 200
    missing = rule_metrics() - parse(text).names()
    assert not missing, f"the rules name metrics a scrape does not have: {sorted(missing)}"


async def test_an_object_store_outage_counts_errors_and_waiting_uploads(tmp_path: Path) -> None:
    """The bucket is away while a finished recording waits in the spool: errors count up and
    the recording is counted as waiting; once it is back, the upload goes and none waits."""
    with MotoS3(tmp_path) as moto:
        moto.start()
        moto.write_credentials(tmp_path / "s3.credentials")
        listen = f'listen = "127.0.0.1:{free_port()}"'
        spooled = tmp_path / "recordings" / "2026" / "12" / "06" / "waiting.cast"
        spooled.parent.mkdir(parents=True)
        spooled.write_bytes(b"a recording in the spool")
        await asyncio.to_thread(moto.stop)
        async with serving(tmp_path, listen, moto.config()) as (_, core):
            url = f"http://{core.config.metrics.listen}/metrics"

            async def scraped_until(check: Callable[[Scrape], bool]) -> Scrape:
                end = asyncio.get_running_loop().time() + 60  # a safety net, not a timing
                while True:
                    found = parse((await get(url))[1])
                    if check(found):
                        return found
                    assert asyncio.get_running_loop().time() < end, found.text
                    await asyncio.sleep(0.05)

            await scraped_until(lambda s: s.value("bastion_object_store_errors_total") > 0
                                and s.value("bastion_recordings_waiting_upload") == 1)  # fmt: skip
            await asyncio.to_thread(moto.start)
            await scraped_until(lambda s: s.value("bastion_recordings_waiting_upload") == 0)


async def test_an_export_sink_that_fails_shows_as_failing(tmp_path: Path) -> None:
    """A syslog sink whose receiver is away: failing 1, its cursor still at 0; a file sink
    beside it takes the events: failing 0, its cursor moving."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        tls = make_tls(tmp_path / "siem-tls")
        sinks = (f'[export.siem]\nkind = "syslog"\naddress = "127.0.0.1:{port}"\n'
                 f'tls_ca = "{tls.ca_cert}"\nserver_name = "localhost"\nretry_after = "1s"\n'
                 f'[export.feed]\nkind = "file"\npath = "{tmp_path / "feed.jsonl"}"\n')  # fmt: skip
        listen = f'listen = "127.0.0.1:{free_port()}"'
        async with serving(tmp_path, listen, sinks) as (_, core):
            url = f"http://{core.config.metrics.listen}/metrics"
            end = asyncio.get_running_loop().time() + 60  # a safety net, not a timing
            while True:
                found = parse((await get(url))[1])
                failing = found.value("bastion_export_sink_failing", sink="siem")
                if failing == 1 and found.value("bastion_export_delivered_seq", sink="feed"):
                    break
                assert asyncio.get_running_loop().time() < end, found.text
                await asyncio.sleep(0.05)
    assert found.value("bastion_export_sink_failing", sink="feed") == 0
    assert found.has("bastion_export_delivered_seq", sink="siem")
    assert found.value("bastion_export_delivered_seq", sink="siem") == 0


async def test_a_failing_webhook_shows_as_failed_posts_and_a_pending_notification(
    tmp_path: Path,
) -> None:
    """A request's notification meets a webhook answering 500: one failed post, and the
    notification stays pending (its retry is an hour away)."""
    answered: list[int] = []

    async def refuse(request: web.Request) -> web.Response:
        answered.append(500)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    notify = (f'[notify]\nwebhook_url = "http://127.0.0.1:{hook_port}/hook"\nretries = 2\n'
              'retry_after = "1h"\n')  # fmt: skip
    listen = f'listen = "127.0.0.1:{free_port()}"'
    try:
        async with serving(tmp_path, listen, notify) as (_, core):
            url = f"http://{core.config.metrics.listen}/metrics"
            before = parse((await get(url))[1])
            assert before.value("bastion_notifications_pending") == 0
            await core.run(_request, core)
            end = asyncio.get_running_loop().time() + 60  # a safety net, not a timing
            while not answered:
                assert asyncio.get_running_loop().time() < end
                await asyncio.sleep(0.05)
            found = parse((await get(url))[1])
            while found.value("bastion_notification_post_failures_total") < 1:
                assert asyncio.get_running_loop().time() < end
                await asyncio.sleep(0.05)
                found = parse((await get(url))[1])
            assert found.value("bastion_notifications_pending") == 1
            assert found.value("bastion_notifications_given_up_total") == 0
    finally:
        await runner.cleanup()


def _request(core: Core) -> None:
    """alice asks for web-1 (on the store's thread): the request's notification is queued."""
    core.identity.enrol("alice", "engineer", None, "test")
    core.store.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="deploy",
                          database=None, secret_sealed=b"x", actor="test")  # fmt: skip
    core.requests.request(user="alice", target="web-1", duration=timedelta(hours=1),
                          reason="INC-1 metrics", requested_by="alice")  # fmt: skip
